package merge_test

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"testing"

	"pgregory.net/rapid"

	"github.com/fieldsync/fieldsync/sync/merge"
	"github.com/fieldsync/fieldsync/sync/simtest"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// The properties below run over random field operations: 2 to 8 devices with
// wrong clocks editing patrol logs, entries and corridors offline, syncing
// at random, the server signing logs off and resolving conflicts. Each
// property then replays what the server received, in random causal orders,
// with duplicates and re-sends, on fresh replicas.
//
// Run them longer with: go test ./sync/merge -run Property -rapid.checks=100000

var (
	logKeys      = []simtest.Key{{Collection: "patrol_logs", ID: "log-1"}, {Collection: "patrol_logs", ID: "log-2"}}
	corridorKeys = []simtest.Key{{Collection: "corridors", ID: "rn1-north"}, {Collection: "corridors", ID: "rn2-south"}}
	entryKeys    = []simtest.Key{{Collection: "patrol_entries", ID: "e-1"}, {Collection: "patrol_entries", ID: "e-2"}}
)

// genValue draws a value for a field from a small pool, so equal values from
// different writers happen often.
func genValue(t *rapid.T, spec *merge.FieldSpec, label string) []byte {
	if !spec.Required && rapid.IntRange(0, 9).Draw(t, label+"-null") == 0 {
		return []byte("null")
	}
	switch spec.Type {
	case merge.Enum:
		return []byte(strconv.Quote(rapid.SampledFrom(spec.Enum).Draw(t, label)))
	case merge.Time:
		return []byte(fmt.Sprintf(`"2026-11-%02dT%02d:00:00Z"`, rapid.IntRange(1, 28).Draw(t, label+"-d"), rapid.IntRange(0, 23).Draw(t, label+"-h")))
	case merge.UUID:
		return []byte(rapid.SampledFrom([]string{`"0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11"`, `"7d0c1a52-0000-4000-8000-000000000001"`}).Draw(t, label))
	case merge.Int:
		return []byte(strconv.Itoa(rapid.IntRange(0, 5).Draw(t, label)))
	case merge.Bool:
		return []byte(strconv.FormatBool(rapid.Bool().Draw(t, label)))
	case merge.Geo:
		return []byte(fmt.Sprintf(`{"lat":18.5%d,"lon":-72.3}`, rapid.IntRange(0, 3).Draw(t, label)))
	default:
		return []byte(strconv.Quote(rapid.SampledFrom([]string{"RN1 north", "Kafou", "Delmas 33", "pont rouge", "Wharf Jérémie"}).Draw(t, label)))
	}
}

func genFields(t *rapid.T, p *merge.Policy, all bool) []merge.FieldValue {
	var out []merge.FieldValue
	for i := range p.Fields {
		spec := &p.Fields[i]
		if spec.ServerOnly {
			continue
		}
		if all && spec.Required || rapid.IntRange(0, len(p.Fields)).Draw(t, "pick-"+spec.Name) < 2 {
			out = append(out, merge.FieldValue{Name: spec.Name, Value: genValue(t, spec, spec.Name)})
		}
	}
	if len(out) == 0 {
		spec := &p.Fields[0]
		out = append(out, merge.FieldValue{Name: spec.Name, Value: genValue(t, spec, spec.Name)})
	}
	return out
}

// genWorld plays a random field operation and returns the world after a
// final full sync.
func genWorld(t *rapid.T) *simtest.World {
	n := rapid.IntRange(2, 8).Draw(t, "devices")
	skews := make([]int64, n)
	for i := range skews {
		// Clocks off by up to a day either way; some far in the future.
		skews[i] = rapid.SampledFrom([]int64{0, -86_400_000, -5_000, 3_000, 90_000, 86_400_000 * 30}).Draw(t, "skew")
	}
	reg := merge.Standard()
	w := simtest.NewWorld(reg, skews, 60_000)
	steps := rapid.IntRange(1, 60).Draw(t, "steps")
	for s := 0; s < steps; s++ {
		w.NowMS += int64(rapid.IntRange(0, 120_000).Draw(t, "tick"))
		d := w.Devices[rapid.IntRange(0, n-1).Draw(t, "device")]
		switch rapid.IntRange(0, 13).Draw(t, "action") {
		case 0, 1, 2: // edit or create a patrol log
			k := rapid.SampledFrom(logKeys).Draw(t, "log")
			w.Edit(d, k, genFields(t, reg[k.Collection], d.Local.Records[k] == nil), false)
		case 3, 4: // flip a corridor's status
			k := rapid.SampledFrom(corridorKeys).Draw(t, "corridor")
			fs := genFields(t, reg[k.Collection], d.Local.Records[k] == nil)
			if rapid.Bool().Draw(t, "with-status") {
				fs = setField(fs, "status", []byte(strconv.Quote(rapid.SampledFrom([]string{"open", "restricted", "closed"}).Draw(t, "status"))))
			}
			w.Edit(d, k, fs, false)
		case 5: // append an entry (ids collide across devices on purpose)
			k := rapid.SampledFrom(entryKeys).Draw(t, "entry")
			if d.Local.Records[k] == nil {
				w.Edit(d, k, genFields(t, reg[k.Collection], true), false)
			}
		case 6: // delete a patrol log
			k := rapid.SampledFrom(logKeys).Draw(t, "log")
			if d.Local.Records[k] != nil {
				w.Edit(d, k, nil, true)
			}
		case 7, 8: // push part of the outbox
			w.Push(d, rapid.IntRange(0, len(d.Outbox)).Draw(t, "push-n"))
		case 9: // pull
			if err := w.Pull(d); err != nil {
				t.Fatal(err)
			}
		case 10: // a supervisor signs a log off
			k := rapid.SampledFrom(logKeys).Draw(t, "log")
			if rec := w.Server.Records[k]; rec != nil && !rec.Deleted() && !bytes.Equal(rec.Value("signed_off"), []byte("true")) {
				if _, err := w.SignOff(k, "sup-1"); err != nil {
					t.Fatal(err)
				}
			}
		case 12: // a reinstalled device re-uses counter 1 on a record it wrote
			k := rapid.SampledFrom(append(append([]simtest.Key{}, logKeys...), corridorKeys...)).Draw(t, "regress")
			if rec := w.Server.Records[k]; rec != nil && rec.VV.Get(d.Node) > 0 {
				fs := genFields(t, reg[k.Collection], true)
				if res := w.Send(d, k, vv.MustFromMap(map[vv.NodeID]uint64{d.Node: 1}), fs, false); res.Outcome != merge.Rejected && res.Outcome != merge.Stale {
					t.Fatalf("regressed counter: %s, want rejected or stale", res.Outcome)
				}
			}
		case 13: // a device tries to edit an entry it has seen
			k := rapid.SampledFrom(entryKeys).Draw(t, "entry")
			if rec := w.Server.Records[k]; rec != nil {
				v := rec.VV.Increment(d.Node)
				res := w.Send(d, k, v, []merge.FieldValue{{Name: "text", Value: []byte(`"changed"`)}}, false)
				if res.Outcome != merge.Rejected || res.Code != merge.CodeImmutable {
					t.Fatalf("editing an entry: %s %s, want rejected immutable", res.Outcome, res.Code)
				}
			}
		case 11: // a supervisor resolves a disputed field
			keys := w.Server.Keys()
			if len(keys) == 0 {
				continue
			}
			k := rapid.SampledFrom(keys).Draw(t, "resolve")
			p := reg[k.Collection]
			cs := p.Conflicts(w.Server.Records[k])
			if len(cs) == 0 || p.Immutable || cs[0].Field == merge.DeletedField {
				continue
			}
			c := cs[rapid.IntRange(0, len(cs)-1).Draw(t, "conflict")]
			if c.Field == merge.DeletedField {
				continue
			}
			v := c.Values[rapid.IntRange(0, len(c.Values)-1).Draw(t, "pick")].Value
			if _, err := w.ServerChange(k, []merge.FieldValue{{Name: c.Field, Value: v}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.SyncAll(); err != nil {
		t.Fatal(err)
	}
	return w
}

func setField(fs []merge.FieldValue, name string, v []byte) []merge.FieldValue {
	for i := range fs {
		if fs[i].Name == name {
			fs[i].Value = v
			return fs
		}
	}
	return append(fs, merge.FieldValue{Name: name, Value: v})
}

// causalOrder draws a random order of log that respects causality per
// record: a change comes after every change its vector covers. Two changes
// that claim the same (node, dot) (a device whose counter went backwards)
// keep their relative order in log: which of them is the regression depends
// on which came first, and the server's order is the reference.
func causalOrder(t *rapid.T, log []*merge.Change, label string) []*merge.Change {
	index := make(map[*merge.Change]int, len(log))
	for i, c := range log {
		index[c] = i
	}
	remaining := slices.Clone(log)
	var out []*merge.Change
	for len(remaining) > 0 {
		var ready []int
		for i, c := range remaining {
			if !blocked(c, remaining, index) {
				ready = append(ready, i)
			}
		}
		i := ready[rapid.IntRange(0, len(ready)-1).Draw(t, label)]
		out = append(out, remaining[i])
		remaining = slices.Delete(remaining, i, i+1)
	}
	return out
}

// blocked reports whether c covers a change still undelivered, or re-uses
// the (node, dot) of an undelivered change that came before it.
func blocked(c *merge.Change, pending []*merge.Change, index map[*merge.Change]int) bool {
	for _, o := range pending {
		if o == c || o.Collection != c.Collection || o.ID != c.ID {
			continue
		}
		if o.Node() == c.Node() && o.Dot() == c.Dot() {
			if index[o] < index[c] {
				return true
			}
			continue
		}
		if c.VV.Covers(o.Node(), o.Dot()) {
			return true
		}
	}
	return false
}

// replay delivers changes to a fresh replica, sometimes twice, sometimes
// again under a new change id (a device that lost its outbox's ids).
func replay(t *rapid.T, reg merge.Registry, changes []*merge.Change, label string) *simtest.Replica {
	r := simtest.NewReplica(reg)
	for i, c := range changes {
		if res := r.Deliver(c); res.Outcome == merge.Rejected && rejectedAtServer != nil && !rejectedAtServer[c.ChangeID] {
			t.Fatalf("%s rejected on a replica (%s) but accepted by the server", c.ChangeID, res.Code)
		} else if res.Outcome != merge.Rejected && rejectedAtServer[c.ChangeID] {
			t.Fatalf("%s accepted on a replica (%s) but rejected by the server", c.ChangeID, res.Outcome)
		}
		switch rapid.IntRange(0, 5).Draw(t, label+"-dup") {
		case 0:
			if res := r.Deliver(c); res.Outcome != merge.Duplicate {
				t.Fatalf("re-delivering %s: %s, want duplicate", c.ChangeID, res.Outcome)
			}
		case 1:
			again := *c
			again.ChangeID = fmt.Sprintf("%s-resent-%d", c.ChangeID, i)
			before := r.Records[simtest.Key{Collection: c.Collection, ID: c.ID}]
			res := r.Deliver(&again)
			if res.Outcome != merge.Stale && res.Outcome != merge.Rejected {
				t.Fatalf("re-sending %s under a new id: %s, want stale", c.ChangeID, res.Outcome)
			}
			if after := r.Records[simtest.Key{Collection: c.Collection, ID: c.ID}]; after != before {
				t.Fatalf("re-sending %s under a new id changed the record", c.ChangeID)
			}
		}
	}
	return r
}

// causallyClosedPrefix returns the changes of order up to a random point:
// every prefix of a causal order is causally closed.
func causallyClosedPrefix(t *rapid.T, order []*merge.Change, label string) []*merge.Change {
	return order[:rapid.IntRange(0, len(order)).Draw(t, label)]
}

// rejectedAtServer, when set, lists the change ids the server rejected:
// every replica must reject exactly those.
var rejectedAtServer map[string]bool

func TestPropertyConvergence(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := genWorld(t)
		rejectedAtServer = map[string]bool{}
		defer func() { rejectedAtServer = nil }()
		verdicts := simtest.NewReplica(w.Policies)
		for _, c := range w.Server.Log {
			if verdicts.Deliver(c).Outcome == merge.Rejected {
				rejectedAtServer[c.ChangeID] = true
			}
		}
		reg := w.Policies
		want := w.Server.Canonical()
		// Every device, after the final sync, holds the server's state.
		for _, d := range w.Devices {
			if got := d.Local.Canonical(); !bytes.Equal(got, want) {
				t.Fatalf("device %s diverged from the server:\n%s\nserver:\n%s", d.Node, got, want)
			}
		}
		// Any causal order of the server's log, with duplicates and
		// re-sends, gives the server's bytes.
		for k := 0; k < 2; k++ {
			order := causalOrder(t, w.Server.Log, fmt.Sprintf("order-%d", k))
			r := replay(t, reg, order, fmt.Sprintf("replay-%d", k))
			if got := r.Canonical(); !bytes.Equal(got, want) {
				t.Fatalf("replay %d diverged:\n%s\nserver:\n%s", k, got, want)
			}
		}
		// Two replicas that got the same causally closed subset in
		// different orders agree.
		order := causalOrder(t, w.Server.Log, "subset-order")
		subset := causallyClosedPrefix(t, order, "subset")
		a := replay(t, reg, subset, "subset-a")
		b := replay(t, reg, causalOrder(t, subset, "subset-order-b"), "subset-b")
		if !bytes.Equal(a.Canonical(), b.Canonical()) {
			t.Fatalf("same subset, different orders, different states:\n%s\n%s", a.Canonical(), b.Canonical())
		}
	})
}

func joinAll(t *rapid.T, reg merge.Registry, rs ...*simtest.Replica) *simtest.Replica {
	out := simtest.NewReplica(reg)
	for _, r := range rs {
		for _, k := range r.Keys() {
			if err := out.JoinRecord(r.Records[k]); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

func TestPropertyJoinIsALattice(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := genWorld(t)
		reg := w.Policies
		order := causalOrder(t, w.Server.Log, "order")
		// Three replicas holding random causally closed subsets.
		var parts []*simtest.Replica
		var sets [][]*merge.Change
		for i := 0; i < 3; i++ {
			o := causalOrder(t, w.Server.Log, fmt.Sprintf("o%d", i))
			s := causallyClosedPrefix(t, o, fmt.Sprintf("p%d", i))
			sets = append(sets, s)
			parts = append(parts, replay(t, reg, s, fmt.Sprintf("r%d", i)))
		}
		a, b, c := parts[0], parts[1], parts[2]
		ab, ba := joinAll(t, reg, a, b), joinAll(t, reg, b, a)
		if !bytes.Equal(ab.Canonical(), ba.Canonical()) {
			t.Fatalf("join not commutative:\n%s\n%s", ab.Canonical(), ba.Canonical())
		}
		if aa := joinAll(t, reg, a, a); !bytes.Equal(aa.Canonical(), a.Canonical()) {
			t.Fatalf("join not idempotent:\n%s\n%s", aa.Canonical(), a.Canonical())
		}
		left, right := joinAll(t, reg, ab, c), joinAll(t, reg, a, joinAll(t, reg, b, c))
		if !bytes.Equal(left.Canonical(), right.Canonical()) {
			t.Fatalf("join not associative:\n%s\n%s", left.Canonical(), right.Canonical())
		}
		// Joining the states of two sets gives the state of their union.
		union := unionInOrder(order, sets[0], sets[1])
		u := replay(t, reg, union, "union")
		if !bytes.Equal(ab.Canonical(), u.Canonical()) {
			t.Fatalf("join(A, B) != state(A ∪ B):\n%s\nunion:\n%s", ab.Canonical(), u.Canonical())
		}
	})
}

// unionInOrder returns the changes of a and b in the order they have in
// order (a causal order of a superset), so the union is delivered causally.
func unionInOrder(order []*merge.Change, a, b []*merge.Change) []*merge.Change {
	in := map[*merge.Change]bool{}
	for _, c := range a {
		in[c] = true
	}
	for _, c := range b {
		in[c] = true
	}
	var out []*merge.Change
	for _, c := range order {
		if in[c] {
			out = append(out, c)
		}
	}
	return out
}

func TestPropertyNoWriteLost(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := genWorld(t)
		srv := w.Server
		// Every write of every accepted change is in the final state (kept,
		// sibling or amendment) or was superseded by a later write to the
		// same field from a writer who had seen it.
		for _, ch := range srv.Log {
			if !srv.Accepted(ch.ChangeID) {
				continue // rejected: kept in the dead-letter list, not in state
			}
			k := simtest.Key{Collection: ch.Collection, ID: ch.ID}
			rec := srv.Records[k]
			p := w.Policies[ch.Collection]
			norm, res, ok := p.Validate(ch, merge.Options{})
			if !ok {
				_ = res
				continue
			}
			for _, fv := range withDeleted(norm) {
				if inState(rec, fv.Name, ch) || supersededIn(srv, ch, fv.Name) {
					continue
				}
				t.Fatalf("write %s@%d to %s.%s (%s) is lost:\n%s", ch.Node(), ch.Dot(), k, fv.Name, fv.Value, rec.AppendJSON(nil))
			}
		}
		// Every disputed field has an open conflict at the server that
		// lists exactly the field's competing writes.
		for _, k := range srv.Keys() {
			rec := srv.Records[k]
			for _, c := range w.Policies[k.Collection].Conflicts(rec) {
				open, ok := srv.Conflicts[k.String()+"#"+c.Field]
				if !ok {
					t.Fatalf("%s.%s is disputed but no conflict is open", k, c.Field)
				}
				if !sameWrites(open.Values, c.Values) {
					t.Fatalf("open conflict of %s.%s lists %v, the field holds %v", k, c.Field, open.Values, c.Values)
				}
			}
		}
	})
}

func withDeleted(ch *merge.Change) []merge.FieldValue {
	v := []byte("false")
	if ch.Deleted {
		v = []byte("true")
	}
	return append(slices.Clone(ch.Fields), merge.FieldValue{Name: merge.DeletedField, Value: v})
}

func inState(rec *merge.Record, field string, ch *merge.Change) bool {
	f, ok := rec.Field(field)
	if !ok {
		return false
	}
	for _, w := range f.Writes {
		if w.Node() == ch.Node() && w.Dot == ch.Dot() {
			return true
		}
	}
	return false
}

func supersededIn(srv *simtest.Replica, ch *merge.Change, field string) bool {
	for _, o := range srv.Log {
		if o == ch || !srv.Accepted(o.ChangeID) || o.Collection != ch.Collection || o.ID != ch.ID || !o.VV.Covers(ch.Node(), ch.Dot()) {
			continue
		}
		if o.Node() == ch.Node() && o.Dot() == ch.Dot() {
			continue
		}
		if field == merge.DeletedField && !o.Deleted || o.Deleted && field == merge.DeletedField {
			return true // every change writes the deletion field
		}
		if _, ok := o.Value(field); ok {
			return true
		}
	}
	return false
}

func sameWrites(a, b []merge.Write) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Node() != b[i].Node() || a[i].Dot != b[i].Dot || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

func TestPropertyRules(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := genWorld(t)
		srv := w.Server
		for _, k := range srv.Keys() {
			rec := srv.Records[k]
			p := w.Policies[k.Collection]
			frozen := bytes.Equal(rec.Value("signed_off"), []byte("true"))
			for _, f := range rec.Fields {
				// Causally later writes win regardless of clocks: nothing in
				// a frontier was seen by another write to the field (except
				// a frozen record's own writes, which amendments cannot
				// displace).
				for _, wr := range f.Writes {
					for _, o := range f.Writes {
						if o.Node() == wr.Node() && o.Dot == wr.Dot {
							continue
						}
						if writerVV(srv, k, o).Covers(wr.Node(), wr.Dot) && !(frozen && wr.Node() == vv.Server) {
							t.Fatalf("%s.%s keeps %s@%d beside %s@%d, which had seen it", k, f.Name, wr.Node(), wr.Dot, o.Node(), o.Dot)
						}
					}
				}
				if f.Kept < 0 {
					continue
				}
				kept := f.Writes[f.Kept]
				// Corridor safety: a concurrent more restrictive status is
				// never lost to a less restrictive one.
				if k.Collection == "corridors" && f.Name == "status" {
					for _, o := range f.Writes {
						if rank(o.Value) > rank(kept.Value) {
							t.Fatalf("%s keeps status %s over concurrent %s", k, kept.Value, o.Value)
						}
					}
				}
				// Entries are immutable: the kept body is the lowest stamp's.
				if p.Immutable {
					for _, o := range f.Writes {
						if o.HLC.Less(kept.HLC) {
							t.Fatalf("%s.%s keeps %s over the earlier %s", k, f.Name, kept.HLC, o.HLC)
						}
					}
				}
				// A signed-off log keeps only server-authored values.
				if frozen && kept.Node() != vv.Server {
					t.Fatalf("signed-off %s.%s keeps a device write %s@%d", k, f.Name, kept.Node(), kept.Dot)
				}
			}
			if p.Immutable {
				for _, f := range rec.Fields {
					for _, wr := range f.Writes {
						if wr.Dot != 1 {
							t.Fatalf("entry %s holds an edit %s@%d", k, wr.Node(), wr.Dot)
						}
					}
				}
			}
		}
	})
}

func rank(v []byte) int {
	return map[string]int{`"open"`: 0, `"restricted"`: 1, `"closed"`: 2}[string(v)]
}

func writerVV(srv *simtest.Replica, k simtest.Key, w merge.Write) vv.Vector {
	for _, c := range srv.Log {
		if srv.Accepted(c.ChangeID) && c.Collection == k.Collection && c.ID == k.ID && c.Node() == w.Node() && c.Dot() == w.Dot {
			return c.VV
		}
	}
	return nil
}
