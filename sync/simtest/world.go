package simtest

import (
	"fmt"
	"strconv"

	"github.com/fieldsync/fieldsync/sync/hlc"
	"github.com/fieldsync/fieldsync/sync/merge"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// Device is a simulated field device: a local replica it edits offline, an
// outbox of changes not yet pushed, and a clock that may be wrong.
type Device struct {
	Node   vv.NodeID
	Local  *Replica
	Outbox []*merge.Change
	// Skew is added to the world's time to give this device's physical clock:
	// field devices run for weeks without a time source.
	Skew  int64
	Clock *hlc.Clock
}

// World is a server replica and the devices that sync with it. Time is a
// counter the test advances; nothing reads a real clock.
type World struct {
	Server   *Replica
	Devices  []*Device
	Policies merge.Registry
	NowMS    int64
	srvClock *hlc.Clock
	seq      int
	// Changes lists every change made, by any node, in the order made.
	Changes []*merge.Change
}

// NewWorld makes a world with n devices whose clocks are off by the given
// skews (milliseconds; len(skews) == n).
func NewWorld(p merge.Registry, skews []int64, maxSkewMS int64) *World {
	w := &World{Server: NewReplica(p), Policies: p, NowMS: 1_764_300_000_000}
	w.srvClock = hlc.NewClock(vv.Server, func() int64 { return w.NowMS }, maxSkewMS)
	for i, s := range skews {
		d := &Device{Node: vv.NodeID(fmt.Sprintf("dev-%d", i)), Local: NewReplica(p), Skew: s}
		d.Clock = hlc.NewClock(d.Node, func() int64 { return max(0, w.NowMS+d.Skew) }, maxSkewMS)
		w.Devices = append(w.Devices, d)
	}
	return w
}

func (w *World) nextID() string {
	w.seq++
	return "c-" + strconv.Itoa(w.seq)
}

// Edit makes device d write fields (or delete) on a record in its local
// replica and queues the change in its outbox. It returns the local result:
// a change the device's own replica rejects is not queued.
func (w *World) Edit(d *Device, k Key, fields []merge.FieldValue, deleted bool) merge.Result {
	local := d.Local.Records[k]
	var base vv.Vector
	if local != nil {
		base = local.VV
	}
	fs := append([]merge.FieldValue(nil), fields...)
	merge.SortFields(fs)
	ch := &merge.Change{
		ChangeID: w.nextID(), Collection: k.Collection, ID: k.ID,
		VV: base.Increment(d.Node), HLC: d.Clock.Now(), Fields: fs, Deleted: deleted,
	}
	res := d.Local.Deliver(ch)
	if res.Outcome == merge.Applied || res.Outcome == merge.Merged {
		d.Outbox = append(d.Outbox, ch)
		w.Changes = append(w.Changes, ch)
	}
	return res
}

// Push sends the first n changes of d's outbox to the server (all when n <
// 0), as the server would receive them: stamps more than the skew limit
// ahead are clamped first. Clamping rewrites the stamp the server stores, so
// the device adopts the server's record on its next pull.
func (w *World) Push(d *Device, n int) []merge.Result {
	if n < 0 || n > len(d.Outbox) {
		n = len(d.Outbox)
	}
	var out []merge.Result
	for _, ch := range d.Outbox[:n] {
		sent := *ch
		if stamp, clamped := w.srvClock.Receive(ch.HLC); clamped {
			sent.HLC = stamp
		}
		out = append(out, w.Server.Deliver(&sent))
	}
	d.Outbox = d.Outbox[n:]
	d.Clock.Observe(w.srvClock.Now())
	return out
}

// Send delivers a hand-made change from d straight to the server, bypassing
// d's replica and outbox: a misbehaving or reinstalled device.
func (w *World) Send(d *Device, k Key, v vv.Vector, fields []merge.FieldValue, deleted bool) merge.Result {
	fs := append([]merge.FieldValue(nil), fields...)
	merge.SortFields(fs)
	ch := &merge.Change{
		ChangeID: w.nextID(), Collection: k.Collection, ID: k.ID,
		VV: v, HLC: d.Clock.Now(), Fields: fs, Deleted: deleted,
	}
	w.Changes = append(w.Changes, ch)
	return w.Server.Deliver(ch)
}

// Pull joins every server record into d's local replica.
func (w *World) Pull(d *Device) error {
	for _, k := range w.Server.Keys() {
		if err := d.Local.JoinRecord(w.Server.Records[k]); err != nil {
			return err
		}
	}
	return nil
}

// ServerChange applies a change the server authors (a resolution) with the
// given fields on top of its current record.
func (w *World) ServerChange(k Key, fields []merge.FieldValue) (merge.Result, error) {
	rec := w.Server.Records[k]
	if rec == nil {
		return merge.Result{}, fmt.Errorf("simtest: no record %s", k)
	}
	ch, err := merge.ServerChange(rec, w.nextID(), w.srvClock.Now(), fields)
	if err != nil {
		return merge.Result{}, err
	}
	w.Changes = append(w.Changes, ch)
	return w.Server.Deliver(ch), nil
}

// SignOff signs off a record on the server.
func (w *World) SignOff(k Key, by string) (merge.Result, error) {
	rec := w.Server.Records[k]
	p := w.Policies[k.Collection]
	if rec == nil || p == nil {
		return merge.Result{}, fmt.Errorf("simtest: no record %s", k)
	}
	stamp := w.srvClock.Now()
	at := []byte(`"2026-01-01T00:00:00Z"`)
	ch, err := p.SignOff(rec, w.nextID(), stamp, by, at)
	if err != nil {
		return merge.Result{}, err
	}
	w.Changes = append(w.Changes, ch)
	return w.Server.Deliver(ch), nil
}

// SyncAll pushes every outbox, then pulls every device: after it, every
// device holds the server's state.
func (w *World) SyncAll() error {
	for _, d := range w.Devices {
		w.Push(d, -1)
	}
	for _, d := range w.Devices {
		if err := w.Pull(d); err != nil {
			return err
		}
	}
	return nil
}
