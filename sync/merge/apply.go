package merge

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

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

	// The change's writes are ch.Fields with the deletion pseudo-field
	// inserted at its sorted place; write(j) reads them without building
	// the merged list.
	del := []byte("false")
	if ch.Deleted {
		del = []byte("true")
	}
	delAt, _ := slices.BinarySearchFunc(ch.Fields, DeletedField, func(f FieldValue, n string) int { return strings.Compare(f.Name, n) })
	nw := len(ch.Fields) + 1
	write := func(j int) (string, []byte) {
		switch {
		case j < delAt:
			return ch.Fields[j].Name, ch.Fields[j].Value
		case j == delAt:
			return DeletedField, del
		}
		return ch.Fields[j-1].Name, ch.Fields[j-1].Value
	}

	// One backing array for every touched field's new frontier: each
	// field's slice is capped so appends never run into the next one.
	room := nw
	{
		i, j := 0, 0
		for i < len(old) && j < nw {
			name, _ := write(j)
			switch {
			case old[i].Name < name:
				i++
			case old[i].Name > name:
				j++
			default:
				room += len(old[i].Writes)
				i++
				j++
			}
		}
	}
	backing := make([]Write, 0, room)

	const (
		isTouched   = 1 << iota // the change writes this field
		wasDisputed             // the field was disputed before the change
	)
	fields := make([]Field, 0, len(old)+nw)
	flags := make([]uint8, 0, len(old)+nw)
	i, j := 0, 0
	for i < len(old) || j < nw {
		var name string
		var value []byte
		if j < nw {
			name, value = write(j)
		}
		if j == nw || (i < len(old) && old[i].Name < name) {
			fields = append(fields, old[i])
			flags = append(flags, 0)
			i++
			continue
		}
		var prev *Field
		if i < len(old) && old[i].Name == name {
			prev = &old[i]
			i++
		}
		var fl uint8 = isTouched
		n := 1
		if prev != nil {
			n += len(prev.Writes)
			if disputed(prev) {
				fl |= wasDisputed
			}
		}
		ws := backing[len(backing) : len(backing) : len(backing)+n]
		backing = backing[:len(backing)+n]
		if prev != nil {
			for k := range prev.Writes {
				o := &prev.Writes[k]
				// A write the change has seen is superseded, except that a
				// pending amendment never displaces a write of the frozen
				// record itself.
				if o.seenBy(ch.VV) && !(amend && o.Node() == vv.Server) {
					continue
				}
				ws = append(ws, *o)
			}
		}
		ws = insertWrite(ws, Write{Value: value, HLC: ch.HLC, Dot: dot})
		fields = append(fields, Field{Name: name, Kept: -1, Writes: ws})
		flags = append(flags, fl)
		j++
	}

	rec := &Record{Collection: ch.Collection, ID: ch.ID, VV: vv.Merge(oldVV, ch.VV), Fields: fields}
	frozenAfter := p.frozen(fields)
	res := Result{Outcome: Applied, Record: rec, Change: ch}
	if stored != nil && vv.Compare(ch.VV, stored.VV) != vv.After {
		res.Outcome = Merged
	}
	for k := range fields {
		touched := flags[k]&isTouched != 0
		if !touched && frozenAfter == frozenBefore {
			continue
		}
		f := &fields[k]
		f.Kept = p.keep(f, frozenAfter)
		if touched && (f.Kept < 0 || f.Writes[f.Kept].Dot != dot || f.Writes[f.Kept].Node() != node) {
			res.Outcome = Merged
		}
		if disputed(f) {
			res.Conflicts = append(res.Conflicts, p.conflictOf(rec, f, frozenAfter))
		} else if flags[k]&wasDisputed != 0 {
			res.Settled = append(res.Settled, f.Name)
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
		if p.deleted.Name == "" {
			p.deleted = deletedSpec(p.Immutable) // a Policy built without sorted
		}
		return &p.deleted
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

func insertWrite(ws []Write, w Write) []Write {
	i, _ := slices.BinarySearchFunc(ws, w, compareID)
	return slices.Insert(ws, i, w)
}
