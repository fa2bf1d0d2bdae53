package merge

import (
	"slices"
	"strings"
)

// Type is the JSON type a field's values must have.
type Type string

// Field types. Every type accepts null unless the field is Required.
const (
	String Type = "string" // a UTF-8 string of at most MaxLen bytes
	Enum   Type = "enum"   // one of FieldSpec.Enum
	Time   Type = "time"   // an RFC 3339 date-time string
	UUID   Type = "uuid"   // a canonical lower-case UUID string
	Number Type = "number" // a finite JSON number
	Int    Type = "integer"
	Bool   Type = "boolean"
	Geo    Type = "geo" // {"lat": -90..90, "lon": -180..180}
)

// FieldSpec is one field of a collection: its type and the rule that decides
// concurrent writes to it.
type FieldSpec struct {
	Name     string
	Type     Type
	Enum     []string // allowed values, ascending in rank for ranked rules
	MaxLen   int      // for String, in bytes
	Rule     Rule
	Required bool // must be present and non-null when the record is created
	// ServerOnly fields are written only by the server node (sign-off
	// markers); a device change that writes one is rejected.
	ServerOnly bool
	// Internal fields are removed from what partners read.
	Internal bool
	// Identifying fields name a person (community contacts, informants): only
	// the authoring unit and its supervisors may read them, and they never
	// appear in logs.
	Identifying bool
}

// Policy is everything the engine knows about one collection. Adding a
// collection means adding a Policy, not editing the engine.
type Policy struct {
	Collection string
	Fields     []FieldSpec // sorted by name
	// Immutable records accept one body: no edits after creation, no deletes;
	// among concurrent creations with different bodies the lowest HLC stays.
	Immutable bool
	// DeviceDelete allows devices to delete records of this collection.
	DeviceDelete bool
	// FreezeField names a ServerOnly boolean field; once it is true (a
	// sign-off) every device write to the record is a pending amendment.
	FreezeField string
	// KindField names the field that says what kind of record this is
	// (patrol_entries.kind), for readers that treat kinds differently.
	KindField string

	index   map[string]int // field name -> position in Fields, built by sorted
	deleted FieldSpec      // the spec of DeletedField for this policy
}

// Field returns the spec of the named field.
func (p *Policy) Field(name string) (*FieldSpec, bool) {
	if p.index != nil {
		i, ok := p.index[name]
		if !ok {
			return nil, false
		}
		return &p.Fields[i], true
	}
	i, ok := slices.BinarySearchFunc(p.Fields, name, func(f FieldSpec, n string) int { return strings.Compare(f.Name, n) })
	if !ok {
		return nil, false
	}
	return &p.Fields[i], true
}

// rank returns the position of value v (a JSON string) in the spec's Enum, -1
// when absent.
func (f *FieldSpec) rank(v []byte) int {
	if len(v) < 2 || v[0] != '"' {
		return -1
	}
	s := v[1 : len(v)-1]
	for i, e := range f.Enum {
		if string(s) == e {
			return i
		}
	}
	return -1
}

// DeletedField is the pseudo-field that carries a record's deletion. Every
// change writes it (false for an edit, true for a delete) with the change's
// clock, so a delete and a concurrent edit meet in one register whose rule,
// RuleUpdateWins, revives the record. Names starting with '_' are reserved.
const DeletedField = "_deleted"

// deletedSpec is the spec of the deletion pseudo-field. Entries are never
// deleted, so theirs follows the body (first write) instead.
func deletedSpec(immutable bool) FieldSpec {
	if immutable {
		return FieldSpec{Name: DeletedField, Type: Bool, Rule: RuleFirstWrite, Required: true}
	}
	return FieldSpec{Name: DeletedField, Type: Bool, Rule: RuleUpdateWins, Required: true}
}

// Registry maps collection names to policies.
type Registry map[string]*Policy

// Standard returns the policies of protocol v1: patrol_logs, patrol_entries
// and corridors. Each call returns fresh values.
func Standard() Registry {
	r := Registry{}
	for _, p := range []*Policy{PatrolLogs(), PatrolEntries(), Corridors()} {
		r.Add(p)
	}
	return r
}

// Add registers p, sorting its fields by name.
func (r Registry) Add(p *Policy) {
	r[p.Collection] = sorted(p)
}

// sorted sorts a policy's fields by name and indexes them, for Field.
func sorted(p *Policy) *Policy {
	slices.SortFunc(p.Fields, func(a, b FieldSpec) int { return strings.Compare(a.Name, b.Name) })
	p.index = make(map[string]int, len(p.Fields))
	for i, f := range p.Fields {
		p.index[f.Name] = i
	}
	p.deleted = deletedSpec(p.Immutable)
	return p
}

// PatrolLogs is the policy of a patrol's header: later HLC wins field by
// field; status takes the highest of planned < active < cancelled < completed,
// so a patrol one officer reported completed is not set back to active by
// another's stale view; a sign-off freezes the log.
func PatrolLogs() *Policy {
	str := func(name string, n int) FieldSpec {
		return FieldSpec{Name: name, Type: String, MaxLen: n, Rule: RuleLaterHLC}
	}
	tm := func(name string) FieldSpec { return FieldSpec{Name: name, Type: Time, Rule: RuleLaterHLC} }
	return sorted(&Policy{
		Collection:   "patrol_logs",
		FreezeField:  "signed_off",
		DeviceDelete: true, // a patrol planned by mistake; a concurrent edit revives it
		Fields: []FieldSpec{
			{Name: "unit", Type: String, MaxLen: 64, Rule: RuleLaterHLC, Required: true},
			str("contingent", 64),
			{Name: "status", Type: Enum, Enum: []string{"planned", "active", "cancelled", "completed"}, Rule: RuleStatusOrder, Required: true},
			str("route", 256),
			str("area", 256),
			str("callsign", 64),
			str("leader", 128),
			str("vehicle", 64),
			str("radio_channel", 32),
			{Name: "members_count", Type: Int, Rule: RuleLaterHLC},
			tm("planned_start"),
			tm("planned_end"),
			tm("started_at"),
			tm("ended_at"),
			{Name: "start_location", Type: Geo, Rule: RuleLaterHLC},
			{Name: "end_location", Type: Geo, Rule: RuleLaterHLC},
			str("weather", 128),
			str("summary", 4096),
			str("handover_notes", 4096),
			str("notes", 16384),
			{Name: "signed_off", Type: Bool, Rule: RuleLaterHLC, ServerOnly: true},
			{Name: "signed_off_by", Type: String, MaxLen: 128, Rule: RuleLaterHLC, ServerOnly: true},
			{Name: "signed_off_at", Type: Time, Rule: RuleLaterHLC, ServerOnly: true},
		},
	})
}

// PatrolEntries is the policy of a patrol's append-only entries.
func PatrolEntries() *Policy {
	ident := func(name string) FieldSpec {
		return FieldSpec{Name: name, Type: String, MaxLen: 512, Rule: RuleFirstWrite, Identifying: true}
	}
	return sorted(&Policy{
		Collection: "patrol_entries",
		Immutable:  true,
		KindField:  "kind",
		Fields: []FieldSpec{
			{Name: "patrol_id", Type: UUID, Rule: RuleFirstWrite, Required: true},
			{Name: "unit", Type: String, MaxLen: 64, Rule: RuleFirstWrite, Required: true},
			{Name: "kind", Type: Enum, Enum: []string{"observation", "incident", "checkpoint", "arrest", "community_contact"}, Rule: RuleFirstWrite, Required: true},
			{Name: "occurred_at", Type: Time, Rule: RuleFirstWrite, Required: true},
			{Name: "text", Type: String, MaxLen: 16384, Rule: RuleFirstWrite},
			{Name: "location", Type: Geo, Rule: RuleFirstWrite},
			{Name: "corrects", Type: UUID, Rule: RuleFirstWrite},
			{Name: "author", Type: String, MaxLen: 128, Rule: RuleFirstWrite},
			{Name: "severity", Type: Enum, Enum: []string{"info", "low", "medium", "high", "critical"}, Rule: RuleFirstWrite},
			{Name: "persons_count", Type: Int, Rule: RuleFirstWrite},
			ident("contact_name"),
			ident("contact_phone"),
			ident("contact_address"),
			ident("contact_description"),
		},
	})
}

// Corridors is the policy of one secure-corridor segment: among concurrent
// reports the most restrictive status (closed > restricted > open) wins and
// always asks for review; verified_at takes the latest time.
func Corridors() *Policy {
	return sorted(&Policy{
		Collection:   "corridors",
		DeviceDelete: false,
		Fields: []FieldSpec{
			{Name: "name", Type: String, MaxLen: 256, Rule: RuleLaterHLC},
			{Name: "status", Type: Enum, Enum: []string{"open", "restricted", "closed"}, Rule: RuleMostRestrictive, Required: true},
			{Name: "reason", Type: String, MaxLen: 1024, Rule: RuleLaterHLC},
			{Name: "verified_at", Type: Time, Rule: RuleLatestTime},
			{Name: "threat_level", Type: Enum, Enum: []string{"low", "moderate", "high", "severe"}, Rule: RuleLaterHLC},
			{Name: "max_age_minutes", Type: Int, Rule: RuleLaterHLC},
			{Name: "start_point", Type: Geo, Rule: RuleLaterHLC},
			{Name: "end_point", Type: Geo, Rule: RuleLaterHLC},
			{Name: "notes", Type: String, MaxLen: 16384, Rule: RuleLaterHLC, Internal: true},
			{Name: "reporter", Type: String, MaxLen: 128, Rule: RuleLaterHLC, Internal: true},
		},
	})
}
