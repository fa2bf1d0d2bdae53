package merge

import (
	"fmt"

	"github.com/fieldsync/fieldsync/sync/hlc"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// ServerChange returns a change authored by the server node on top of rec:
// its vector is rec's with the server's counter raised, so it has seen every
// write rec holds and supersedes them in every field it writes. stamp must be
// a server HLC tick (node vv.Server).
func ServerChange(rec *Record, changeID string, stamp hlc.Timestamp, fields []FieldValue) (*Change, error) {
	if stamp.Node != vv.Server {
		return nil, fmt.Errorf("merge: server change stamped by node %q", stamp.Node)
	}
	fs := append([]FieldValue(nil), fields...)
	SortFields(fs)
	return &Change{
		ChangeID:   changeID,
		Collection: rec.Collection,
		ID:         rec.ID,
		VV:         rec.VV.Increment(vv.Server),
		HLC:        stamp,
		Fields:     fs,
	}, nil
}

// SignOff returns the server change that signs off rec. Besides the sign-off
// fields it writes every field's kept value again: the snapshot it signs. A
// device edit the sign-off has not seen then meets the snapshot's write in
// its field, on every replica and in any order, and waits as a pending
// amendment instead of changing the signed record.
func (p *Policy) SignOff(rec *Record, changeID string, stamp hlc.Timestamp, by string, at []byte) (*Change, error) {
	if p.FreezeField == "" {
		return nil, fmt.Errorf("merge: %s records cannot be signed off", p.Collection)
	}
	if rec.Deleted() {
		// Signing re-writes every field, which would also revive it.
		return nil, fmt.Errorf("merge: %s/%s is deleted and cannot be signed off", rec.Collection, rec.ID)
	}
	var fields []FieldValue
	for k := range rec.Fields {
		f := &rec.Fields[k]
		if f.Name == DeletedField || f.Kept < 0 || f.Name == p.FreezeField {
			continue
		}
		fields = append(fields, FieldValue{Name: f.Name, Value: f.Writes[f.Kept].Value})
	}
	set := func(name string, v []byte) {
		for k := range fields {
			if fields[k].Name == name {
				fields[k].Value = v
				return
			}
		}
		fields = append(fields, FieldValue{Name: name, Value: v})
	}
	set(p.FreezeField, []byte("true"))
	if _, ok := p.Field(p.FreezeField + "_by"); ok {
		set(p.FreezeField+"_by", appendString(nil, by))
	}
	if _, ok := p.Field(p.FreezeField + "_at"); ok && at != nil {
		set(p.FreezeField+"_at", at)
	}
	return ServerChange(rec, changeID, stamp, fields)
}
