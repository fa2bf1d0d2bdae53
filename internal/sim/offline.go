package sim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"time"

	"github.com/fieldsync/fieldsync/sync/client"
	"github.com/fieldsync/fieldsync/sync/merge"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// WeekOfflineReport is the result of the week-offline scenario.
type WeekOfflineReport struct {
	Report
	OfflineEdits int           // edits the returning device made offline
	SyncTime     time.Duration // its sync over the bad link, until drained
	Bytes        int           // bytes on the wire for that sync, both ways
}

// WeekOffline brings one device back after a week offline with many edits,
// over a shaped link (the proxy's Bandwidth, Latency and CutEvery), while
// the other devices of its unit synced normally meanwhile. It times the
// returning device's sync and checks everyone converges.
func WeekOffline(ctx context.Context, cfg Config, shapedURL string, shaped *Proxy, offlineEdits int) (*WeekOfflineReport, error) {
	if cfg.Devices < 2 {
		cfg.Devices = 5
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed+2))
	open := func(id, base string, attempts int) (*device, error) {
		tok, err := cfg.Token(id, UnitName(0))
		if err != nil {
			return nil, err
		}
		c, err := client.Open(filepath.Join(cfg.Dir, id+".db"), client.Config{
			BaseURL: base, Device: vv.NodeID(id), Attempts: attempts, Backoff: 50 * time.Millisecond, MaxBatch: 100,
			Token: func(context.Context) (string, error) { return tok, nil },
		})
		if err != nil {
			return nil, err
		}
		return &device{id: id, unit: UnitName(0), c: c}, nil
	}
	var devs []*device
	for i := 0; i < cfg.Devices-1; i++ {
		d, err := open(fmt.Sprintf("peer-%02d", i), cfg.Upstream, 5)
		if err != nil {
			return nil, err
		}
		defer d.c.Close()
		devs = append(devs, d)
	}
	back, err := open("returning", shapedURL, 2)
	if err != nil {
		return nil, err
	}
	defer back.c.Close()
	rep := &WeekOfflineReport{}
	begin := time.Now()
	edit := func(d *device, i int) error {
		var err error
		switch rng.IntN(4) {
		case 0, 1:
			_, err = d.c.Edit(ctx, "patrol_logs", fmt.Sprintf("log-%d", rng.IntN(40)), []merge.FieldValue{
				{Name: "unit", Value: jsonString(UnitName(0))},
				{Name: "status", Value: jsonString([]string{"planned", "active", "completed"}[rng.IntN(3)])},
				{Name: "notes", Value: jsonString(fmt.Sprintf("day %d: patrol along RN1, checkpoint at Kafou passed, edit %d by %s", i%7+1, i, d.id))},
			}, false)
		case 2:
			_, err = d.c.Edit(ctx, "patrol_entries", fmt.Sprintf("entry-%s-%d", d.id, i), []merge.FieldValue{
				{Name: "patrol_id", Value: jsonString(fmt.Sprintf("00000000-0000-4000-8000-%012d", rng.IntN(40)))},
				{Name: "unit", Value: jsonString(UnitName(0))},
				{Name: "kind", Value: jsonString("observation")},
				{Name: "occurred_at", Value: jsonString(time.Now().UTC().Format(time.RFC3339))},
				{Name: "text", Value: jsonString(fmt.Sprintf("observation %d: market open, traffic normal near the checkpoint", i))},
			}, false)
		default:
			_, err = d.c.Edit(ctx, "corridors", fmt.Sprintf("corridor-%d", rng.IntN(5)), []merge.FieldValue{
				{Name: "status", Value: jsonString([]string{"open", "restricted", "closed"}[rng.IntN(3)])},
				{Name: "verified_at", Value: jsonString(time.Now().UTC().Format(time.RFC3339))},
			}, false)
		}
		return err
	}
	// The week: the peers edit and sync; the returning device only edits.
	for i := 0; i < offlineEdits; i++ {
		if err := edit(back, i); err != nil {
			return nil, err
		}
	}
	rep.OfflineEdits = offlineEdits
	for _, d := range devs {
		for i := 0; i < 100; i++ {
			if err := edit(d, i); err != nil {
				return nil, err
			}
		}
		if _, err := d.c.Sync(ctx); err != nil {
			return nil, err
		}
	}
	// Back in range, on the bad link: sync until drained.
	start := time.Now()
	for attempt := 0; ; attempt++ {
		st, err := back.c.Sync(ctx)
		rep.Pushed += st.Pushed
		rep.Rejected += st.Rejected
		rep.Pulled += st.Pulled
		rep.Retries += st.Retries
		rep.BytesSent += st.BytesSent
		rep.BytesRecv += st.BytesRecv
		rep.BytesRaw += st.BytesRaw
		n, _ := back.c.Pending()
		if err == nil && n == 0 {
			break
		}
		if attempt > 500 || ctx.Err() != nil {
			return nil, fmt.Errorf("sim: the returning device cannot finish: %v", err)
		}
	}
	rep.SyncTime = time.Since(start)
	rep.Bytes = rep.BytesSent + rep.BytesRecv
	for _, d := range devs {
		if _, err := d.c.Sync(ctx); err != nil {
			return nil, err
		}
	}
	all := append(devs, back)
	if _, err := check(ctx, cfg, all, &rep.Report); err != nil {
		return nil, err
	}
	rep.CutBefore, rep.CutAfter = shaped.Faults.CutBefore.Load(), shaped.Faults.CutAfter.Load()
	rep.Edits = offlineEdits + 100*len(devs)
	rep.Wall = time.Since(begin)
	return rep, nil
}
