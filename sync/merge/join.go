package merge

import (
	"fmt"

	"github.com/fieldsync/fieldsync/sync/vv"
)

// Join merges two states of the same record, as a device does with a record
// it pulled and its own copy: the result holds every write either side holds
// that the other has not superseded. A write one side holds and the other has
// seen (its vector covers the write's dot) but does not hold was superseded
// there, and is dropped. Join is commutative, associative and idempotent, and
// joining the states of two sets of changes gives the state of their union.
func (p *Policy) Join(a, b *Record) (*Record, error) {
	switch {
	case a == nil:
		return b, nil
	case b == nil:
		return a, nil
	case a.Collection != b.Collection || a.ID != b.ID:
		return nil, fmt.Errorf("merge: cannot join %s/%s with %s/%s", a.Collection, a.ID, b.Collection, b.ID)
	}
	fields := make([]Field, 0, max(len(a.Fields), len(b.Fields)))
	i, j := 0, 0
	for i < len(a.Fields) || j < len(b.Fields) {
		switch {
		case j == len(b.Fields) || (i < len(a.Fields) && a.Fields[i].Name < b.Fields[j].Name):
			fields = append(fields, joinField(&a.Fields[i], b.VV))
			i++
		case i == len(a.Fields) || b.Fields[j].Name < a.Fields[i].Name:
			fields = append(fields, joinField(&b.Fields[j], a.VV))
			j++
		default:
			fields = append(fields, joinWrites(&a.Fields[i], &b.Fields[j], a.VV, b.VV))
			i++
			j++
		}
	}
	out := fields[:0]
	for _, f := range fields {
		if len(f.Writes) > 0 {
			out = append(out, f)
		}
	}
	frozen := p.frozen(out)
	for k := range out {
		out[k].Kept = p.keep(&out[k], frozen)
	}
	return &Record{Collection: a.Collection, ID: a.ID, VV: vv.Merge(a.VV, b.VV), Fields: out}, nil
}

// joinField keeps the writes of a field only one side has that the other
// side (with vector other) has not seen.
func joinField(f *Field, other vv.Vector) Field {
	out := Field{Name: f.Name, Kept: -1}
	for k := range f.Writes {
		if !f.Writes[k].seenBy(other) {
			out.Writes = append(out.Writes, f.Writes[k])
		}
	}
	return out
}

// joinWrites merges the frontiers of one field: writes both hold, and writes
// one holds that the other has not seen.
func joinWrites(fa, fb *Field, va, vb vv.Vector) Field {
	out := Field{Name: fa.Name, Kept: -1}
	x, y := fa.Writes, fb.Writes
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case j == len(y) || (i < len(x) && compareID(x[i], y[j]) < 0):
			if !x[i].seenBy(vb) {
				out.Writes = append(out.Writes, x[i])
			}
			i++
		case i == len(x) || compareID(y[j], x[i]) < 0:
			if !y[j].seenBy(va) {
				out.Writes = append(out.Writes, y[j])
			}
			j++
		default:
			// The same write on both sides. Its stamp differs only when the
			// server clamped a stamp from a clock running ahead; the lower
			// stamp is the clamped one, and taking the minimum keeps Join
			// commutative.
			if y[j].HLC.Less(x[i].HLC) {
				out.Writes = append(out.Writes, y[j])
			} else {
				out.Writes = append(out.Writes, x[i])
			}
			i++
			j++
		}
	}
	return out
}
