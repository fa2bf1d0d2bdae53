package merge_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/sync/hlc"
	"github.com/fieldsync/fieldsync/sync/merge"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// Seeds are in testdata/fuzz/FuzzDecodeChange and testdata/fuzz/FuzzRecordJSON
// (realistic pushes and records, and inputs that once failed); f.Add adds the
// records the engine itself produces. Run longer with
//
//	go test ./sync/merge -run '^$' -fuzz FuzzDecodeChange -fuzztime 60s
//	go test ./sync/merge -run '^$' -fuzz FuzzRecordJSON -fuzztime 60s

// fzPushSeeds are changes as clients push them: the protocol's example, one
// creation per collection, deletes, server changes, and malformed ones.
var fzPushSeeds = []string{
	`{"change_id": "uuid", "collection": "patrol_logs", "id": "0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11",
   "vv": {"dev-7Q2": 5, "dev-K81": 2, "srv": 1},
   "hlc": "1764300200000-0-dev-7Q2",
   "fields": {"status": "completed"}, "deleted": false}`,
	`{"change_id":"c-1","collection":"patrol_logs","id":"0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11","vv":{"dev-7Q2":1},"hlc":"1764300000000-0-dev-7Q2","fields":{"unit":"KEN-3","status":"active","route":"RN1 north","members_count":4,"started_at":"2025-11-28T03:20:00Z","start_location":{"lat":18.54,"lon":-72.33},"notes":"Wharf J\u00e9r\u00e9mie"},"deleted":false}`,
	`{"change_id":"c-2","collection":"patrol_entries","id":"7d0c1a52-0000-4000-8000-000000000001","vv":{"dev-K81":1},"hlc":"1764300123456-2-dev-K81","fields":{"patrol_id":"0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11","unit":"KEN-3","kind":"incident","occurred_at":"2025-11-28T03:21:00.5+01:00","text":"roadblock <cleared> & reopened","severity":"high","persons_count":3,"location":{"lat":-0.0,"lon":180}},"deleted":false}`,
	`{"change_id":"c-3","collection":"corridors","id":"rn1-north","vv":{"dev-7Q2":1},"hlc":"1764300000000-0-dev-7Q2","fields":{"status":"restricted","reason":"checkpoint","verified_at":"2025-11-28T03:00:00Z","threat_level":"moderate","max_age_minutes":360,"notes":null},"deleted":false}`,
	`{"change_id":"c-4","collection":"corridors","id":"rn1-north","vv":{"dev-7Q2":1,"srv":3},"hlc":"1764300000001-0-srv","fields":{},"deleted":true}`,
	`{"change_id":"c-5","collection":"patrol_logs","id":"log-1","vv":{"dev-7Q2":2,"srv":1},"hlc":"1764300300000-0-srv","fields":{"signed_off":true,"signed_off_by":"sup-1","signed_off_at":"2026-01-01T00:00:00Z","status":"completed","unit":"KEN-3"}}`,
	`{"change_id":"c-6","collection":"corridors","id":"rn1-north","vv":{"dev-7Q2":1},"hlc":"1764300000000-0-dev-7Q2","fields":{"status":"open"},"deleted":true}`,
	`{"change_id":"c-7","collection":"patrol_logs","id":"log-1","vv":{"dev-7Q2":1},"hlc":"1764300000000-0-dev-K81","fields":{"status":"planned","unit":"U"}}`,
	`{"change_id":"c-8","collection":"patrol_logs","id":"log-1","vv":{"dev-7Q2":1},"hlc":"1764300000000-0-dev-7Q2","fields":{"status":"planned","status":"active","unit":"U"}}`,
	`{"change_id":"c-9","collection":"patrol_logs","id":"log-1","vv":{"dev-7Q2":1},"hlc":"1764300000000-0-dev-7Q2","fields":{"unit":"U"},"extra":1}`,
	`{"change_id":"c-10","collection":"patrol_logs","id":"log-1","vv":{"dev-7Q2":0},"hlc":"1764300000000-0-dev-7Q2","fields":{"unit":"U"}}`,
	`{"change_id":"c-11","collection":"patrol_logs","id":"log-1","vv":{"dev-7Q2":1},"hlc":"01764300000000-0-dev-7Q2","fields":{"unit":"U"}}`,
	`{"change_id":"c-12","collection":"nope","id":"x","vv":{"a":1},"hlc":"1-0-a","fields":null}`,
	`{"change_id":"c-13","collection":"patrol_logs","id":"log-1","vv":{"dev-7Q2":1},"hlc":"1764300000000-0-dev-7Q2","fields":{"unit":"U"}} {}`,
	`{"change_id":"c-14","collection":"patrol_logs","id":"log-1","vv":{"dev-7Q2":1},"hlc":1764300000000,"fields":{"unit":"U"}}`,
	`{"change_id":"","collection":"patrol_logs","id":"log-1","vv":{"dev-7Q2":1},"hlc":"1-0-dev-7Q2","fields":[]}`,
	`{"change_id":"c-15","collection":"corridors","id":"c","vv":{"d":1},"hlc":"1-0-d","fields":{"status":"open","start_point":{"lat":91,"lon":0},"max_age_minutes":1.5,"verified_at":"yesterday"}}`,
	`{"change_id":"c-16","collection":"patrol_logs","id":"log-1","vv":{"d":1},"hlc":"1-0-d","fields":{"unit":"\u2028\ud800","status":"active","members_count":9007199254740993}}`,
	`[]`,
	`null`,
	``,
}

// fzRecordSeeds are records the engine produces: creations, concurrent
// edits with siblings, a signed-off log with a pending amendment, a
// tombstone revived by a concurrent edit, and competing entry bodies.
func fzRecordSeeds(tb testing.TB) []*merge.Record {
	tb.Helper()
	reg := merge.Standard()
	step := func(stored *merge.Record, body string) *merge.Record {
		tb.Helper()
		ch, err := merge.DecodeChange([]byte(body))
		if err != nil {
			tb.Fatalf("seed change %s: %v", body, err)
		}
		res := reg[ch.Collection].Apply(stored, ch, nil, merge.Options{})
		if res.Outcome != merge.Applied && res.Outcome != merge.Merged {
			tb.Fatalf("seed change %s: %s %s", body, res.Outcome, res.Message)
		}
		return res.Record
	}
	var out []*merge.Record

	log := step(nil, fzPushSeeds[1])
	out = append(out, log)
	a := step(log, `{"change_id":"a","collection":"patrol_logs","id":"0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11","vv":{"dev-7Q2":1,"dev-K81":1},"hlc":"1764300100000-0-dev-K81","fields":{"route":"RN2","status":"completed"}}`)
	b := step(a, `{"change_id":"b","collection":"patrol_logs","id":"0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11","vv":{"dev-7Q2":2},"hlc":"1764300090000-5-dev-7Q2","fields":{"route":"RN1 south","status":"active"}}`)
	out = append(out, a, b)

	stamp, err := hlc.Parse("1764300200000-0-srv")
	if err != nil {
		tb.Fatal(err)
	}
	so, err := reg["patrol_logs"].SignOff(b, "so-1", stamp, "sup-1", []byte(`"2025-11-28T06:00:00Z"`))
	if err != nil {
		tb.Fatal(err)
	}
	res := reg["patrol_logs"].Apply(b, so, nil, merge.Options{})
	signed := res.Record
	amended := step(signed, `{"change_id":"am","collection":"patrol_logs","id":"0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11","vv":{"dev-7Q2":3,"dev-K81":1},"hlc":"1764300250000-0-dev-7Q2","fields":{"summary":"late note","route":"RN1"}}`)
	out = append(out, signed, amended)

	cor := step(nil, fzPushSeeds[3])
	del := step(cor, `{"change_id":"d","collection":"corridors","id":"rn1-north","vv":{"dev-7Q2":1,"srv":1},"hlc":"1764300000500-0-srv","deleted":true}`)
	revived := step(del, `{"change_id":"r","collection":"corridors","id":"rn1-north","vv":{"dev-7Q2":2},"hlc":"1764300000400-0-dev-7Q2","fields":{"status":"closed","verified_at":"2025-11-28T04:00:00Z"}}`)
	out = append(out, del, revived)

	entry := step(nil, fzPushSeeds[2])
	twin := step(entry, `{"change_id":"t","collection":"patrol_entries","id":"7d0c1a52-0000-4000-8000-000000000001","vv":{"dev-7Q2":1},"hlc":"1764300000000-0-dev-7Q2","fields":{"patrol_id":"0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11","unit":"KEN-4","kind":"observation","occurred_at":"2025-11-28T03:00:00Z"}}`)
	out = append(out, entry, twin)
	return out
}

// fzSameChange reports how two decoded changes differ, "" when they do not.
func fzSameChange(a, b *merge.Change) string {
	switch {
	case a.ChangeID != b.ChangeID || a.Collection != b.Collection || a.ID != b.ID:
		return "ids differ"
	case len(a.VV) != len(b.VV) || vv.Compare(a.VV, b.VV) != vv.Equal:
		return "vv differs"
	case a.HLC != b.HLC:
		return "hlc differs"
	case a.Deleted != b.Deleted:
		return "deleted differs"
	case len(a.Fields) != len(b.Fields):
		return "number of fields differs"
	}
	for i := range a.Fields {
		if a.Fields[i].Name != b.Fields[i].Name || !bytes.Equal(a.Fields[i].Value, b.Fields[i].Value) {
			return "field " + a.Fields[i].Name + " differs"
		}
	}
	return ""
}

// fzCheckRecord checks a record's structural invariants: fields sorted and
// unique by name, each holding at least one write, writes in canonical
// (node, dot) order, each with a stamp and a dot, Kept in range.
func fzCheckRecord(t *testing.T, r *merge.Record) {
	t.Helper()
	if !merge.ValidID(r.ID) || r.Collection == "" {
		t.Fatalf("record has collection %q, id %q", r.Collection, r.ID)
	}
	if err := r.VV.Validate(0); err != nil {
		t.Fatalf("record vv %v: %v", r.VV, err)
	}
	for i := range r.Fields {
		f := &r.Fields[i]
		if i > 0 && r.Fields[i-1].Name >= f.Name {
			t.Fatalf("fields not sorted and unique: %q then %q", r.Fields[i-1].Name, f.Name)
		}
		if len(f.Writes) == 0 {
			t.Fatalf("field %q holds no write", f.Name)
		}
		if f.Kept < -1 || f.Kept >= len(f.Writes) {
			t.Fatalf("field %q: Kept = %d of %d writes", f.Name, f.Kept, len(f.Writes))
		}
		for j := range f.Writes {
			w := &f.Writes[j]
			if w.Dot == 0 || w.HLC.IsZero() || !json.Valid(w.Value) {
				t.Fatalf("field %q: write %d has value %q, hlc %v, dot %d; want a JSON value, a stamp and a dot", f.Name, j, w.Value, w.HLC, w.Dot)
			}
			if j > 0 {
				p := &f.Writes[j-1]
				if c := strings.Compare(string(p.Node()), string(w.Node())); c > 0 || c == 0 && p.Dot >= w.Dot {
					t.Fatalf("field %q: writes out of (node, dot) order: %v/%d then %v/%d", f.Name, p.Node(), p.Dot, w.Node(), w.Dot)
				}
			}
		}
	}
}

// fzRoundTrip encodes r, decodes the encoding, and checks that the result
// equals r and encodes to the same bytes.
func fzRoundTrip(t *testing.T, r *merge.Record, from []byte) {
	t.Helper()
	enc := r.AppendJSON(nil)
	if m, _ := r.MarshalJSON(); !bytes.Equal(m, enc) {
		t.Fatalf("MarshalJSON %s != AppendJSON %s", m, enc)
	}
	if !json.Valid(enc) {
		t.Fatalf("record from %q encodes as invalid JSON %q", from, enc)
	}
	var back merge.Record
	if err := back.UnmarshalJSON(enc); err != nil {
		t.Fatalf("re-decoding %s (from %q): %v", enc, from, err)
	}
	if !r.Equal(&back) || !back.Equal(r) {
		t.Fatalf("decode(encode(r)) differs from r:\n%s\n%s", enc, back.AppendJSON(nil))
	}
	if enc2 := back.AppendJSON(nil); !bytes.Equal(enc, enc2) {
		t.Fatalf("encoding not stable:\n%s\n%s", enc, enc2)
	}
}

func FuzzDecodeChange(f *testing.F) {
	for _, s := range fzPushSeeds {
		f.Add([]byte(s))
	}
	reg := merge.Standard()
	codes := map[string]bool{merge.CodeInvalidChange: true, merge.CodeInvalidVV: true, merge.CodeInvalidHLC: true}
	f.Fuzz(func(t *testing.T, data []byte) {
		ch, err := merge.DecodeChange(data)
		if err != nil {
			var de *merge.DecodeError
			if !errors.As(err, &de) || !codes[de.Code] {
				t.Fatalf("DecodeChange(%q) = %v, want a DecodeError with a decode code", data, err)
			}
			if de.ChangeID != "" && !merge.ValidID(de.ChangeID) {
				t.Fatalf("DecodeError reports invalid change id %q", de.ChangeID)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("DecodeChange accepted %q, which is not one JSON value", data)
		}
		if !merge.ValidID(ch.ChangeID) || ch.VV.Validate(vv.DecodeLimit) != nil || !vv.ValidNodeID(string(ch.HLC.Node)) {
			t.Fatalf("DecodeChange(%q) = %+v: invalid id, vv or hlc", data, ch)
		}
		for i := 1; i < len(ch.Fields); i++ {
			if ch.Fields[i-1].Name >= ch.Fields[i].Name {
				t.Fatalf("DecodeChange(%q): fields not sorted and unique", data)
			}
		}

		enc, err := ch.MarshalJSON()
		if err != nil || !json.Valid(enc) {
			t.Fatalf("MarshalJSON = %q, %v", enc, err)
		}
		again, err := merge.DecodeChange(enc)
		if err != nil {
			t.Fatalf("re-decoding %s (from %q): %v", enc, data, err)
		}
		if d := fzSameChange(ch, again); d != "" {
			t.Fatalf("decode(encode(ch)): %s\n%s\n%q", d, enc, data)
		}
		if enc2, _ := again.MarshalJSON(); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable:\n%s\n%s", enc, enc2)
		}

		p, ok := reg[ch.Collection]
		if !ok {
			return
		}
		res := p.Apply(nil, ch, nil, merge.Options{})
		if after, _ := ch.MarshalJSON(); !bytes.Equal(after, enc) {
			t.Fatalf("Apply modified the change: %s -> %s", enc, after)
		}
		switch res.Outcome {
		case merge.Rejected:
			if res.Code == "" || res.Record != nil {
				t.Fatalf("rejected without a code, or with a record for a new record: %+v", res)
			}
			return
		case merge.Applied:
		default:
			t.Fatalf("Apply to a new record: %s, want applied or rejected", res.Outcome)
		}
		rec := res.Record
		if rec == nil || rec.Collection != ch.Collection || rec.ID != ch.ID || vv.Compare(rec.VV, ch.VV) != vv.Equal {
			t.Fatalf("applied %s: record %v", enc, rec)
		}
		fzCheckRecord(t, rec)
		fzRoundTrip(t, rec, enc)

		// Idempotence: the same edit again is stale and changes nothing.
		second := p.Apply(rec, ch, res.Change, merge.Options{})
		if second.Outcome != merge.Stale || !second.Record.Equal(rec) {
			t.Fatalf("re-applying %s: %s %s, want stale", enc, second.Outcome, second.Message)
		}
	})
}

func FuzzRecordJSON(f *testing.F) {
	for _, r := range fzRecordSeeds(f) {
		f.Add(r.AppendJSON(nil))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r merge.Record
		if err := r.UnmarshalJSON(data); err != nil {
			if !errors.Is(err, merge.ErrRecordEncoding) {
				t.Fatalf("UnmarshalJSON(%q) = %v, want ErrRecordEncoding", data, err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("UnmarshalJSON accepted %q, which is not one JSON value", data)
		}
		fzCheckRecord(t, &r)
		fzRoundTrip(t, &r, data)
	})
}

// TestFuzzSeedRecords checks that the engine's own records satisfy what
// FuzzRecordJSON demands, so a seed that fails points at the engine, not at
// the decoder.
func TestFuzzSeedRecords(t *testing.T) {
	seeds := fzRecordSeeds(t)
	siblings, amendments := false, false
	for _, r := range seeds {
		fzCheckRecord(t, r)
		fzRoundTrip(t, r, nil)
		for _, f := range r.Fields {
			siblings = siblings || len(f.Writes) > 1
			amendments = amendments || f.Kept < 0
		}
	}
	if !siblings {
		t.Error("no seed record holds siblings")
	}
	if !amendments {
		t.Error("no seed record holds a field with only pending amendments")
	}
}
