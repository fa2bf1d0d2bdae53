package merge

import (
	"bytes"

	"github.com/fieldsync/fieldsync/sync/hlc"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// Change is one edit as a device (or the server) sends it: the fields it
// changed, the record's version vector after the edit, and the HLC of the edit.
// Every field in it is written with that HLC and dot VV[writer], the writer
// being the HLC's node.
type Change struct {
	ChangeID   string
	Collection string
	ID         string
	VV         vv.Vector
	HLC        hlc.Timestamp
	Fields     []FieldValue // sorted by name, names unique
	Deleted    bool
}

// FieldValue is one field written by a change.
type FieldValue struct {
	Name  string
	Value []byte
}

// Node returns the writer of the change.
func (c *Change) Node() vv.NodeID { return c.HLC.Node }

// Dot returns the writer's counter at this change.
func (c *Change) Dot() uint64 { return c.VV.Get(c.HLC.Node) }

// IsCreation reports whether the change creates its record: its vector holds
// only its writer, at 1. The test depends on the change alone, never on what
// a replica already holds, so every replica treats a change the same way.
func (c *Change) IsCreation() bool {
	return len(c.VV) == 1 && c.VV[0].Node == c.HLC.Node && c.VV[0].Counter == 1
}

// Value returns the value the change writes to a field.
func (c *Change) Value(name string) ([]byte, bool) {
	for _, f := range c.Fields {
		if f.Name == name {
			return f.Value, true
		}
	}
	return nil, false
}

// SameEdit reports whether two changes write the same fields with the same
// values and the same deletion (their ids, clocks and vectors may differ).
// Values must be canonical (as Apply and DecodeChange leave them).
func SameEdit(a, b *Change) bool {
	if a.Collection != b.Collection || a.ID != b.ID || a.Deleted != b.Deleted || len(a.Fields) != len(b.Fields) {
		return false
	}
	for i := range a.Fields {
		if a.Fields[i].Name != b.Fields[i].Name || !bytes.Equal(a.Fields[i].Value, b.Fields[i].Value) {
			return false
		}
	}
	return true
}
