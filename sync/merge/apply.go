package merge

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/fieldsync/fieldsync/sync/vv"
)

// Outcome is what happened to one change.
type Outcome string

// The outcomes of protocol v1 (the push result "status").
const (
	Applied   Outcome = "applied"   // fast-forward: the change had seen the whole stored state and all it wrote is kept
	Merged    Outcome = "merged"    // concurrent with the stored state: merged field by field
	Duplicate Outcome = "duplicate" // the change_id was seen before (decided by the caller)
	Stale     Outcome = "stale"     // already known: the writer's same edit is in the stored state
	Rejected  Outcome = "rejected"  // invalid or not allowed; see Code
)

// Codes of rejected changes. They are stable: clients match on them.
const (
	CodeInvalidChange   = "invalid_change"   // malformed id, collection or shape
	CodeInvalidVV       = "invalid_vv"       // the version vector breaks its rules
	CodeInvalidHLC      = "invalid_hlc"      // the HLC is missing or its node has no counter in vv
	CodeUnknownField    = "unknown_field"    // a field the collection does not have
	CodeInvalidValue    = "invalid_value"    // a value of the wrong type or out of range
	CodeMissingField    = "missing_field"    // a creation without a required field
	CodeReadOnlyField   = "read_only_field"  // a server-only field written by a device
	CodeEmptyChange     = "empty_change"     // no fields and no delete
	CodeImmutable       = "immutable"        // an edit of an immutable record
	CodeDeleteForbidden = "delete_forbidden" // a delete the collection does not allow
	CodeVVRegressed     = "vv_regressed"     // the writer's counter went backwards
)

// Options are the limits Apply enforces.
type Options struct {
	// MaxVVEntries is the most entries a change's vector may hold (0: 256).
	MaxVVEntries int
}

// DefaultMaxVVEntries is the default limit on version vector entries.
const DefaultMaxVVEntries = 256

// Result is the outcome of applying one change.
type Result struct {
	Outcome Outcome
	Code    string // set when Outcome is Rejected
	Message string
	// Record is the state after the change (the stored state when nothing
	// changed; nil when the change was rejected for a record that does not
	// exist).
	Record *Record
	// Conflicts lists the fields where this change left concurrent writes
	// with different values, or a pending amendment, each with every
	// competing write. A rejected vv_regressed change is reported here too.
	Conflicts []Conflict
	// Settled lists the fields whose concurrent writes this change
	// superseded: someone who had seen every value wrote a new one.
	Settled []string
	// Change is the change as applied: values canonical, fields sorted and,
	// for immutable collections, every field present.
	Change *Change
}

func reject(stored *Record, ch *Change, code, format string, args ...any) Result {
	return Result{Outcome: Rejected, Code: code, Message: fmt.Sprintf(format, args...), Record: stored, Change: ch}
}

// Apply merges one change into the stored state of its record (nil when the
// replica does not hold the record) and returns the new state, the outcome
// and the conflicts the change opened. It never modifies stored or ch.
//
// prior is what the change's writer wrote to this record at the change's dot,
// when the caller has it in its history; it is consulted only when the
// stored state has already seen that dot (see Covered), to tell a harmless
// re-send (stale) from a writer whose counter went backwards (vv_regressed).
//
// Apply assumes causal delivery per record: a change arrives after every
// change its vector covers (a device pushes its outbox in order, and learns
// other writers' versions only from a replica that holds them). Under that
// assumption the state it computes depends only on the set of changes
// applied, never on their order or repetition.
func (p *Policy) Apply(stored *Record, ch *Change, prior *Change, opt Options) Result {
	norm, res, ok := p.validate(stored, ch, opt)
	if !ok && shapeCode(res.Code) {
		return res // no usable node or dot: nothing more can be said
	}
	node, dot := ch.Node(), ch.Dot()
	if stored != nil && stored.VV.Covers(node, dot) {
		// The writer's counter is already known. Checked before the
		// content rules: a reinstalled device re-sending "creations" must
		// read as a regression, not as a missing field.
		if ok && prior != nil && SameEdit(prior, norm) {
			return Result{Outcome: Stale, Record: stored, Change: norm}
		}
		shown := norm
		if !ok {
			shown = ch
		}
		r := reject(stored, shown, CodeVVRegressed,
			"node %s sent counter %d for this record, but counter %d is already known with a different edit: its counters went backwards", node, dot, stored.VV.Get(node))
		r.Conflicts = []Conflict{regressedConflict(shown)}
		return r
	}
	if !ok {
		return res
	}
	return p.merge(stored, norm)
}

// shapeCode reports whether a rejection leaves the change without a usable
// record, node or dot.
func shapeCode(code string) bool {
	return code == CodeInvalidChange || code == CodeInvalidVV || code == CodeInvalidHLC
}

// Covered reports whether stored has already seen the change's dot, in which
// case Apply wants the writer's prior edit at that dot to classify it.
func Covered(stored *Record, ch *Change) bool {
	return stored != nil && stored.VV.Covers(ch.Node(), ch.Dot())
}

// merge applies a validated change that brings a new dot.
func (p *Policy) merge(stored *Record, ch *Change) Result {
	node, dot := ch.Node(), ch.Dot()
	var old []Field
	var oldVV vv.Vector
	if stored != nil {
		old, oldVV = stored.Fields, stored.VV
	}
	frozenBefore := p.frozen(old)
	amend := frozenBefore && node != vv.Server

	// The change's writes, field by field, with the deletion pseudo-field.
	writes := make([]FieldValue, 0, len(ch.Fields)+1)
	writes = append(writes, ch.Fields...)
	del := []byte("false")
	if ch.Deleted {
		del = []byte("true")
	}
	writes = insertSorted(writes, FieldValue{Name: DeletedField, Value: del})

	fields := make([]Field, 0, len(old)+len(writes))
	touched := make([]bool, 0, len(old)+len(writes))
	var before []Field // the touched fields' prior state, for conflict reports
	i, j := 0, 0
	for i < len(old) || j < len(writes) {
		switch {
		case j == len(writes) || (i < len(old) && old[i].Name < writes[j].Name):
			fields = append(fields, old[i])
			touched = append(touched, false)
			i++
		default:
			var prev *Field
			if i < len(old) && old[i].Name == writes[j].Name {
				prev = &old[i]
				i++
			}
			w := Write{Value: writes[j].Value, HLC: ch.HLC, Dot: dot}
			f := Field{Name: writes[j].Name, Kept: -1}
			if prev != nil {
				f.Writes = make([]Write, 0, len(prev.Writes)+1)
				for k := range prev.Writes {
					o := &prev.Writes[k]
					// A write the change has seen is superseded, except that a
					// pending amendment never displaces a write of the frozen
					// record itself.
					if o.seenBy(ch.VV) && !(amend && o.Node() == vv.Server) {
						continue
					}
					f.Writes = append(f.Writes, *o)
				}
				before = append(before, *prev)
			} else {
				f.Writes = make([]Write, 0, 1)
				before = append(before, Field{Name: writes[j].Name, Kept: -1})
			}
			f.Writes = insertWrite(f.Writes, w)
			fields = append(fields, f)
			touched = append(touched, true)
			j++
		}
	}

	rec := &Record{Collection: ch.Collection, ID: ch.ID, VV: vv.Merge(oldVV, ch.VV), Fields: fields}
	frozenAfter := p.frozen(fields)
	for k := range fields {
		if touched[k] || frozenAfter != frozenBefore {
			fields[k].Kept = p.keep(&fields[k], frozenAfter)
		}
	}

	res := Result{Outcome: Applied, Record: rec, Change: ch}
	if stored != nil && vv.Compare(ch.VV, stored.VV) != vv.After {
		res.Outcome = Merged
	}
	b := 0
	for k := range fields {
		f := &fields[k]
		if !touched[k] && frozenAfter == frozenBefore {
			continue
		}
		if touched[k] {
			if f.Kept < 0 || !f.Writes[f.Kept].sameID(&Write{HLC: ch.HLC, Dot: dot}) {
				res.Outcome = Merged
			}
		}
		if disputed(f) {
			res.Conflicts = append(res.Conflicts, p.conflictOf(rec, f, frozenAfter))
		} else if touched[k] && disputed(&before[b]) {
			res.Settled = append(res.Settled, f.Name)
		}
		if touched[k] {
			b++
		}
	}
	return res
}

// frozen reports whether the record is signed off: its freeze field's kept
// value is true. The kept write is recomputed here, since callers ask while
// other fields' Kept indexes are being rebuilt; only the server writes that
// field, so amendments never play into it.
func (p *Policy) frozen(fields []Field) bool {
	if p.FreezeField == "" {
		return false
	}
	i, ok := slices.BinarySearchFunc(fields, p.FreezeField, func(f Field, n string) int {
		switch {
		case f.Name < n:
			return -1
		case f.Name > n:
			return 1
		}
		return 0
	})
	if !ok {
		return false
	}
	k := p.keep(&fields[i], false)
	return k >= 0 && isTrue(fields[i].Writes[k].Value)
}

// isAmendment reports whether w waits as a pending amendment: a device write
// to a signed-off record.
func isAmendment(w *Write, frozen bool) bool { return frozen && w.Node() != vv.Server }

// keep returns the index of the write the field's rule keeps among the
// writes that are not amendments, -1 when there is none.
func (p *Policy) keep(f *Field, frozen bool) int {
	spec := p.spec(f.Name)
	best := -1
	for k := range f.Writes {
		if isAmendment(&f.Writes[k], frozen) {
			continue
		}
		if best < 0 || spec.beats(&f.Writes[k], &f.Writes[best]) {
			best = k
		}
	}
	return best
}

// spec returns the field's spec; fields outside the policy (which validation
// keeps out) fall back to later-HLC.
func (p *Policy) spec(name string) *FieldSpec {
	if name == DeletedField {
		s := deletedSpec(p.Immutable)
		return &s
	}
	if s, ok := p.Field(name); ok {
		return s
	}
	return &FieldSpec{Name: name, Rule: RuleLaterHLC}
}

// disputed reports whether a field holds a write whose value differs from
// the kept one (a losing sibling or a pending amendment), or only amendments.
func disputed(f *Field) bool {
	kept := f.Value()
	for k := range f.Writes {
		if k != f.Kept && (f.Kept < 0 || !bytes.Equal(f.Writes[k].Value, kept)) {
			return true
		}
	}
	return false
}

func insertSorted(fs []FieldValue, v FieldValue) []FieldValue {
	i, _ := slices.BinarySearchFunc(fs, v.Name, func(f FieldValue, n string) int {
		switch {
		case f.Name < n:
			return -1
		case f.Name > n:
			return 1
		}
		return 0
	})
	return slices.Insert(fs, i, v)
}

func insertWrite(ws []Write, w Write) []Write {
	i, _ := slices.BinarySearchFunc(ws, w, compareID)
	return slices.Insert(ws, i, w)
}
