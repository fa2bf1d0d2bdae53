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
// that page shows exactly what they print. Changes are written as a client
// pushes them (JSON), decoded with merge.DecodeChange and applied with the
// standard policies, as the server does.

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
}
