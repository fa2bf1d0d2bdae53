package merge

import (
	"bytes"
	"slices"
	"strings"

	"github.com/fieldsync/fieldsync/sync/hlc"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// Write is one value written to one field: the value (canonical JSON), the
// HLC stamp of the edit and its dot, the writer's vv counter at that edit. The
// writer is the stamp's node. (node, dot) identifies a write: a node writes a
// field at most once per counter.
type Write struct {
	Value []byte
	HLC   hlc.Timestamp
	Dot   uint64
}

// Node returns the node that made the write.
func (w *Write) Node() vv.NodeID { return w.HLC.Node }

// seenBy reports whether a change with vector v has seen this write.
func (w *Write) seenBy(v vv.Vector) bool { return v.Covers(w.HLC.Node, w.Dot) }

func (w *Write) sameID(o *Write) bool { return w.Dot == o.Dot && w.HLC.Node == o.HLC.Node }

// compareID orders writes canonically by (node, dot).
func compareID(a, b Write) int {
	if c := strings.Compare(string(a.HLC.Node), string(b.HLC.Node)); c != 0 {
		return c
	}
	switch {
	case a.Dot < b.Dot:
		return -1
	case a.Dot > b.Dot:
		return 1
	}
	return 0
}

// Field is the merged state of one field: its frontier, the writes no other
// write has superseded, in canonical (node, dot) order, and which of them is
// kept. A frontier of more than one write means concurrent writes; the ones
// not kept are siblings (losing sides, kept for review) or pending
// amendments of a signed-off record. Kept is -1 when no write may be kept
// (only amendments).
//
// Keeping the whole frontier, not just the kept value, is what makes the
// merge independent of arrival order: a later write that has seen the kept
// value but not a sibling supersedes only the kept value, and the sibling
// competes again.
type Field struct {
	Name   string
	Kept   int
	Writes []Write
}

// Value returns the kept value, nil when there is none.
func (f *Field) Value() []byte {
	if f.Kept < 0 {
		return nil
	}
	return f.Writes[f.Kept].Value
}

// Record is the merged state of one (collection, id). Records are values: the
// engine never modifies a Record it was given, and a returned Record may share
// memory with its inputs, so callers must not modify records either.
type Record struct {
	Collection string
	ID         string
	VV         vv.Vector
	Fields     []Field // sorted by name; includes DeletedField
}

// Field returns the named field's state.
func (r *Record) Field(name string) (*Field, bool) {
	i, ok := r.fieldIndex(name)
	if !ok {
		return nil, false
	}
	return &r.Fields[i], true
}

func (r *Record) fieldIndex(name string) (int, bool) {
	return slices.BinarySearchFunc(r.Fields, name, func(f Field, n string) int { return strings.Compare(f.Name, n) })
}

// Value returns the kept value of a field, nil when absent.
func (r *Record) Value(name string) []byte {
	if f, ok := r.Field(name); ok {
		return f.Value()
	}
	return nil
}

// Deleted reports whether the record is a tombstone.
func (r *Record) Deleted() bool { return isTrue(r.Value(DeletedField)) }

// Equal reports whether two records hold the same state.
func (r *Record) Equal(o *Record) bool {
	if r.Collection != o.Collection || r.ID != o.ID || vv.Compare(r.VV, o.VV) != vv.Equal || len(r.Fields) != len(o.Fields) {
		return false
	}
	for i := range r.Fields {
		a, b := &r.Fields[i], &o.Fields[i]
		if a.Name != b.Name || a.Kept != b.Kept || len(a.Writes) != len(b.Writes) {
			return false
		}
		for j := range a.Writes {
			wa, wb := &a.Writes[j], &b.Writes[j]
			if wa.HLC != wb.HLC || wa.Dot != wb.Dot || !bytes.Equal(wa.Value, wb.Value) {
				return false
			}
		}
	}
	return true
}

// Writes returns every write in the record's state: kept values, siblings
// and amendments, field by field.
func (r *Record) Writes() []FieldWrite {
	var out []FieldWrite
	for _, f := range r.Fields {
		for i, w := range f.Writes {
			out = append(out, FieldWrite{Field: f.Name, Write: w, Kept: i == f.Kept})
		}
	}
	return out
}

// FieldWrite is a write with the field it belongs to.
type FieldWrite struct {
	Field string
	Write
	Kept bool
}
