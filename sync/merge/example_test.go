package merge_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/fieldsync/fieldsync/sync/hlc"
	"github.com/fieldsync/fieldsync/sync/merge"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// The examples below are the worked examples of docs/conflict-resolution.md:
// that page shows exactly what they print, so a change to an example's
// output is a change to the page. Changes are written as a client pushes
// them (JSON), decoded with merge.DecodeChange and applied with the standard
// policies, as the server does.

// logID is the patrol log the patrol_logs examples edit.
const logID = "0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11"

// push decodes one change of a push body. The examples' bodies are well
// formed; a malformed one is a bug in the example.
func push(body string) *merge.Change {
	ch, err := merge.DecodeChange([]byte(body))
	if err != nil {
		panic(err)
	}
	return ch
}

// apply applies ch to stored (nil: the record is new) without history, prints
// the outcome and returns the result.
func apply(p *merge.Policy, stored *merge.Record, ch *merge.Change) merge.Result {
	return applyWithPrior(p, stored, ch, nil)
}

// applyWithPrior is apply with the writer's earlier change at the same
// counter, as the server finds it in its history.
func applyWithPrior(p *merge.Policy, stored *merge.Record, ch *merge.Change, prior *merge.Change) merge.Result {
	res := p.Apply(stored, ch, prior, merge.Options{})
	line := ch.ChangeID + " " + string(res.Outcome)
	if res.Code != "" {
		line += " " + res.Code
	}
	if len(res.Settled) > 0 {
		line += ", settled " + strings.Join(res.Settled, " ")
	}
	fmt.Println(line)
	return res
}

// printRecord prints a record's wire form, one member per line, with the
// fields, clocks and siblings objects opened one level.
func printRecord(r *merge.Record) {
	fmt.Println("record:")
	printJSON(r.AppendJSON(nil))
}

// printChange prints a change in its push form, as a server-authored change
// is stored and pulled.
func printChange(ch *merge.Change) {
	fmt.Println("change:")
	b, err := ch.MarshalJSON()
	if err != nil {
		panic(err)
	}
	printJSON(b)
}

// printConflicts prints each conflict as the review API lists it, less what
// the server adds when it stores one (id, status, created_at).
func printConflicts(cs []merge.Conflict) {
	for _, c := range cs {
		fmt.Println("conflict:")
		printJSON(conflictJSON(c))
	}
}

func conflictJSON(c merge.Conflict) []byte {
	str := func(s string) []byte { b, _ := json.Marshal(s); return b }
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"collection":%s,"record_id":%s,"field":%s,"values":[`, str(c.Collection), str(c.RecordID), str(c.Field))
	for i, w := range c.Values {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"value":%s,"node":%s,"hlc":"%s","dot":%d}`, w.Value, str(string(w.Node())), w.HLC, w.Dot)
	}
	b.WriteString(`],"kept":`)
	if k := c.KeptWrite(); k != nil {
		fmt.Fprintf(&b, `{"node":%s,"dot":%d}`, str(string(k.Node())), k.Dot)
	} else {
		b.WriteString("null")
	}
	fmt.Fprintf(&b, `,"rule":%s,"review_required":%t}`, str(string(c.Rule)), c.ReviewRequired)
	return b.Bytes()
}

// printJSON prints a compact JSON object with one member per line, opening
// the members named fields, clocks, siblings and values one more level.
func printJSON(doc []byte) {
	keys, vals := members(doc)
	fmt.Println("{")
	for i, k := range keys {
		sep := ","
		if i == len(keys)-1 {
			sep = ""
		}
		switch v := vals[i]; {
		case k == "fields" || k == "clocks" || k == "siblings":
			fmt.Printf("  %q: {\n", k)
			ks, vs := members(v)
			for j := range ks {
				fmt.Printf("    %q: %s%s\n", ks[j], vs[j], comma(j, len(ks)))
			}
			fmt.Printf("  }%s\n", sep)
		case k == "values":
			var elems []json.RawMessage
			if err := json.Unmarshal(v, &elems); err != nil {
				panic(err)
			}
			fmt.Printf("  %q: [\n", k)
			for j, e := range elems {
				fmt.Printf("    %s%s\n", e, comma(j, len(elems)))
			}
			fmt.Printf("  ]%s\n", sep)
		default:
			fmt.Printf("  %q: %s%s\n", k, v, sep)
		}
	}
	fmt.Println("}")
}

func comma(i, n int) string {
	if i < n-1 {
		return ","
	}
	return ""
}

// members returns an object's keys and raw values in document order.
func members(obj []byte) ([]string, []json.RawMessage) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil {
		panic(err)
	}
	var keys []string
	var vals []json.RawMessage
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			panic(err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			panic(err)
		}
		keys = append(keys, t.(string))
		vals = append(vals, v)
	}
	return keys, vals
}

// Two officers of one patrol edit the route of their log while offline. Each
// had seen the log's creation, neither had seen the other's edit: the edits
// are concurrent, and route's rule, later_hlc, keeps the later stamp. The
// other value stays in siblings and in a conflict that needs no decision.
func ExamplePolicy_Apply_laterHLC() {
	logs := merge.Standard()["patrol_logs"]
	c1 := push(`{"change_id":"c1","collection":"patrol_logs","id":"` + logID + `",
		"vv":{"dev-7Q2":1},"hlc":"1764300000000-0-dev-7Q2",
		"fields":{"unit":"KEN-3","status":"active","route":"RN1 north"}}`)
	c2 := push(`{"change_id":"c2","collection":"patrol_logs","id":"` + logID + `",
		"vv":{"dev-7Q2":2},"hlc":"1764300200000-0-dev-7Q2",
		"fields":{"route":"RN1 north, then Kafou"}}`)
	c3 := push(`{"change_id":"c3","collection":"patrol_logs","id":"` + logID + `",
		"vv":{"dev-7Q2":1,"dev-K81":1},"hlc":"1764300300000-0-dev-K81",
		"fields":{"route":"RN2 south"}}`)

	r1 := apply(logs, nil, c1)
	r2 := apply(logs, r1.Record, c2)
	r3 := apply(logs, r2.Record, c3)
	printRecord(r3.Record)
	printConflicts(r3.Conflicts)

	// The other arrival order gives the same bytes.
	fmt.Println("in the other order:")
	o2 := apply(logs, r1.Record, c3)
	o3 := apply(logs, o2.Record, c2)
	fmt.Println("same record:", bytes.Equal(o3.Record.AppendJSON(nil), r3.Record.AppendJSON(nil)))

	// Output:
	// c1 applied
	// c2 applied
	// c3 merged
	// record:
	// {
	//   "collection": "patrol_logs",
	//   "id": "0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11",
	//   "vv": {"dev-7Q2":2,"dev-K81":1},
	//   "fields": {
	//     "route": "RN2 south",
	//     "status": "active",
	//     "unit": "KEN-3"
	//   },
	//   "clocks": {
	//     "_deleted": {"hlc":"1764300300000-0-dev-K81","dot":1},
	//     "route": {"hlc":"1764300300000-0-dev-K81","dot":1},
	//     "status": {"hlc":"1764300000000-0-dev-7Q2","dot":1},
	//     "unit": {"hlc":"1764300000000-0-dev-7Q2","dot":1}
	//   },
	//   "deleted": false,
	//   "siblings": {
	//     "_deleted": [{"value":false,"hlc":"1764300200000-0-dev-7Q2","dot":2}],
	//     "route": [{"value":"RN1 north, then Kafou","hlc":"1764300200000-0-dev-7Q2","dot":2}]
	//   }
	// }
	// conflict:
	// {
	//   "collection": "patrol_logs",
	//   "record_id": "0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11",
	//   "field": "route",
	//   "values": [
	//     {"value":"RN1 north, then Kafou","node":"dev-7Q2","hlc":"1764300200000-0-dev-7Q2","dot":2},
	//     {"value":"RN2 south","node":"dev-K81","hlc":"1764300300000-0-dev-K81","dot":1}
	//   ],
	//   "kept": {"node":"dev-K81","dot":1},
	//   "rule": "later_hlc",
	//   "review_required": false
	// }
	// in the other order:
	// c3 applied
	// c2 merged
	// same record: true
}

// The patrol leader marks the patrol completed; another officer, whose
// device had not synced since the log was planned, marks it active later by
// the clock. status_order keeps the higher status, completed, whatever the
// clocks say: a stale view does not set a finished patrol back.
func ExamplePolicy_Apply_statusOrder() {
	logs := merge.Standard()["patrol_logs"]
	c1 := push(`{"change_id":"c1","collection":"patrol_logs","id":"` + logID + `",
		"vv":{"dev-7Q2":1},"hlc":"1764300000000-0-dev-7Q2",
		"fields":{"unit":"KEN-3","status":"planned"}}`)
	c2 := push(`{"change_id":"c2","collection":"patrol_logs","id":"` + logID + `",
		"vv":{"dev-7Q2":2},"hlc":"1764310000000-0-dev-7Q2",
		"fields":{"status":"completed","ended_at":"2025-11-28T06:06:00Z"}}`)
	c3 := push(`{"change_id":"c3","collection":"patrol_logs","id":"` + logID + `",
		"vv":{"dev-7Q2":1,"dev-K81":1},"hlc":"1764320000000-0-dev-K81",
		"fields":{"status":"active","started_at":"2025-11-28T03:30:00Z"}}`)

	r1 := apply(logs, nil, c1)
	r2 := apply(logs, r1.Record, c2)
	r3 := apply(logs, r2.Record, c3)
	printRecord(r3.Record)
	printConflicts(r3.Conflicts)

	// Output:
	// c1 applied
	// c2 applied
	// c3 merged
	// record:
	// {
	//   "collection": "patrol_logs",
	//   "id": "0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11",
	//   "vv": {"dev-7Q2":2,"dev-K81":1},
	//   "fields": {
	//     "ended_at": "2025-11-28T06:06:00Z",
	//     "started_at": "2025-11-28T03:30:00Z",
	//     "status": "completed",
	//     "unit": "KEN-3"
	//   },
	//   "clocks": {
	//     "_deleted": {"hlc":"1764320000000-0-dev-K81","dot":1},
	//     "ended_at": {"hlc":"1764310000000-0-dev-7Q2","dot":2},
	//     "started_at": {"hlc":"1764320000000-0-dev-K81","dot":1},
	//     "status": {"hlc":"1764310000000-0-dev-7Q2","dot":2},
	//     "unit": {"hlc":"1764300000000-0-dev-7Q2","dot":1}
	//   },
	//   "deleted": false,
	//   "siblings": {
	//     "_deleted": [{"value":false,"hlc":"1764310000000-0-dev-7Q2","dot":2}],
	//     "status": [{"value":"active","hlc":"1764320000000-0-dev-K81","dot":1}]
	//   }
	// }
	// conflict:
	// {
	//   "collection": "patrol_logs",
	//   "record_id": "0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11",
	//   "field": "status",
	//   "values": [
	//     {"value":"completed","node":"dev-7Q2","hlc":"1764310000000-0-dev-7Q2","dot":2},
	//     {"value":"active","node":"dev-K81","hlc":"1764320000000-0-dev-K81","dot":1}
	//   ],
	//   "kept": {"node":"dev-7Q2","dot":2},
	//   "rule": "status_order",
	//   "review_required": false
	// }
}

// Two corridor teams report the same segment without having seen each
// other's report: one closed, one open (and the open one later by the clock).
// most_restrictive keeps closed and asks a supervisor to review. The segment
// reads closed until someone who has seen both reports says otherwise.
func ExamplePolicy_Apply_mostRestrictive() {
	corridors := merge.Standard()["corridors"]
	c1 := push(`{"change_id":"c1","collection":"corridors","id":"rn1-north",
		"vv":{"dev-C14":1},"hlc":"1764300000000-0-dev-C14",
		"fields":{"name":"RN1 north, Carrefour to Kafou","status":"open"}}`)
	c2 := push(`{"change_id":"c2","collection":"corridors","id":"rn1-north",
		"vv":{"dev-C14":1,"dev-C22":1},"hlc":"1764303600000-0-dev-C22",
		"fields":{"status":"closed","reason":"barricade at Kafou"}}`)
	c3 := push(`{"change_id":"c3","collection":"corridors","id":"rn1-north",
		"vv":{"dev-C14":2},"hlc":"1764304200000-0-dev-C14",
		"fields":{"status":"open"}}`)

	r1 := apply(corridors, nil, c1)
	r2 := apply(corridors, r1.Record, c2)
	r3 := apply(corridors, r2.Record, c3)
	printRecord(r3.Record)
	printConflicts(r3.Conflicts)

	// Team C14 pulls, sees the closure, goes back and finds the barricade
	// cleared: its new report has seen both values and settles the field.
	c4 := push(`{"change_id":"c4","collection":"corridors","id":"rn1-north",
		"vv":{"dev-C14":3,"dev-C22":1},"hlc":"1764307800000-0-dev-C14",
		"fields":{"status":"open","reason":"barricade cleared"}}`)
	r4 := apply(corridors, r3.Record, c4)
	fmt.Printf("status %s, open conflicts %d\n", r4.Record.Value("status"), len(corridors.Conflicts(r4.Record)))

	// Output:
	// c1 applied
	// c2 applied
	// c3 merged
	// record:
	// {
	//   "collection": "corridors",
	//   "id": "rn1-north",
	//   "vv": {"dev-C14":2,"dev-C22":1},
	//   "fields": {
	//     "name": "RN1 north, Carrefour to Kafou",
	//     "reason": "barricade at Kafou",
	//     "status": "closed"
	//   },
	//   "clocks": {
	//     "_deleted": {"hlc":"1764304200000-0-dev-C14","dot":2},
	//     "name": {"hlc":"1764300000000-0-dev-C14","dot":1},
	//     "reason": {"hlc":"1764303600000-0-dev-C22","dot":1},
	//     "status": {"hlc":"1764303600000-0-dev-C22","dot":1}
	//   },
	//   "deleted": false,
	//   "siblings": {
	//     "_deleted": [{"value":false,"hlc":"1764303600000-0-dev-C22","dot":1}],
	//     "status": [{"value":"open","hlc":"1764304200000-0-dev-C14","dot":2}]
	//   }
	// }
	// conflict:
	// {
	//   "collection": "corridors",
	//   "record_id": "rn1-north",
	//   "field": "status",
	//   "values": [
	//     {"value":"open","node":"dev-C14","hlc":"1764304200000-0-dev-C14","dot":2},
	//     {"value":"closed","node":"dev-C22","hlc":"1764303600000-0-dev-C22","dot":1}
	//   ],
	//   "kept": {"node":"dev-C22","dot":1},
	//   "rule": "most_restrictive",
	//   "review_required": true
	// }
	// c4 applied, settled status
	// status "open", open conflicts 0
}

// Two teams verify the same segment. Team C22 enters its check (made at
// 04:30) after returning to its vehicle at 05:30; team C14 enters its check
// of 04:45 at once, at 04:50. latest_time keeps the latest verification,
// 04:45, not the value with the later stamp. Both wrote status "open": equal
// values are siblings but not a conflict.
func ExamplePolicy_Apply_latestTime() {
	corridors := merge.Standard()["corridors"]
	c1 := push(`{"change_id":"c1","collection":"corridors","id":"rn2-south",
		"vv":{"dev-C14":1},"hlc":"1764300000000-0-dev-C14",
		"fields":{"status":"open","verified_at":"2025-11-28T03:20:00Z"}}`)
	c2 := push(`{"change_id":"c2","collection":"corridors","id":"rn2-south",
		"vv":{"dev-C14":2},"hlc":"1764305400000-0-dev-C14",
		"fields":{"status":"open","verified_at":"2025-11-28T04:45:00Z"}}`)
	c3 := push(`{"change_id":"c3","collection":"corridors","id":"rn2-south",
		"vv":{"dev-C14":1,"dev-C22":1},"hlc":"1764307800000-0-dev-C22",
		"fields":{"status":"open","verified_at":"2025-11-28T04:30:00Z"}}`)

	r1 := apply(corridors, nil, c1)
	r2 := apply(corridors, r1.Record, c2)
	r3 := apply(corridors, r2.Record, c3)
	printRecord(r3.Record)
	printConflicts(r3.Conflicts)

	// Output:
	// c1 applied
	// c2 applied
	// c3 merged
	// record:
	// {
	//   "collection": "corridors",
	//   "id": "rn2-south",
	//   "vv": {"dev-C14":2,"dev-C22":1},
	//   "fields": {
	//     "status": "open",
	//     "verified_at": "2025-11-28T04:45:00Z"
	//   },
	//   "clocks": {
	//     "_deleted": {"hlc":"1764307800000-0-dev-C22","dot":1},
	//     "status": {"hlc":"1764307800000-0-dev-C22","dot":1},
	//     "verified_at": {"hlc":"1764305400000-0-dev-C14","dot":2}
	//   },
	//   "deleted": false,
	//   "siblings": {
	//     "_deleted": [{"value":false,"hlc":"1764305400000-0-dev-C14","dot":2}],
	//     "status": [{"value":"open","hlc":"1764305400000-0-dev-C14","dot":2}],
	//     "verified_at": [{"value":"2025-11-28T04:30:00Z","hlc":"1764307800000-0-dev-C22","dot":1}]
	//   }
	// }
	// conflict:
	// {
	//   "collection": "corridors",
	//   "record_id": "rn2-south",
	//   "field": "verified_at",
	//   "values": [
	//     {"value":"2025-11-28T04:45:00Z","node":"dev-C14","hlc":"1764305400000-0-dev-C14","dot":2},
	//     {"value":"2025-11-28T04:30:00Z","node":"dev-C22","hlc":"1764307800000-0-dev-C22","dot":1}
	//   ],
	//   "kept": {"node":"dev-C14","dot":2},
	//   "rule": "latest_time",
	//   "review_required": false
	// }
}

// Two devices create an entry with the same id and different bodies. Entries
// are evidence and never edited, so the bodies compete whole: every field is
// written (an absent one as null), and first_write keeps the body with the
// lowest stamp in every field. Each field where the bodies differ is a
// conflict a supervisor must review.
func ExamplePolicy_Apply_firstWrite() {
	entries := merge.Standard()["patrol_entries"]
	const entry = "5f3e2a10-8c4b-4d2e-9a7f-1b2c3d4e5f60"
	c1 := push(`{"change_id":"c1","collection":"patrol_entries","id":"` + entry + `",
		"vv":{"dev-7Q2":1},"hlc":"1764301000000-0-dev-7Q2",
		"fields":{"patrol_id":"` + logID + `","unit":"KEN-3","kind":"checkpoint",
		"occurred_at":"2025-11-28T03:35:00Z","text":"Checkpoint Kafou, 2 vehicles searched"}}`)
	c2 := push(`{"change_id":"c2","collection":"patrol_entries","id":"` + entry + `",
		"vv":{"dev-K81":1},"hlc":"1764301060000-0-dev-K81",
		"fields":{"patrol_id":"` + logID + `","unit":"KEN-3","kind":"observation",
		"occurred_at":"2025-11-28T03:35:00Z","text":"Crowd gathering at Kafou market","severity":"low"}}`)

	r1 := apply(entries, nil, c1)
	r2 := apply(entries, r1.Record, c2)
	printRecord(r2.Record)
	printConflicts(r2.Conflicts)

	// An edit of an entry is rejected; so is a delete.
	edit := push(`{"change_id":"c3","collection":"patrol_entries","id":"` + entry + `",
		"vv":{"dev-7Q2":2,"dev-K81":1},"hlc":"1764301200000-0-dev-7Q2",
		"fields":{"text":"Checkpoint Kafou, 3 vehicles searched"}}`)
	apply(entries, r2.Record, edit)
	del := push(`{"change_id":"c4","collection":"patrol_entries","id":"` + entry + `",
		"vv":{"dev-7Q2":2,"dev-K81":1},"hlc":"1764301200000-0-dev-7Q2","deleted":true}`)
	apply(entries, r2.Record, del)

	// Output:
	// c1 applied
	// c2 merged
	// record:
	// {
	//   "collection": "patrol_entries",
	//   "id": "5f3e2a10-8c4b-4d2e-9a7f-1b2c3d4e5f60",
	//   "vv": {"dev-7Q2":1,"dev-K81":1},
	//   "fields": {
	//     "author": null,
	//     "contact_address": null,
	//     "contact_description": null,
	//     "contact_name": null,
	//     "contact_phone": null,
	//     "corrects": null,
	//     "kind": "checkpoint",
	//     "location": null,
	//     "occurred_at": "2025-11-28T03:35:00Z",
	//     "patrol_id": "0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11",
	//     "persons_count": null,
	//     "severity": null,
	//     "text": "Checkpoint Kafou, 2 vehicles searched",
	//     "unit": "KEN-3"
	//   },
	//   "clocks": {
	//     "_deleted": {"hlc":"1764301000000-0-dev-7Q2","dot":1},
	//     "author": {"hlc":"1764301000000-0-dev-7Q2","dot":1},
	//     "contact_address": {"hlc":"1764301000000-0-dev-7Q2","dot":1},
	//     "contact_description": {"hlc":"1764301000000-0-dev-7Q2","dot":1},
	//     "contact_name": {"hlc":"1764301000000-0-dev-7Q2","dot":1},
	//     "contact_phone": {"hlc":"1764301000000-0-dev-7Q2","dot":1},
	//     "corrects": {"hlc":"1764301000000-0-dev-7Q2","dot":1},
	//     "kind": {"hlc":"1764301000000-0-dev-7Q2","dot":1},
	//     "location": {"hlc":"1764301000000-0-dev-7Q2","dot":1},
	//     "occurred_at": {"hlc":"1764301000000-0-dev-7Q2","dot":1},
	//     "patrol_id": {"hlc":"1764301000000-0-dev-7Q2","dot":1},
	//     "persons_count": {"hlc":"1764301000000-0-dev-7Q2","dot":1},
	//     "severity": {"hlc":"1764301000000-0-dev-7Q2","dot":1},
	//     "text": {"hlc":"1764301000000-0-dev-7Q2","dot":1},
	//     "unit": {"hlc":"1764301000000-0-dev-7Q2","dot":1}
	//   },
	//   "deleted": false,
	//   "siblings": {
	//     "_deleted": [{"value":false,"hlc":"1764301060000-0-dev-K81","dot":1}],
	//     "author": [{"value":null,"hlc":"1764301060000-0-dev-K81","dot":1}],
	//     "contact_address": [{"value":null,"hlc":"1764301060000-0-dev-K81","dot":1}],
	//     "contact_description": [{"value":null,"hlc":"1764301060000-0-dev-K81","dot":1}],
	//     "contact_name": [{"value":null,"hlc":"1764301060000-0-dev-K81","dot":1}],
	//     "contact_phone": [{"value":null,"hlc":"1764301060000-0-dev-K81","dot":1}],
	//     "corrects": [{"value":null,"hlc":"1764301060000-0-dev-K81","dot":1}],
	//     "kind": [{"value":"observation","hlc":"1764301060000-0-dev-K81","dot":1}],
	//     "location": [{"value":null,"hlc":"1764301060000-0-dev-K81","dot":1}],
	//     "occurred_at": [{"value":"2025-11-28T03:35:00Z","hlc":"1764301060000-0-dev-K81","dot":1}],
	//     "patrol_id": [{"value":"0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11","hlc":"1764301060000-0-dev-K81","dot":1}],
	//     "persons_count": [{"value":null,"hlc":"1764301060000-0-dev-K81","dot":1}],
	//     "severity": [{"value":"low","hlc":"1764301060000-0-dev-K81","dot":1}],
	//     "text": [{"value":"Crowd gathering at Kafou market","hlc":"1764301060000-0-dev-K81","dot":1}],
	//     "unit": [{"value":"KEN-3","hlc":"1764301060000-0-dev-K81","dot":1}]
	//   }
	// }
	// conflict:
	// {
	//   "collection": "patrol_entries",
	//   "record_id": "5f3e2a10-8c4b-4d2e-9a7f-1b2c3d4e5f60",
	//   "field": "kind",
	//   "values": [
	//     {"value":"checkpoint","node":"dev-7Q2","hlc":"1764301000000-0-dev-7Q2","dot":1},
	//     {"value":"observation","node":"dev-K81","hlc":"1764301060000-0-dev-K81","dot":1}
	//   ],
	//   "kept": {"node":"dev-7Q2","dot":1},
	//   "rule": "first_write",
	//   "review_required": true
	// }
	// conflict:
	// {
	//   "collection": "patrol_entries",
	//   "record_id": "5f3e2a10-8c4b-4d2e-9a7f-1b2c3d4e5f60",
	//   "field": "severity",
	//   "values": [
	//     {"value":null,"node":"dev-7Q2","hlc":"1764301000000-0-dev-7Q2","dot":1},
	//     {"value":"low","node":"dev-K81","hlc":"1764301060000-0-dev-K81","dot":1}
	//   ],
	//   "kept": {"node":"dev-7Q2","dot":1},
	//   "rule": "first_write",
	//   "review_required": true
	// }
	// conflict:
	// {
	//   "collection": "patrol_entries",
	//   "record_id": "5f3e2a10-8c4b-4d2e-9a7f-1b2c3d4e5f60",
	//   "field": "text",
	//   "values": [
	//     {"value":"Checkpoint Kafou, 2 vehicles searched","node":"dev-7Q2","hlc":"1764301000000-0-dev-7Q2","dot":1},
	//     {"value":"Crowd gathering at Kafou market","node":"dev-K81","hlc":"1764301060000-0-dev-K81","dot":1}
	//   ],
	//   "kept": {"node":"dev-7Q2","dot":1},
	//   "rule": "first_write",
	//   "review_required": true
	// }
	// c3 rejected immutable
	// c4 rejected delete_forbidden
}

// A supervisor deletes a patrol log created twice by mistake while an
// officer, offline, adds notes to it. The edit had not seen the delete and
// the delete had not seen the edit: update_wins revives the record, and the
// supervisor is asked to review.
func ExamplePolicy_Apply_updateWins() {
	logs := merge.Standard()["patrol_logs"]
	c1 := push(`{"change_id":"c1","collection":"patrol_logs","id":"` + logID + `",
		"vv":{"dev-7Q2":1},"hlc":"1764300000000-0-dev-7Q2",
		"fields":{"unit":"KEN-3","status":"active"}}`)
	r1 := apply(logs, nil, c1)

	// The server authors the delete: its vector has seen all it holds.
	del, err := merge.ServerChange(r1.Record, "s1", mustStamp("1764303000000-0-srv"), nil)
	if err != nil {
		panic(err)
	}
	del.Deleted = true
	printChange(del)
	r2 := apply(logs, r1.Record, del)
	fmt.Println("deleted:", r2.Record.Deleted())

	c2 := push(`{"change_id":"c2","collection":"patrol_logs","id":"` + logID + `",
		"vv":{"dev-7Q2":1,"dev-K81":1},"hlc":"1764302000000-0-dev-K81",
		"fields":{"notes":"Two men detained at Kafou, see entries"}}`)
	r3 := apply(logs, r2.Record, c2)
	printRecord(r3.Record)
	printConflicts(r3.Conflicts)

	// Output:
	// c1 applied
	// change:
	// {
	//   "change_id": "s1",
	//   "collection": "patrol_logs",
	//   "id": "0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11",
	//   "vv": {"dev-7Q2":1,"srv":1},
	//   "hlc": "1764303000000-0-srv",
	//   "fields": {
	//   },
	//   "deleted": true
	// }
	// s1 applied
	// deleted: true
	// c2 merged
	// record:
	// {
	//   "collection": "patrol_logs",
	//   "id": "0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11",
	//   "vv": {"dev-7Q2":1,"dev-K81":1,"srv":1},
	//   "fields": {
	//     "notes": "Two men detained at Kafou, see entries",
	//     "status": "active",
	//     "unit": "KEN-3"
	//   },
	//   "clocks": {
	//     "_deleted": {"hlc":"1764302000000-0-dev-K81","dot":1},
	//     "notes": {"hlc":"1764302000000-0-dev-K81","dot":1},
	//     "status": {"hlc":"1764300000000-0-dev-7Q2","dot":1},
	//     "unit": {"hlc":"1764300000000-0-dev-7Q2","dot":1}
	//   },
	//   "deleted": false,
	//   "siblings": {
	//     "_deleted": [{"value":true,"hlc":"1764303000000-0-srv","dot":1}]
	//   }
	// }
	// conflict:
	// {
	//   "collection": "patrol_logs",
	//   "record_id": "0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11",
	//   "field": "_deleted",
	//   "values": [
	//     {"value":false,"node":"dev-K81","hlc":"1764302000000-0-dev-K81","dot":1},
	//     {"value":true,"node":"srv","hlc":"1764303000000-0-srv","dot":1}
	//   ],
	//   "kept": {"node":"dev-K81","dot":1},
	//   "rule": "update_wins",
	//   "review_required": true
	// }
}

func mustStamp(s string) hlc.Timestamp {
	t, err := hlc.Parse(s)
	if err != nil {
		panic(err)
	}
	return t
}

// A supervisor signs a log off. The sign-off is a server change that writes
// every field's kept value again (the snapshot it signs). An officer's edit
// made before the sign-off but synced after it does not change the signed
// log: it waits as a pending amendment (sign_off_freeze). The supervisor then
// accepts it with a resolution, a server change that has seen it.
func ExamplePolicy_Apply_signOff() {
	logs := merge.Standard()["patrol_logs"]
	c1 := push(`{"change_id":"c1","collection":"patrol_logs","id":"` + logID + `",
		"vv":{"dev-7Q2":1},"hlc":"1764300000000-0-dev-7Q2",
		"fields":{"unit":"KEN-3","status":"active","route":"RN1 north"}}`)
	c2 := push(`{"change_id":"c2","collection":"patrol_logs","id":"` + logID + `",
		"vv":{"dev-7Q2":2},"hlc":"1764308000000-0-dev-7Q2",
		"fields":{"status":"completed"}}`)
	r1 := apply(logs, nil, c1)
	r2 := apply(logs, r1.Record, c2)

	so, err := logs.SignOff(r2.Record, "s1", mustStamp("1764310000000-0-srv"), "sup-ken-01", []byte(`"2025-11-28T06:06:40Z"`))
	if err != nil {
		panic(err)
	}
	printChange(so)
	r3 := apply(logs, r2.Record, so)

	c3 := push(`{"change_id":"c3","collection":"patrol_logs","id":"` + logID + `",
		"vv":{"dev-7Q2":1,"dev-K81":1},"hlc":"1764309000000-0-dev-K81",
		"fields":{"route":"RN1 north, detour via Kafou"}}`)
	r4 := apply(logs, r3.Record, c3)
	printRecord(r4.Record)
	printConflicts(r4.Conflicts)

	// The supervisor accepts the amendment.
	res, err := merge.ServerChange(r4.Record, "s2", mustStamp("1764311000000-0-srv"),
		[]merge.FieldValue{{Name: "route", Value: []byte(`"RN1 north, detour via Kafou"`)}})
	if err != nil {
		panic(err)
	}
	printChange(res)
	r5 := apply(logs, r4.Record, res)
	printRecord(r5.Record)

	// Output:
	// c1 applied
	// c2 applied
	// change:
	// {
	//   "change_id": "s1",
	//   "collection": "patrol_logs",
	//   "id": "0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11",
	//   "vv": {"dev-7Q2":2,"srv":1},
	//   "hlc": "1764310000000-0-srv",
	//   "fields": {
	//     "route": "RN1 north",
	//     "signed_off": true,
	//     "signed_off_at": "2025-11-28T06:06:40Z",
	//     "signed_off_by": "sup-ken-01",
	//     "status": "completed",
	//     "unit": "KEN-3"
	//   },
	//   "deleted": false
	// }
	// s1 applied
	// c3 merged
	// record:
	// {
	//   "collection": "patrol_logs",
	//   "id": "0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11",
	//   "vv": {"dev-7Q2":2,"dev-K81":1,"srv":1},
	//   "fields": {
	//     "route": "RN1 north",
	//     "signed_off": true,
	//     "signed_off_at": "2025-11-28T06:06:40Z",
	//     "signed_off_by": "sup-ken-01",
	//     "status": "completed",
	//     "unit": "KEN-3"
	//   },
	//   "clocks": {
	//     "_deleted": {"hlc":"1764310000000-0-srv","dot":1},
	//     "route": {"hlc":"1764310000000-0-srv","dot":1},
	//     "signed_off": {"hlc":"1764310000000-0-srv","dot":1},
	//     "signed_off_at": {"hlc":"1764310000000-0-srv","dot":1},
	//     "signed_off_by": {"hlc":"1764310000000-0-srv","dot":1},
	//     "status": {"hlc":"1764310000000-0-srv","dot":1},
	//     "unit": {"hlc":"1764310000000-0-srv","dot":1}
	//   },
	//   "deleted": false,
	//   "siblings": {
	//     "_deleted": [{"value":false,"hlc":"1764309000000-0-dev-K81","dot":1}],
	//     "route": [{"value":"RN1 north, detour via Kafou","hlc":"1764309000000-0-dev-K81","dot":1}]
	//   }
	// }
	// conflict:
	// {
	//   "collection": "patrol_logs",
	//   "record_id": "0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11",
	//   "field": "route",
	//   "values": [
	//     {"value":"RN1 north, detour via Kafou","node":"dev-K81","hlc":"1764309000000-0-dev-K81","dot":1},
	//     {"value":"RN1 north","node":"srv","hlc":"1764310000000-0-srv","dot":1}
	//   ],
	//   "kept": {"node":"srv","dot":1},
	//   "rule": "sign_off_freeze",
	//   "review_required": true
	// }
	// change:
	// {
	//   "change_id": "s2",
	//   "collection": "patrol_logs",
	//   "id": "0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11",
	//   "vv": {"dev-7Q2":2,"dev-K81":1,"srv":2},
	//   "hlc": "1764311000000-0-srv",
	//   "fields": {
	//     "route": "RN1 north, detour via Kafou"
	//   },
	//   "deleted": false
	// }
	// s2 applied, settled route
	// record:
	// {
	//   "collection": "patrol_logs",
	//   "id": "0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11",
	//   "vv": {"dev-7Q2":2,"dev-K81":1,"srv":2},
	//   "fields": {
	//     "route": "RN1 north, detour via Kafou",
	//     "signed_off": true,
	//     "signed_off_at": "2025-11-28T06:06:40Z",
	//     "signed_off_by": "sup-ken-01",
	//     "status": "completed",
	//     "unit": "KEN-3"
	//   },
	//   "clocks": {
	//     "_deleted": {"hlc":"1764311000000-0-srv","dot":2},
	//     "route": {"hlc":"1764311000000-0-srv","dot":2},
	//     "signed_off": {"hlc":"1764310000000-0-srv","dot":1},
	//     "signed_off_at": {"hlc":"1764310000000-0-srv","dot":1},
	//     "signed_off_by": {"hlc":"1764310000000-0-srv","dot":1},
	//     "status": {"hlc":"1764310000000-0-srv","dot":1},
	//     "unit": {"hlc":"1764310000000-0-srv","dot":1}
	//   },
	//   "deleted": false
	// }
}

// A device is reinstalled and keeps its id but loses its counters: its first
// report on a segment it had reported before reuses counter 1 with a
// different edit. The server finds its earlier change at that counter in its
// history, rejects the new one with vv_regressed and keeps it for review. A
// true re-send (same edit, new change_id) is stale and harmless.
func ExamplePolicy_Apply_vvRegressed() {
	corridors := merge.Standard()["corridors"]
	c1 := push(`{"change_id":"c1","collection":"corridors","id":"rn1-north",
		"vv":{"dev-C14":1},"hlc":"1764300000000-0-dev-C14",
		"fields":{"status":"open"}}`)
	c2 := push(`{"change_id":"c2","collection":"corridors","id":"rn1-north",
		"vv":{"dev-C14":1,"dev-C22":1},"hlc":"1764303600000-0-dev-C22",
		"fields":{"status":"restricted"}}`)
	r1 := apply(corridors, nil, c1)
	r2 := apply(corridors, r1.Record, c2)

	// history: what dev-C14 wrote to rn1-north at counter 1.
	history := r1.Change

	again := push(`{"change_id":"c1-resent","collection":"corridors","id":"rn1-north",
		"vv":{"dev-C14":1},"hlc":"1764300000000-0-dev-C14",
		"fields":{"status":"open"}}`)
	applyWithPrior(corridors, r2.Record, again, history)

	reinstalled := push(`{"change_id":"r1","collection":"corridors","id":"rn1-north",
		"vv":{"dev-C14":1},"hlc":"1764312000000-0-dev-C14",
		"fields":{"status":"closed","reason":"armed men at the bridge"}}`)
	r3 := applyWithPrior(corridors, r2.Record, reinstalled, history)
	fmt.Println("record unchanged:", r3.Record == r2.Record)
	printConflicts(r3.Conflicts)

	// Output:
	// c1 applied
	// c2 applied
	// c1-resent stale
	// r1 rejected vv_regressed
	// record unchanged: true
	// conflict:
	// {
	//   "collection": "corridors",
	//   "record_id": "rn1-north",
	//   "field": "*",
	//   "values": [
	//     {"value":{"reason":"armed men at the bridge","status":"closed"},"node":"dev-C14","hlc":"1764312000000-0-dev-C14","dot":1}
	//   ],
	//   "kept": null,
	//   "rule": "vv_regressed",
	//   "review_required": true
	// }
}

// The server's clock stamps each received write. A device whose clock runs
// a month ahead would win every later_hlc tie for a month; instead its stamp
// is replaced by the server's current tick (keeping the device's node id),
// and a correct clock's write made a little later wins.
func ExamplePolicy_Apply_clockClamped() {
	now := int64(1764300000000) // 2025-11-28T03:20:00Z
	server := hlc.NewClock(vv.Server, func() int64 { return now }, 60_000)

	logs := merge.Standard()["patrol_logs"]
	c1 := push(`{"change_id":"c1","collection":"patrol_logs","id":"` + logID + `",
		"vv":{"dev-7Q2":1},"hlc":"1764299000000-0-dev-7Q2",
		"fields":{"unit":"KEN-3","status":"active","route":"RN1 north"}}`)
	c2 := push(`{"change_id":"c2","collection":"patrol_logs","id":"` + logID + `",
		"vv":{"dev-7Q2":1,"dev-F03":1},"hlc":"1766892000000-0-dev-F03",
		"fields":{"route":"RN1 north, then Kafou"}}`)
	c3 := push(`{"change_id":"c3","collection":"patrol_logs","id":"` + logID + `",
		"vv":{"dev-7Q2":1,"dev-K81":1},"hlc":"1764300030000-0-dev-K81",
		"fields":{"route":"RN2 south"}}`)

	var rec *merge.Record
	for _, ch := range []*merge.Change{c1, c2, c3} {
		stamp, clamped := server.Receive(ch.HLC)
		fmt.Printf("%s: hlc %s stored as %s, clock_clamped %t\n", ch.ChangeID, ch.HLC, stamp, clamped)
		ch.HLC = stamp
		rec = logs.Apply(rec, ch, nil, merge.Options{}).Record
	}
	fmt.Println("server_hlc", server.Now())
	route, _ := rec.Field("route")
	for i, w := range route.Writes {
		role := "sibling"
		if i == route.Kept {
			role = "kept"
		}
		fmt.Printf("route %s: %s (%s)\n", role, w.Value, w.HLC)
	}

	// Output:
	// c1: hlc 1764299000000-0-dev-7Q2 stored as 1764299000000-0-dev-7Q2, clock_clamped false
	// c2: hlc 1766892000000-0-dev-F03 stored as 1764300000000-1-dev-F03, clock_clamped true
	// c3: hlc 1764300030000-0-dev-K81 stored as 1764300030000-0-dev-K81, clock_clamped false
	// server_hlc 1764300030000-2-srv
	// route sibling: "RN1 north, then Kafou" (1764300000000-1-dev-F03)
	// route kept: "RN2 south" (1764300030000-0-dev-K81)
}

// A device pulls the server's copy of a log while holding an edit the server
// has not seen. Joining the two states keeps every write either side holds
// that the other has not superseded: the result is what the server will hold
// once the device pushes its edit, whichever side joins first.
func ExamplePolicy_Join() {
	logs := merge.Standard()["patrol_logs"]
	c1 := push(`{"change_id":"c1","collection":"patrol_logs","id":"` + logID + `",
		"vv":{"dev-7Q2":1},"hlc":"1764300000000-0-dev-7Q2",
		"fields":{"unit":"KEN-3","status":"active","route":"RN1 north"}}`)
	c2 := push(`{"change_id":"c2","collection":"patrol_logs","id":"` + logID + `",
		"vv":{"dev-7Q2":1,"dev-K81":1},"hlc":"1764300300000-0-dev-K81",
		"fields":{"route":"RN2 south"}}`)
	c3 := push(`{"change_id":"c3","collection":"patrol_logs","id":"` + logID + `",
		"vv":{"dev-7Q2":2},"hlc":"1764300200000-0-dev-7Q2",
		"fields":{"route":"RN1 north, then Kafou","status":"completed"}}`)

	base := apply(logs, nil, c1).Record
	device := apply(logs, base, c2).Record // dev-K81's copy
	server := apply(logs, base, c3).Record // the server's copy

	joined, err := logs.Join(device, server)
	if err != nil {
		panic(err)
	}
	printRecord(joined)
	other, _ := logs.Join(server, device)
	fmt.Println("join(server, device) is the same:", bytes.Equal(other.AppendJSON(nil), joined.AppendJSON(nil)))
	pushed := logs.Apply(server, c2, nil, merge.Options{}).Record
	fmt.Println("same as the server after the push:", bytes.Equal(pushed.AppendJSON(nil), joined.AppendJSON(nil)))

	// Output:
	// c1 applied
	// c2 applied
	// c3 applied
	// record:
	// {
	//   "collection": "patrol_logs",
	//   "id": "0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11",
	//   "vv": {"dev-7Q2":2,"dev-K81":1},
	//   "fields": {
	//     "route": "RN2 south",
	//     "status": "completed",
	//     "unit": "KEN-3"
	//   },
	//   "clocks": {
	//     "_deleted": {"hlc":"1764300300000-0-dev-K81","dot":1},
	//     "route": {"hlc":"1764300300000-0-dev-K81","dot":1},
	//     "status": {"hlc":"1764300200000-0-dev-7Q2","dot":2},
	//     "unit": {"hlc":"1764300000000-0-dev-7Q2","dot":1}
	//   },
	//   "deleted": false,
	//   "siblings": {
	//     "_deleted": [{"value":false,"hlc":"1764300200000-0-dev-7Q2","dot":2}],
	//     "route": [{"value":"RN1 north, then Kafou","hlc":"1764300200000-0-dev-7Q2","dot":2}]
	//   }
	// }
	// join(server, device) is the same: true
	// same as the server after the push: true
}

// Three writes to one field: w1 (dev-A, counter 1, 03:20:20) and w2 (dev-B,
// counter 1, 03:20:10) are concurrent; w3 (dev-A, counter 2, 03:20:30) has
// seen w1 but not w2. Whatever the order they arrive in, w3 supersedes w1
// only, and w2 still competes with w3. Keeping only the winner would lose w2
// in one order and keep it in another.
func ExamplePolicy_Apply_frontier() {
	logs := merge.Standard()["patrol_logs"]
	planned := push(`{"change_id":"s1","collection":"patrol_logs","id":"` + logID + `",
		"vv":{"srv":1},"hlc":"1764300000000-0-srv",
		"fields":{"unit":"KEN-3","status":"planned","route":"RN1"}}`)
	w1 := push(`{"change_id":"w1","collection":"patrol_logs","id":"` + logID + `",
		"vv":{"dev-A":1,"srv":1},"hlc":"1764300020000-0-dev-A","fields":{"route":"x"}}`)
	w2 := push(`{"change_id":"w2","collection":"patrol_logs","id":"` + logID + `",
		"vv":{"dev-B":1,"srv":1},"hlc":"1764300010000-0-dev-B","fields":{"route":"y"}}`)
	w3 := push(`{"change_id":"w3","collection":"patrol_logs","id":"` + logID + `",
		"vv":{"dev-A":2,"srv":1},"hlc":"1764300030000-0-dev-A","fields":{"route":"z"}}`)

	var first []byte
	for _, order := range [][]*merge.Change{{w1, w2, w3}, {w2, w1, w3}, {w1, w3, w2}} {
		rec := logs.Apply(nil, planned, nil, merge.Options{}).Record
		var names []string
		for _, ch := range order {
			rec = logs.Apply(rec, ch, nil, merge.Options{}).Record
			names = append(names, ch.ChangeID)
		}
		route, _ := rec.Field("route")
		var siblings []string
		for i, w := range route.Writes {
			if i != route.Kept {
				siblings = append(siblings, fmt.Sprintf("%s from %s", w.Value, w.Node()))
			}
		}
		fmt.Printf("%s: route %s from %s, siblings %s\n", strings.Join(names, " "), rec.Value("route"), route.Writes[route.Kept].Node(), strings.Join(siblings, ", "))
		if first == nil {
			first = rec.AppendJSON(nil)
		} else if !bytes.Equal(first, rec.AppendJSON(nil)) {
			fmt.Println("different bytes!")
		}
	}

	// Output:
	// w1 w2 w3: route "z" from dev-A, siblings "y" from dev-B
	// w2 w1 w3: route "z" from dev-A, siblings "y" from dev-B
	// w1 w3 w2: route "z" from dev-A, siblings "y" from dev-B
}
