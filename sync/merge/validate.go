package merge

import (
	"slices"

	"github.com/fieldsync/fieldsync/sync/vv"
)

// MaxIDLen is the longest record or change id accepted.
const MaxIDLen = 128

// ValidID reports whether s can name a record or a change: 1 to MaxIDLen
// characters from [A-Za-z0-9._:-] (UUIDs included).
func ValidID(s string) bool { return vv.ValidName(s, MaxIDLen) }

// Validate checks a change against the policy without any stored state and
// returns it normalised: values canonical, fields sorted and, for immutable
// collections, every field present (absent ones as null) so that competing
// bodies are compared whole. Every rule here depends on the change alone, so
// every replica accepts or rejects a change alike.
func (p *Policy) Validate(ch *Change, opt Options) (*Change, Result, bool) {
	return p.validate(nil, ch, opt)
}

func (p *Policy) validate(stored *Record, ch *Change, opt Options) (*Change, Result, bool) {
	bad := func(code, format string, args ...any) (*Change, Result, bool) {
		return nil, reject(stored, ch, code, format, args...), false
	}
	if ch.Collection != p.Collection {
		return bad(CodeInvalidChange, "change is for collection %q, not %q", ch.Collection, p.Collection)
	}
	if !ValidID(ch.ID) {
		return bad(CodeInvalidChange, "record id must be 1 to %d characters of [A-Za-z0-9._:-]", MaxIDLen)
	}
	if stored != nil && (stored.Collection != ch.Collection || stored.ID != ch.ID) {
		return bad(CodeInvalidChange, "change is for %s/%s, not %s/%s", ch.Collection, ch.ID, stored.Collection, stored.ID)
	}
	maxVV := opt.MaxVVEntries
	if maxVV <= 0 {
		maxVV = DefaultMaxVVEntries
	}
	if err := ch.VV.Validate(maxVV); err != nil {
		return bad(CodeInvalidVV, "%v", err)
	}
	node := ch.Node()
	if !vv.ValidNodeID(string(node)) {
		return bad(CodeInvalidHLC, "the change has no valid HLC")
	}
	if ch.VV.Get(node) == 0 {
		return bad(CodeInvalidHLC, "the HLC's node %s has no counter in vv", node)
	}
	if ch.Deleted {
		if len(ch.Fields) > 0 {
			return bad(CodeInvalidChange, "a delete carries no fields")
		}
		if p.Immutable || (!p.DeviceDelete && node != vv.Server) {
			return bad(CodeDeleteForbidden, "%s records cannot be deleted from a device", p.Collection)
		}
		return ch, Result{}, true
	}
	if len(ch.Fields) == 0 && node != vv.Server {
		// A server change may write no field: it still writes the deletion
		// pseudo-field, which is how a supervisor keeps a revived record
		// (or settles a delete conflict) without touching its values.
		return bad(CodeEmptyChange, "a change must write at least one field or delete the record")
	}
	if p.Immutable && !ch.IsCreation() {
		return bad(CodeImmutable, "%s records cannot be changed once written; write a new one with \"corrects\"", p.Collection)
	}

	// Values are usually canonical already; the change is copied only when
	// one is not (or the collection needs every field written).
	var fields []FieldValue
	for i, fv := range ch.Fields {
		if i > 0 && ch.Fields[i-1].Name >= fv.Name {
			return bad(CodeInvalidChange, "fields must be unique and sorted by name")
		}
		spec, ok := p.Field(fv.Name)
		if !ok {
			return bad(CodeUnknownField, "%s has no field %q", p.Collection, fv.Name)
		}
		if spec.ServerOnly && node != vv.Server {
			return bad(CodeReadOnlyField, "field %q is set by the server only", fv.Name)
		}
		v, err := spec.canonical(fv.Value)
		if err != nil {
			return bad(CodeInvalidValue, "%v", err)
		}
		if fields == nil && !sameBytes(v, fv.Value) {
			fields = make([]FieldValue, i, len(ch.Fields))
			copy(fields, ch.Fields[:i])
		}
		if fields != nil {
			fields = append(fields, FieldValue{Name: fv.Name, Value: v})
		}
	}
	out := ch
	if fields != nil {
		c := *ch
		c.Fields = fields
		out = &c
	}
	if ch.IsCreation() {
		for k := range p.Fields {
			spec := &p.Fields[k]
			if !spec.Required {
				continue
			}
			if _, ok := out.Value(spec.Name); !ok {
				return bad(CodeMissingField, "creating a %s record needs field %q", p.Collection, spec.Name)
			}
		}
	}
	if p.Immutable {
		if out == ch {
			c := *ch
			out = &c
		}
		full := make([]FieldValue, 0, len(p.Fields))
		for k := range p.Fields {
			name := p.Fields[k].Name
			v, ok := out.Value(name)
			if !ok {
				v = []byte("null")
			}
			full = append(full, FieldValue{Name: name, Value: v})
		}
		out.Fields = full
	}
	return out, Result{}, true
}

// sameBytes reports whether a and b are the same memory (canonical returned
// its input unchanged).
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// SortFields sorts a change's fields by name; decoders call it so that
// Validate's order check only fails on duplicates.
func SortFields(fs []FieldValue) {
	slices.SortFunc(fs, func(a, b FieldValue) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
}
