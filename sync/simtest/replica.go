// Package simtest provides deterministic in-memory replicas of the fieldsync
// engine for tests: a Replica applies changes exactly as the server does
// (idempotency by change id, history lookups for re-sent counters) and
// renders its whole state canonically, so tests can compare replicas byte
// for byte. It does no I/O and reads no clock.
package simtest

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/fieldsync/fieldsync/sync/merge"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// Key names a record.
type Key struct{ Collection, ID string }

func (k Key) String() string { return k.Collection + "/" + k.ID }

type dotKey struct {
	Key
	Node vv.NodeID
	Dot  uint64
}

// Replica is one copy of the data set.
type Replica struct {
	Policies merge.Registry
	Options  merge.Options
	Records  map[Key]*merge.Record
	seen     map[string]merge.Result // change id -> first result
	history  map[dotKey]*merge.Change
	// Conflicts holds the latest conflict reported per (record, field), as
	// the server keeps one open conflict per field; Settled removes it.
	Conflicts map[string]merge.Conflict
	// Log lists the changes delivered, in order, duplicates excluded.
	Log []*merge.Change
}

// NewReplica returns an empty replica using the given policies.
func NewReplica(p merge.Registry) *Replica {
	return &Replica{
		Policies:  p,
		Records:   map[Key]*merge.Record{},
		seen:      map[string]merge.Result{},
		history:   map[dotKey]*merge.Change{},
		Conflicts: map[string]merge.Conflict{},
	}
}

// Deliver applies one change as the server would and returns its result.
// A change id seen before gets Duplicate and changes nothing.
func (r *Replica) Deliver(ch *merge.Change) merge.Result {
	if first, ok := r.seen[ch.ChangeID]; ok {
		k := Key{ch.Collection, ch.ID}
		return merge.Result{Outcome: merge.Duplicate, Record: r.Records[k], Change: first.Change}
	}
	p, ok := r.Policies[ch.Collection]
	if !ok {
		res := merge.Result{Outcome: merge.Rejected, Code: merge.CodeInvalidChange, Message: "unknown collection"}
		r.seen[ch.ChangeID] = res
		return res
	}
	k := Key{ch.Collection, ch.ID}
	stored := r.Records[k]
	var prior *merge.Change
	if merge.Covered(stored, ch) {
		prior = r.history[dotKey{k, ch.Node(), ch.Dot()}]
	}
	res := p.Apply(stored, ch, prior, r.Options)
	r.seen[ch.ChangeID] = res
	r.Log = append(r.Log, ch)
	switch res.Outcome {
	case merge.Applied, merge.Merged:
		r.Records[k] = res.Record
		r.history[dotKey{k, ch.Node(), ch.Dot()}] = res.Change
		for _, f := range res.Settled {
			delete(r.Conflicts, k.String()+"#"+f)
		}
		for _, c := range res.Conflicts {
			r.Conflicts[k.String()+"#"+c.Field] = c
		}
	}
	return res
}

// Accepted reports whether the replica applied or merged the change with this
// id (the first time it came).
func (r *Replica) Accepted(changeID string) bool {
	res, ok := r.seen[changeID]
	return ok && (res.Outcome == merge.Applied || res.Outcome == merge.Merged)
}

// Seen reports whether the replica has had a change with this id.
func (r *Replica) Seen(changeID string) bool {
	_, ok := r.seen[changeID]
	return ok
}

// Keys returns the replica's record keys in order.
func (r *Replica) Keys() []Key {
	keys := make([]Key, 0, len(r.Records))
	for k := range r.Records {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b Key) int { return strings.Compare(a.String(), b.String()) })
	return keys
}

// Canonical renders every record, in key order, one canonical JSON document
// per line: equal states give equal bytes.
func (r *Replica) Canonical() []byte {
	var b bytes.Buffer
	for _, k := range r.Keys() {
		b.Write(r.Records[k].AppendJSON(nil))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// JoinRecord merges a record received from another replica (a pull) into
// this replica's copy.
func (r *Replica) JoinRecord(rec *merge.Record) error {
	p, ok := r.Policies[rec.Collection]
	if !ok {
		return fmt.Errorf("simtest: unknown collection %q", rec.Collection)
	}
	k := Key{rec.Collection, rec.ID}
	out, err := p.Join(r.Records[k], rec)
	if err != nil {
		return err
	}
	r.Records[k] = out
	return nil
}

// Clone returns an independent copy of the replica's records (records are
// immutable values, so they are shared) with no history or seen ids.
func (r *Replica) CloneRecords() map[Key]*merge.Record {
	out := make(map[Key]*merge.Record, len(r.Records))
	for k, v := range r.Records {
		out[k] = v
	}
	return out
}
