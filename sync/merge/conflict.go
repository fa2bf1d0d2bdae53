package merge

import (
	"bytes"
)

// Conflict is what a supervisor needs to review one disputed field: every
// competing write with its node and clock, which one is kept (if any), the
// rule that decided, and whether a decision is required of them.
//
// Conflicts are derived from the state: the same set of changes yields the
// same conflicts on every replica. A field holds at most one open conflict at
// a time; a later report for the same field replaces the earlier one (its
// Values are the field's whole frontier), and Result.Settled says when a
// writer who had seen every value closed it.
type Conflict struct {
	Collection string
	RecordID   string
	Field      string  // a field name; "*" for a whole rejected change
	Rule       Rule    // the rule that decided
	Values     []Write // every competing write, canonical (node, dot) order; read-only (shared with the record)
	Kept       int     // index into Values of the kept write; -1 when none is kept
	// ReviewRequired is true when the rule leaves a decision to a person
	// (corridor status, immutable entries, deletes, amendments, regressions).
	ReviewRequired bool
}

// KeptWrite returns the kept write, nil when none is.
func (c *Conflict) KeptWrite() *Write {
	if c.Kept < 0 {
		return nil
	}
	return &c.Values[c.Kept]
}

// conflictOf reports the disputed field f of rec.
func (p *Policy) conflictOf(rec *Record, f *Field, frozen bool) Conflict {
	rule := p.spec(f.Name).Rule
	kept := f.Value()
	for k := range f.Writes {
		w := &f.Writes[k]
		if isAmendment(w, frozen) && (f.Kept < 0 || !bytes.Equal(w.Value, kept)) {
			rule = RuleSignOffFreeze
			break
		}
	}
	return Conflict{
		Collection:     rec.Collection,
		RecordID:       rec.ID,
		Field:          f.Name,
		Rule:           rule,
		Values:         f.Writes, // records are immutable: shared, read-only
		Kept:           f.Kept,
		ReviewRequired: rule.reviewRequired(),
	}
}

// Conflicts returns the open conflicts of a record: one per disputed field.
func (p *Policy) Conflicts(rec *Record) []Conflict {
	frozen := p.frozen(rec.Fields)
	var out []Conflict
	for k := range rec.Fields {
		if disputed(&rec.Fields[k]) {
			out = append(out, p.conflictOf(rec, &rec.Fields[k], frozen))
		}
	}
	return out
}

// regressedConflict keeps a change rejected for vv_regressed for review: one
// value, the change's fields as a JSON object.
func regressedConflict(ch *Change) Conflict {
	return Conflict{
		Collection:     ch.Collection,
		RecordID:       ch.ID,
		Field:          "*",
		Rule:           RuleVVRegressed,
		Values:         []Write{{Value: FieldsJSON(ch), HLC: ch.HLC, Dot: ch.Dot()}},
		Kept:           -1,
		ReviewRequired: true,
	}
}

// FieldsJSON encodes a change's fields (and deletion) as one JSON object.
func FieldsJSON(ch *Change) []byte {
	b := appendFields([]byte{'{'}, ch.Fields)
	if ch.Deleted {
		if len(ch.Fields) > 0 {
			b = append(b, ',')
		}
		b = append(b, `"_deleted":true`...)
	}
	return append(b, '}')
}

// appendFields appends name:value pairs, comma-separated, without braces.
func appendFields(b []byte, fs []FieldValue) []byte {
	for i, f := range fs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, f.Name)
		b = append(b, ':')
		b = append(b, f.Value...)
	}
	return b
}
