package merge

import (
	"bytes"
	"time"

	"github.com/fieldsync/fieldsync/sync/hlc"
)

// Rule names how concurrent writes to a field are decided. The name is what
// conflict reports carry in "rule".
type Rule string

// The rules of protocol v1. Each picks one write from a set of concurrent
// writes by a total order that depends only on the writes, never on the order
// they arrived in; ties fall through to the later HLC, then the higher dot, so
// every replica picks the same write.
const (
	// RuleLaterHLC keeps the write with the later HLC.
	RuleLaterHLC Rule = "later_hlc"
	// RuleStatusOrder keeps the value highest in the field's Enum order
	// (patrol_logs.status: planned < active < cancelled < completed).
	RuleStatusOrder Rule = "status_order"
	// RuleMostRestrictive keeps the value highest in the field's Enum order
	// (corridors.status: open < restricted < closed) and always asks for review.
	RuleMostRestrictive Rule = "most_restrictive"
	// RuleLatestTime keeps the latest time value (corridors.verified_at).
	RuleLatestTime Rule = "latest_time"
	// RuleFirstWrite keeps the write with the lowest HLC (immutable entries).
	RuleFirstWrite Rule = "first_write"
	// RuleUpdateWins decides the deletion pseudo-field: a concurrent edit
	// (false) beats a delete (true), reviving the record.
	RuleUpdateWins Rule = "update_wins"
	// RuleSignOffFreeze is reported for device writes to a signed-off record:
	// they do not change it and wait as pending amendments.
	RuleSignOffFreeze Rule = "sign_off_freeze"
	// RuleVVRegressed is reported for a change whose writer's counter went
	// backwards: it is rejected and kept for review.
	RuleVVRegressed Rule = "vv_regressed"
)

// reviewRequired says which rules leave a decision a supervisor must look at;
// the others are recorded for review but settle themselves.
func (r Rule) reviewRequired() bool {
	switch r {
	case RuleMostRestrictive, RuleFirstWrite, RuleUpdateWins, RuleSignOffFreeze, RuleVVRegressed:
		return true
	}
	return false
}

// beats reports whether write a is kept over write b under the field's rule.
// It is a strict total order over distinct writes: exactly one of beats(a, b)
// and beats(b, a) holds when a and b differ in (node, dot).
func (f *FieldSpec) beats(a, b *Write) bool {
	switch f.Rule {
	case RuleStatusOrder, RuleMostRestrictive:
		if ra, rb := f.rank(a.Value), f.rank(b.Value); ra != rb {
			return ra > rb
		}
	case RuleLatestTime:
		if c := compareTimes(a.Value, b.Value); c != 0 {
			return c > 0
		}
	case RuleFirstWrite:
		if c := hlc.Compare(a.HLC, b.HLC); c != 0 {
			return c < 0
		}
		return a.Dot < b.Dot
	case RuleUpdateWins:
		if ad, bd := isTrue(a.Value), isTrue(b.Value); ad != bd {
			return !ad
		}
	}
	if c := hlc.Compare(a.HLC, b.HLC); c != 0 {
		return c > 0
	}
	if a.Dot != b.Dot {
		return a.Dot > b.Dot
	}
	// Same node and dot means the same write; order by value only so the
	// relation stays total on malformed input.
	return bytes.Compare(a.Value, b.Value) > 0
}

func isTrue(v []byte) bool { return string(v) == "true" }

// compareTimes orders two RFC 3339 JSON strings by instant; null and
// unparsable values order first.
func compareTimes(a, b []byte) int {
	ta, oka := parseJSONTime(a)
	tb, okb := parseJSONTime(b)
	switch {
	case !oka && !okb:
		return 0
	case !oka:
		return -1
	case !okb:
		return 1
	}
	return ta.Compare(tb)
}

func parseJSONTime(v []byte) (time.Time, bool) {
	if len(v) < 2 || v[0] != '"' {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(v[1:len(v)-1]))
	return t, err == nil
}
