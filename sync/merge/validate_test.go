package merge_test

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/fieldsync/fieldsync/sync/hlc"
	"github.com/fieldsync/fieldsync/sync/merge"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// vvec builds a vector from node, counter pairs.
func vvec(pairs ...any) vv.Vector {
	m := map[vv.NodeID]uint64{}
	for i := 0; i < len(pairs); i += 2 {
		m[vv.NodeID(pairs[i].(string))] = uint64(pairs[i+1].(int))
	}
	return vv.MustFromMap(m)
}

// vchange builds a change as a decoder leaves it: fields sorted by name.
// fields are name, JSON value pairs.
func vchange(id, collection, record string, v vv.Vector, node vv.NodeID, wall int64, fields ...string) *merge.Change {
	ch := &merge.Change{
		ChangeID: id, Collection: collection, ID: record, VV: v,
		HLC: hlc.Timestamp{Wall: 1764300000000 + wall, Node: node},
	}
	for i := 0; i < len(fields); i += 2 {
		ch.Fields = append(ch.Fields, merge.FieldValue{Name: fields[i], Value: []byte(fields[i+1])})
	}
	merge.SortFields(ch.Fields)
	return ch
}

// mustAccept applies ch and fails unless it was applied or merged.
func mustAccept(t *testing.T, p *merge.Policy, stored *merge.Record, ch *merge.Change) merge.Result {
	t.Helper()
	res := p.Apply(stored, ch, nil, merge.Options{})
	if res.Outcome != merge.Applied && res.Outcome != merge.Merged {
		t.Fatalf("fixture %s: %s %s %s", ch.ChangeID, res.Outcome, res.Code, res.Message)
	}
	return res
}

// applyCodes returns the rejection codes declared in apply.go (the Code*
// constants), so that a code added there without a case here fails the test.
func applyCodes(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "apply.go", nil, 0)
	if err != nil {
		t.Fatalf("reading the codes of apply.go: %v", err)
	}
	codes := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Code") || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatalf("%s: %v", name.Name, err)
				}
				codes[v] = name.Name
			}
		}
	}
	if len(codes) == 0 {
		t.Fatal("apply.go declares no Code* constants")
	}
	return codes
}

// TestValidationCodes checks that each rejection code of Policy.Apply is
// returned for a change that earns it, and for no other reason: wherever the
// fault can be isolated, the case starts from a change that is accepted
// (ok) and adds exactly one fault (fault); the accepted change must be
// applied or merged, the faulty one must get the code. Cases without a
// fault check a change as it is.
func TestValidationCodes(t *testing.T) {
	reg := merge.Standard()
	logs, corridors, entries := reg["patrol_logs"], reg["corridors"], reg["patrol_entries"]

	// A patrol log created by dev-A, and what dev-A wrote at counter 1 (the
	// server's history of that dot).
	logCreated := mustAccept(t, logs, nil, vchange("c1", "patrol_logs", "log-1", vvec("dev-A", 1), "dev-A", 0,
		"route", `"RN1"`, "status", `"active"`, "unit", `"KEN-3"`))
	logRec, logHistory := logCreated.Record, logCreated.Change
	// The same log after an edit by dev-B, which had seen the creation.
	logEdited := mustAccept(t, logs, logRec, vchange("c2", "patrol_logs", "log-1", vvec("dev-A", 1, "dev-B", 1), "dev-B", 1000,
		"route", `"RN2"`)).Record
	// The same log deleted by the server and revived by an edit that had
	// not seen the delete: an update_wins conflict on _deleted.
	logDeleted, err := merge.ServerChange(logRec, "s1", hlc.Timestamp{Wall: 1764300003000, Node: vv.Server}, nil)
	if err != nil {
		t.Fatal(err)
	}
	logDeleted.Deleted = true
	logRevived := mustAccept(t, logs, mustAccept(t, logs, logRec, logDeleted).Record,
		vchange("c3", "patrol_logs", "log-1", vvec("dev-A", 1, "dev-B", 1), "dev-B", 2000, "notes", `"detained two"`)).Record
	if logRevived.Deleted() || len(logs.Conflicts(logRevived)) != 1 {
		t.Fatalf("fixture: the revived log should be live with one conflict:\n%s", logRevived.AppendJSON(nil))
	}

	// A supervisor keeps the revived log: a server change with no field.
	keep, err := merge.ServerChange(logRevived, "x", hlc.Timestamp{Wall: 1764300009000, Node: vv.Server}, nil)
	if err != nil {
		t.Fatal(err)
	}

	// A supervisor signs the log off: a server change writing signed_off.
	signOff, err := logs.SignOff(logRec, "x", hlc.Timestamp{Wall: 1764300009000, Node: vv.Server}, "sup-1", []byte(`"2025-11-28T06:00:00Z"`))
	if err != nil {
		t.Fatal(err)
	}

	corridorRec := mustAccept(t, corridors, nil, vchange("k1", "corridors", "rn1-north", vvec("dev-A", 1), "dev-A", 0,
		"status", `"open"`)).Record
	const entryID = "5f3e2a10-8c4b-4d2e-9a7f-1b2c3d4e5f60"
	entryBody := []string{"kind", `"checkpoint"`, "occurred_at", `"2025-11-28T03:35:00Z"`,
		"patrol_id", `"0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11"`, "text", `"Checkpoint Kafou"`, "unit", `"KEN-3"`}
	entryRec := mustAccept(t, entries, nil, vchange("e1", "patrol_entries", entryID, vvec("dev-A", 1), "dev-A", 0, entryBody...)).Record

	// Changes every case builds on.
	logEdit := func() *merge.Change { // dev-B edits the route, having seen the creation
		return vchange("x", "patrol_logs", "log-1", vvec("dev-A", 1, "dev-B", 1), "dev-B", 5000, "route", `"RN1 north"`)
	}
	logCreation := func() *merge.Change {
		return vchange("x", "patrol_logs", "log-2", vvec("dev-A", 1), "dev-A", 5000, "status", `"planned"`, "unit", `"KEN-4"`)
	}

	tests := []struct {
		name   string
		policy *merge.Policy
		stored *merge.Record
		prior  *merge.Change // the writer's history at the change's dot
		opt    merge.Options
		ok     func() *merge.Change  // an accepted change
		fault  func(c *merge.Change) // the one fault; nil: check ok() as it is
		want   merge.Outcome
		code   string
		// settled, when set, is the field the change must settle.
		settled string
	}{
		// invalid_change
		{name: "rejected invalid_change: the change names another collection", policy: logs, stored: logRec, ok: logEdit,
			fault: func(c *merge.Change) { c.Collection = "corridors" }, want: merge.Rejected, code: merge.CodeInvalidChange},
		{name: "rejected invalid_change: the record id has a space", policy: logs, ok: logCreation,
			fault: func(c *merge.Change) { c.ID = "log 2" }, want: merge.Rejected, code: merge.CodeInvalidChange},
		{name: "rejected invalid_change: the record id is longer than 128 characters", policy: logs, ok: logCreation,
			fault: func(c *merge.Change) { c.ID = strings.Repeat("a", merge.MaxIDLen+1) }, want: merge.Rejected, code: merge.CodeInvalidChange},
		{name: "rejected invalid_change: the change is for another record than the stored one", policy: logs, stored: logRec, ok: logEdit,
			fault: func(c *merge.Change) { c.ID = "log-2" }, want: merge.Rejected, code: merge.CodeInvalidChange},
		{name: "rejected invalid_change: a delete carries fields", policy: logs, stored: logRec,
			ok: func() *merge.Change {
				c := logEdit()
				c.Fields, c.Deleted = nil, true
				return c
			},
			fault: func(c *merge.Change) { c.Fields = []merge.FieldValue{{Name: "route", Value: []byte(`"RN1"`)}} },
			want:  merge.Rejected, code: merge.CodeInvalidChange},
		{name: "rejected invalid_change: a field is written twice", policy: logs, stored: logRec, ok: logEdit,
			fault: func(c *merge.Change) {
				c.Fields = append(c.Fields, merge.FieldValue{Name: "route", Value: []byte(`"RN2"`)})
			},
			want: merge.Rejected, code: merge.CodeInvalidChange},

		// invalid_vv
		{name: "rejected invalid_vv: a counter of 0", policy: logs, stored: logRec, ok: logEdit,
			fault: func(c *merge.Change) { c.VV = vv.Vector{{Node: "dev-A", Counter: 0}, {Node: "dev-B", Counter: 1}} },
			want:  merge.Rejected, code: merge.CodeInvalidVV},
		{name: "rejected invalid_vv: a counter above 2^53-1", policy: logs, stored: logRec, ok: logEdit,
			fault: func(c *merge.Change) {
				c.VV = vv.Vector{{Node: "dev-A", Counter: 1}, {Node: "dev-B", Counter: vv.MaxCounter + 1}}
			},
			want: merge.Rejected, code: merge.CodeInvalidVV},
		{name: "rejected invalid_vv: entries not sorted by node", policy: logs, stored: logRec, ok: logEdit,
			fault: func(c *merge.Change) { c.VV = vv.Vector{{Node: "dev-B", Counter: 1}, {Node: "dev-A", Counter: 1}} },
			want:  merge.Rejected, code: merge.CodeInvalidVV},
		{name: "rejected invalid_vv: an invalid node id", policy: logs, stored: logRec, ok: logEdit,
			fault: func(c *merge.Change) { c.VV = vv.Vector{{Node: "dev A", Counter: 1}, {Node: "dev-B", Counter: 1}} },
			want:  merge.Rejected, code: merge.CodeInvalidVV},
		{name: "rejected invalid_vv: more entries than Options.MaxVVEntries", policy: logs, stored: logRec,
			opt: merge.Options{MaxVVEntries: 2}, ok: logEdit,
			fault: func(c *merge.Change) { c.VV = c.VV.With("dev-C", 1) },
			want:  merge.Rejected, code: merge.CodeInvalidVV},

		// invalid_hlc
		{name: "rejected invalid_hlc: no stamp", policy: logs, stored: logRec, ok: logEdit,
			fault: func(c *merge.Change) { c.HLC = hlc.Timestamp{} }, want: merge.Rejected, code: merge.CodeInvalidHLC},
		{name: "rejected invalid_hlc: the stamp's node has no counter in vv", policy: logs, stored: logRec, ok: logEdit,
			fault: func(c *merge.Change) { c.HLC.Node = "dev-C" }, want: merge.Rejected, code: merge.CodeInvalidHLC},

		// unknown_field
		{name: "rejected unknown_field: a field the collection does not have", policy: logs, stored: logRec, ok: logEdit,
			fault: func(c *merge.Change) {
				c.Fields = append(c.Fields, merge.FieldValue{Name: "colour", Value: []byte(`"red"`)})
				merge.SortFields(c.Fields)
			},
			want: merge.Rejected, code: merge.CodeUnknownField},
		{name: "rejected unknown_field: the deletion pseudo-field written as a field", policy: logs, stored: logRec, ok: logEdit,
			fault: func(c *merge.Change) {
				c.Fields = append(c.Fields, merge.FieldValue{Name: merge.DeletedField, Value: []byte(`true`)})
				merge.SortFields(c.Fields)
			},
			want: merge.Rejected, code: merge.CodeUnknownField},

		// invalid_value
		{name: "rejected invalid_value: a status outside the enum", policy: logs, stored: logRec, ok: logEdit,
			fault: func(c *merge.Change) {
				c.Fields = append(c.Fields, merge.FieldValue{Name: "status", Value: []byte(`"paused"`)})
				merge.SortFields(c.Fields)
			},
			want: merge.Rejected, code: merge.CodeInvalidValue},
		{name: "rejected invalid_value: a string longer than its limit", policy: logs, stored: logRec, ok: logEdit,
			fault: func(c *merge.Change) { c.Fields[0].Value = []byte(strconv.Quote(strings.Repeat("r", 257))) },
			want:  merge.Rejected, code: merge.CodeInvalidValue},
		{name: "rejected invalid_value: null in a required field", policy: logs, stored: logRec, ok: logEdit,
			fault: func(c *merge.Change) {
				c.Fields = append(c.Fields, merge.FieldValue{Name: "unit", Value: []byte(`null`)})
				merge.SortFields(c.Fields)
			},
			want: merge.Rejected, code: merge.CodeInvalidValue},

		// missing_field
		{name: "rejected missing_field: a creation without status", policy: logs, ok: logCreation,
			fault: func(c *merge.Change) {
				c.Fields = slices.DeleteFunc(c.Fields, func(f merge.FieldValue) bool { return f.Name == "status" })
			},
			want: merge.Rejected, code: merge.CodeMissingField},
		{name: "rejected missing_field: a corridor creation without status", policy: corridors,
			ok: func() *merge.Change {
				return vchange("x", "corridors", "rn2-south", vvec("dev-C", 1), "dev-C", 0, "name", `"RN2 south"`, "status", `"closed"`)
			},
			fault: func(c *merge.Change) {
				c.Fields = slices.DeleteFunc(c.Fields, func(f merge.FieldValue) bool { return f.Name == "status" })
			},
			want: merge.Rejected, code: merge.CodeMissingField},

		// read_only_field
		{name: "rejected read_only_field: a device writes signed_off", policy: logs, stored: logRec, ok: logEdit,
			fault: func(c *merge.Change) {
				c.Fields = append(c.Fields, merge.FieldValue{Name: "signed_off", Value: []byte(`true`)})
				merge.SortFields(c.Fields)
			},
			want: merge.Rejected, code: merge.CodeReadOnlyField},
		{name: "applied: the server writes signed_off (a sign-off)", policy: logs, stored: logRec,
			ok:   func() *merge.Change { c := *signOff; return &c },
			want: merge.Applied},

		// empty_change
		{name: "rejected empty_change: a device change with no field and no delete", policy: logs, stored: logRec, ok: logEdit,
			fault: func(c *merge.Change) { c.Fields = nil }, want: merge.Rejected, code: merge.CodeEmptyChange},
		{name: "applied: a server change with no field keeps a revived record", policy: logs, stored: logRevived,
			ok:   func() *merge.Change { c := *keep; return &c },
			want: merge.Applied, settled: merge.DeletedField},

		// immutable
		{name: "rejected immutable: a device edits an entry it has seen", policy: entries, stored: entryRec,
			ok: func() *merge.Change { // a concurrent creation of the same id: competes as a whole body
				return vchange("x", "patrol_entries", entryID, vvec("dev-B", 1), "dev-B", 1000, entryBody...)
			},
			fault: func(c *merge.Change) { c.VV = vvec("dev-A", 1, "dev-B", 1) },
			want:  merge.Rejected, code: merge.CodeImmutable},
		{name: "rejected immutable: the server edits an entry", policy: entries, stored: entryRec,
			ok: func() *merge.Change {
				return vchange("x", "patrol_entries", entryID, vvec("dev-A", 1, "srv", 1), vv.Server, 1000, "text", `"Checkpoint Kafou, 3 cars"`)
			},
			want: merge.Rejected, code: merge.CodeImmutable},

		// delete_forbidden
		{name: "rejected delete_forbidden: a device deletes a corridor", policy: corridors, stored: corridorRec,
			ok: func() *merge.Change { // the server may delete a corridor
				c := vchange("x", "corridors", "rn1-north", vvec("dev-A", 1, "srv", 1), vv.Server, 1000)
				c.Deleted = true
				return c
			},
			fault: func(c *merge.Change) { c.VV, c.HLC.Node = vvec("dev-A", 1, "dev-B", 1), "dev-B" },
			want:  merge.Rejected, code: merge.CodeDeleteForbidden},
		{name: "rejected delete_forbidden: a device deletes a patrol entry", policy: entries, stored: entryRec,
			ok: func() *merge.Change {
				c := vchange("x", "patrol_entries", entryID, vvec("dev-A", 2), "dev-A", 1000)
				c.Deleted = true
				return c
			},
			want: merge.Rejected, code: merge.CodeDeleteForbidden},
		{name: "rejected delete_forbidden: the server deletes a patrol entry", policy: entries, stored: entryRec,
			ok: func() *merge.Change {
				c := vchange("x", "patrol_entries", entryID, vvec("dev-A", 1, "srv", 1), vv.Server, 1000)
				c.Deleted = true
				return c
			},
			want: merge.Rejected, code: merge.CodeDeleteForbidden},
		{name: "applied: a device deletes a patrol log", policy: logs, stored: logRec,
			ok: func() *merge.Change {
				c := logEdit()
				c.Fields, c.Deleted = nil, true
				return c
			},
			want: merge.Applied},

		// vv_regressed
		{name: "rejected vv_regressed: a known counter with a different edit", policy: logs, stored: logEdited, prior: logHistory,
			ok: func() *merge.Change { // dev-A's next edit, a whole body so that no content rule applies
				return vchange("x", "patrol_logs", "log-1", vvec("dev-A", 2, "dev-B", 1), "dev-A", 9000, "route", `"RN3"`, "status", `"active"`, "unit", `"KEN-3"`)
			},
			fault: func(c *merge.Change) { c.VV = vvec("dev-A", 1) },
			want:  merge.Rejected, code: merge.CodeVVRegressed},
		{name: "rejected vv_regressed: a reinstalled device's creation-shaped change without required fields", policy: logs, stored: logEdited, prior: logHistory,
			ok: func() *merge.Change { // missing_field does not apply to an edit
				return vchange("x", "patrol_logs", "log-1", vvec("dev-A", 2), "dev-A", 9000, "notes", `"new install"`)
			},
			fault: func(c *merge.Change) { c.VV = vvec("dev-A", 1) },
			want:  merge.Rejected, code: merge.CodeVVRegressed},
		{name: "rejected vv_regressed: a known counter and no history to compare with", policy: logs, stored: logEdited,
			ok: func() *merge.Change {
				return vchange("x", "patrol_logs", "log-1", vvec("dev-A", 2), "dev-A", 0, "route", `"RN1"`, "status", `"active"`, "unit", `"KEN-3"`)
			},
			fault: func(c *merge.Change) { c.VV = vvec("dev-A", 1) },
			want:  merge.Rejected, code: merge.CodeVVRegressed},

		// stale
		{name: "stale: the same edit re-sent under a new change id", policy: logs, stored: logEdited, prior: logHistory,
			ok: func() *merge.Change { // the creation's fields, at a new counter
				return vchange("c1-resent", "patrol_logs", "log-1", vvec("dev-A", 2), "dev-A", 0, "route", `"RN1"`, "status", `"active"`, "unit", `"KEN-3"`)
			},
			fault: func(c *merge.Change) { c.VV = vvec("dev-A", 1) },
			want:  merge.Stale},
	}

	earned := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := tt.ok()
			if tt.fault != nil {
				res := tt.policy.Apply(tt.stored, ch, tt.prior, tt.opt)
				if res.Outcome != merge.Applied && res.Outcome != merge.Merged {
					t.Fatalf("without the fault: %s %s (%s), want applied or merged", res.Outcome, res.Code, res.Message)
				}
				ch = tt.ok()
				tt.fault(ch)
			}
			res := tt.policy.Apply(tt.stored, ch, tt.prior, tt.opt)
			if res.Outcome != tt.want || res.Code != tt.code {
				t.Fatalf("got %s %q (%s), want %s %q", res.Outcome, res.Code, res.Message, tt.want, tt.code)
			}
			switch res.Outcome {
			case merge.Rejected:
				if res.Record != tt.stored {
					t.Errorf("a rejected change returned a record other than the stored one")
				}
				if res.Message == "" {
					t.Errorf("rejected without a message")
				}
				if len(res.Settled) != 0 {
					t.Errorf("a rejected change settled %v", res.Settled)
				}
				if tt.code == merge.CodeVVRegressed {
					if len(res.Conflicts) != 1 || res.Conflicts[0].Field != "*" || res.Conflicts[0].Rule != merge.RuleVVRegressed || res.Conflicts[0].KeptWrite() != nil {
						t.Errorf("vv_regressed conflicts = %+v, want one conflict on * kept nowhere", res.Conflicts)
					}
				} else if len(res.Conflicts) != 0 {
					t.Errorf("a %s rejection reported conflicts %+v", res.Code, res.Conflicts)
				}
			case merge.Stale:
				if res.Record != tt.stored || len(res.Conflicts) != 0 || len(res.Settled) != 0 {
					t.Errorf("stale changed something: record %p (stored %p), conflicts %v, settled %v", res.Record, tt.stored, res.Conflicts, res.Settled)
				}
			default:
				if res.Record == nil {
					t.Fatalf("%s without a record", res.Outcome)
				}
			}
			if tt.settled != "" && !slices.Equal(res.Settled, []string{tt.settled}) {
				t.Errorf("settled %v, want [%s]", res.Settled, tt.settled)
			}
		})
		if tt.code != "" {
			earned[tt.code] = true
		}
	}
	for code, name := range applyCodes(t) {
		if !earned[code] {
			t.Errorf("no case earns %s (%q)", name, code)
		}
	}
}

// inputGen grows one record by random valid changes, as a server would, and
// draws a last change to apply to it.
type inputGen struct {
	t       *rapid.T
	p       *merge.Policy
	id      string
	stored  *merge.Record
	states  []*merge.Record         // every state the record went through
	local   map[vv.NodeID]vv.Vector // what each device holds of the record
	history map[string]*merge.Change
	n       int
	// inputs is everything handed to Apply or Join, with its encoding then.
	inputs []encoded
}

type encoded struct {
	what string
	enc  func() []byte
	was  []byte
}

var genDevices = []vv.NodeID{"dev-A", "dev-B", "dev-C"}

func dotKey(n vv.NodeID, dot uint64) string { return string(n) + "@" + strconv.FormatUint(dot, 10) }

func (g *inputGen) remember(what string, enc func() []byte) {
	g.inputs = append(g.inputs, encoded{what: what, enc: enc, was: enc()})
}

func (g *inputGen) rememberChange(what string, ch *merge.Change) {
	if ch != nil {
		g.remember(what+" "+ch.ChangeID, func() []byte { return must(ch.MarshalJSON()) })
	}
}

func (g *inputGen) rememberRecord(what string, r *merge.Record) {
	if r != nil {
		g.remember(what, func() []byte { return r.AppendJSON(nil) })
	}
}

func (g *inputGen) stamp(node vv.NodeID) hlc.Timestamp {
	return hlc.Timestamp{
		Wall:    1764300000000 + int64(rapid.IntRange(0, 3_600_000).Draw(g.t, "wall")),
		Logical: uint32(rapid.IntRange(0, 2).Draw(g.t, "logical")),
		Node:    node,
	}
}

func (g *inputGen) changeID() string {
	g.n++
	return "ch-" + strconv.Itoa(g.n)
}

// deviceChange is d's next edit of its copy (a creation when d holds nothing
// of the record), or a delete.
func (g *inputGen) deviceChange(d vv.NodeID, deleted bool) *merge.Change {
	v := g.local[d].Increment(d)
	ch := &merge.Change{ChangeID: g.changeID(), Collection: g.p.Collection, ID: g.id, VV: v, HLC: g.stamp(d), Deleted: deleted}
	if !deleted {
		ch.Fields = genFields(g.t, g.p, len(v) == 1)
		merge.SortFields(ch.Fields)
	}
	return ch
}

// serverChange is a server change on the stored state: some fields, none, or
// a delete.
func (g *inputGen) serverChange() *merge.Change {
	var fields []merge.FieldValue
	deleted := false
	switch rapid.IntRange(0, 2).Draw(g.t, "server-kind") {
	case 0:
		fields = genFields(g.t, g.p, false)
	case 1: // no field: keeps the record (or revives it)
	case 2:
		deleted = true
	}
	ch, err := merge.ServerChange(g.stored, g.changeID(), g.stamp(vv.Server), fields)
	if err != nil {
		g.t.Fatal(err)
	}
	ch.Deleted = deleted
	return ch
}

func (g *inputGen) signOff() (*merge.Change, error) {
	return g.p.SignOff(g.stored, g.changeID(), g.stamp(vv.Server), "sup-1", []byte(`"2026-11-28T06:00:00Z"`))
}

// prior is what the server's history holds at the change's dot, when the
// stored state has seen it.
func (g *inputGen) prior(ch *merge.Change) *merge.Change {
	if !merge.Covered(g.stored, ch) {
		return nil
	}
	return g.history[dotKey(ch.Node(), ch.Dot())]
}

// deliver applies ch as the server would and keeps the result when accepted.
func (g *inputGen) deliver(ch *merge.Change) {
	prior := g.prior(ch)
	g.rememberChange("build change", ch)
	res := g.p.Apply(g.stored, ch, prior, merge.Options{})
	if res.Outcome != merge.Applied && res.Outcome != merge.Merged {
		return
	}
	g.stored = res.Record
	g.states = append(g.states, res.Record)
	g.rememberRecord("the state after "+ch.ChangeID, res.Record)
	g.history[dotKey(ch.Node(), ch.Dot())] = res.Change
	g.rememberChange("the history of", res.Change)
	if ch.Node() != vv.Server {
		g.local[ch.Node()] = vv.Merge(g.local[ch.Node()], ch.VV)
	}
}

// build grows the record: a creation, then a few random valid changes.
func (g *inputGen) build() {
	t := g.t
	g.deliver(g.deviceChange(rapid.SampledFrom(genDevices).Draw(t, "creator"), false))
	if g.stored == nil {
		t.Fatalf("the first creation was not accepted")
	}
	for range rapid.IntRange(0, 6).Draw(t, "steps") {
		d := rapid.SampledFrom(genDevices).Draw(t, "device")
		switch rapid.IntRange(0, 5).Draw(t, "build") {
		case 0, 1: // an edit (a creation for a device that holds nothing)
			if !g.p.Immutable || len(g.local[d]) == 0 {
				g.deliver(g.deviceChange(d, false))
			}
		case 2: // a pull
			g.local[d] = vv.Merge(g.local[d], g.stored.VV)
		case 3: // a device deletes a patrol log
			if g.p.DeviceDelete && len(g.local[d]) > 0 {
				g.deliver(g.deviceChange(d, true))
			}
		case 4: // a server change: a resolution, a keep, or a delete
			if !g.p.Immutable {
				g.deliver(g.serverChange())
			}
		case 5: // a sign-off
			if g.p.FreezeField != "" && !g.stored.Deleted() {
				so, err := g.signOff()
				if err != nil {
					t.Fatal(err)
				}
				g.deliver(so)
			}
		}
	}
}

// last draws the change to check: valid or not, new or known.
func (g *inputGen) last() *merge.Change {
	t := g.t
	d := rapid.SampledFrom(genDevices).Draw(t, "last-device")
	switch rapid.IntRange(0, 6).Draw(t, "last") {
	case 0: // d's next edit, maybe concurrent with the stored state
		return g.deviceChange(d, false)
	case 1: // a device delete (forbidden outside patrol logs)
		return g.deviceChange(d, true)
	case 2:
		return g.serverChange()
	case 3: // a sign-off (refused for a deleted log: a server change then)
		if g.p.FreezeField != "" {
			if so, err := g.signOff(); err == nil {
				return so
			}
		}
		return g.serverChange()
	case 4: // a reinstalled device re-using counter 1
		ch := g.deviceChange(d, false)
		ch.VV = vvec(string(d), 1)
		return ch
	case 5: // a known change again under a new id
		var known []string
		for k := range g.history {
			known = append(known, k)
		}
		slices.Sort(known)
		again := *g.history[rapid.SampledFrom(known).Draw(t, "resend")]
		again.ChangeID = g.changeID()
		again.Fields = slices.Clone(again.Fields)
		return &again
	default: // content the collection refuses
		ch := g.deviceChange(d, false)
		switch rapid.IntRange(0, 2).Draw(t, "fault") {
		case 0:
			ch.Fields = setField(ch.Fields, "colour", []byte(`"red"`))
		case 1:
			name := "status"
			if g.p.Immutable {
				name = "kind"
			}
			ch.Fields = setField(ch.Fields, name, []byte(`"bogus"`))
		case 2:
			ch.Fields = setField(ch.Fields, "signed_off", []byte(`true`))
		}
		merge.SortFields(ch.Fields)
		return ch
	}
}

// deepRecord copies a record through its canonical JSON.
func deepRecord(t *rapid.T, r *merge.Record) *merge.Record {
	var out merge.Record
	if err := out.UnmarshalJSON(r.AppendJSON(nil)); err != nil {
		t.Fatalf("copying %s: %v", r.AppendJSON(nil), err)
	}
	if !out.Equal(r) || !bytes.Equal(out.AppendJSON(nil), r.AppendJSON(nil)) {
		t.Fatalf("the copy of %s differs", r.AppendJSON(nil))
	}
	return &out
}

// deepChange copies a change through its push form.
func deepChange(t *rapid.T, ch *merge.Change) *merge.Change {
	if ch == nil {
		return nil
	}
	enc := must(ch.MarshalJSON())
	out, err := merge.DecodeChange(enc)
	if err != nil {
		t.Fatalf("copying %s: %v", enc, err)
	}
	if again := must(out.MarshalJSON()); !bytes.Equal(again, enc) {
		t.Fatalf("the copy of %s encodes as %s", enc, again)
	}
	return out
}

// resultBytes renders what a result says: outcome, code, record, change,
// conflicts and settled fields.
func resultBytes(r merge.Result) []byte {
	b := []byte(string(r.Outcome) + " " + r.Code + "\n")
	if r.Record != nil {
		b = r.Record.AppendJSON(b)
	}
	if r.Change != nil {
		b = append(append(b, '\n'), must(r.Change.MarshalJSON())...)
	}
	for _, c := range r.Conflicts {
		b = append(b, "\nconflict "+c.Field+" "+string(c.Rule)+" kept "+strconv.Itoa(c.Kept)...)
		for _, w := range c.Values {
			b = append(append(b, ' '), w.Value...)
			b = append(b, " "+w.HLC.String()+" "+strconv.FormatUint(w.Dot, 10)...)
		}
	}
	return append(b, "\nsettled "+strings.Join(r.Settled, " ")...)
}

// TestApplyDoesNotModifyItsInputs checks that Apply and Join leave the
// records and changes they are given as they were. The stored record is grown
// by random valid changes (concurrent edits, device and server deletes,
// sign-offs, server changes with no field); the change is random: valid or
// not, new, concurrent, re-sent or regressed, with the prior the server's
// history would give. The stored record, the change and the prior are
// deep-copied through their canonical JSON first; after Apply and Join the
// originals must encode as before and equal the copies, and Apply on the
// copies must give the same result. Every state and change of the build is
// checked too: later calls were given them, or records sharing their memory.
func TestApplyDoesNotModifyItsInputs(t *testing.T) {
	reg := merge.Standard()
	rapid.Check(t, func(t *rapid.T) {
		p := reg[rapid.SampledFrom([]string{"patrol_logs", "corridors", "patrol_entries"}).Draw(t, "collection")]
		g := &inputGen{t: t, p: p, id: "rec-1", local: map[vv.NodeID]vv.Vector{}, history: map[string]*merge.Change{}}
		g.build()
		stored := g.stored
		ch := g.last()
		prior := g.prior(ch)

		storedWas, chWas := stored.AppendJSON(nil), must(ch.MarshalJSON())
		storedCopy, chCopy, priorCopy := deepRecord(t, stored), deepChange(t, ch), deepChange(t, prior)
		g.rememberChange("the last change", ch)

		res := p.Apply(stored, ch, prior, merge.Options{})
		if got, want := resultBytes(res), resultBytes(p.Apply(storedCopy, chCopy, priorCopy, merge.Options{})); !bytes.Equal(got, want) {
			t.Fatalf("Apply on the originals and on their copies differ:\n%s\n%s", got, want)
		}

		// Join the stored record with itself, its copy, the result and an
		// earlier state (a device's copy that missed later changes), both
		// ways round.
		others := []*merge.Record{stored, storedCopy, g.states[rapid.IntRange(0, len(g.states)-1).Draw(t, "earlier")]}
		if res.Record != nil {
			g.rememberRecord("the result", res.Record)
			others = append(others, res.Record)
		}
		for _, o := range others {
			oWas := o.AppendJSON(nil)
			for _, pair := range [][2]*merge.Record{{stored, o}, {o, stored}} {
				if _, err := p.Join(pair[0], pair[1]); err != nil {
					t.Fatal(err)
				}
			}
			if now := o.AppendJSON(nil); !bytes.Equal(now, oWas) {
				t.Fatalf("Join modified its argument:\n%s\nnow\n%s", oWas, now)
			}
		}

		if now := stored.AppendJSON(nil); !bytes.Equal(now, storedWas) || !stored.Equal(storedCopy) {
			t.Fatalf("the stored record changed:\n%s\nnow\n%s", storedWas, now)
		}
		if now := must(ch.MarshalJSON()); !bytes.Equal(now, chWas) {
			t.Fatalf("the change changed:\n%s\nnow\n%s", chWas, now)
		}
		if prior != nil {
			if now, was := must(prior.MarshalJSON()), must(priorCopy.MarshalJSON()); !bytes.Equal(now, was) {
				t.Fatalf("the prior change changed:\n%s\nnow\n%s", was, now)
			}
		}
		for _, in := range g.inputs {
			if now := in.enc(); !bytes.Equal(now, in.was) {
				t.Fatalf("%s changed:\n%s\nnow\n%s", in.what, in.was, now)
			}
		}
	})
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestSignOffRefusesADeletedLog(t *testing.T) {
	p := merge.PatrolLogs()
	create := &merge.Change{ChangeID: "c1", Collection: "patrol_logs", ID: "log-1",
		VV: vv.MustFromMap(map[vv.NodeID]uint64{"dev-1": 1}), HLC: hlc.Timestamp{Wall: 1764300000000, Node: "dev-1"},
		Fields: []merge.FieldValue{{Name: "status", Value: []byte(`"planned"`)}, {Name: "unit", Value: []byte(`"KEN-3"`)}}}
	rec := p.Apply(nil, create, nil, merge.Options{}).Record
	del := &merge.Change{ChangeID: "c2", Collection: "patrol_logs", ID: "log-1",
		VV: vv.MustFromMap(map[vv.NodeID]uint64{"dev-1": 2}), HLC: hlc.Timestamp{Wall: 1764300000001, Node: "dev-1"}, Deleted: true}
	res := p.Apply(rec, del, nil, merge.Options{})
	if res.Outcome != merge.Applied || !res.Record.Deleted() {
		t.Fatalf("device delete of a log: %s %s", res.Outcome, res.Message)
	}
	if _, err := p.SignOff(res.Record, "s1", hlc.Timestamp{Wall: 1764300000002, Node: vv.Server}, "sup-1", []byte(`"2026-11-28T06:00:00Z"`)); err == nil {
		t.Fatal("a deleted log was signed off (which would revive it)")
	}
	if _, err := p.SignOff(rec, "s1", hlc.Timestamp{Wall: 1764300000002, Node: vv.Server}, "sup-1", []byte(`"2026-11-28T06:00:00Z"`)); err != nil {
		t.Fatalf("a live log: %v", err)
	}
}
