package hlc_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/fieldsync/fieldsync/sync/hlc"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// FuzzHLCParse feeds arbitrary strings to Parse. Whatever it accepts has one
// spelling (String gives the input back), is within range, and survives the
// text and JSON encodings unchanged.
//
// Seeds are in testdata/fuzz/FuzzHLCParse; run longer with
//
//	go test ./sync/hlc -run '^$' -fuzz FuzzHLCParse -fuzztime 60s
func FuzzHLCParse(f *testing.F) {
	for _, s := range []string{
		"1764300000000-0-dev-7Q2",
		"1764300123456-2-dev-K81",
		"1764300200000-0-srv",
		"0-0-a",
		"253402300799999-4294967295-srv",
		"253402300800000-0-srv",
		"1-4294967296-a",
		"01-0-a",
		"1-00-a",
		"-1-0-a",
		"1--a",
		"1-0-",
		"1-0--a",
		"18446744073709551616-0-a",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ts, err := hlc.Parse(s)
		if err != nil {
			if !errors.Is(err, hlc.ErrSyntax) {
				t.Fatalf("Parse(%q) = %v, want ErrSyntax", s, err)
			}
			return
		}
		if ts.Wall < 0 || ts.Wall > hlc.MaxWall || !vv.ValidNodeID(string(ts.Node)) {
			t.Fatalf("Parse(%q) = %#v, out of range", s, ts)
		}
		if got := ts.String(); got != s {
			t.Fatalf("Parse(%q).String() = %q: not the one spelling", s, got)
		}
		again, err := hlc.Parse(ts.String())
		if err != nil || again != ts {
			t.Fatalf("Parse(String()) = %#v, %v; want %#v", again, err, ts)
		}
		if hlc.Compare(ts, again) != 0 || ts.Less(again) {
			t.Fatalf("a stamp does not compare equal to itself: %v", ts)
		}
		j, err := json.Marshal(ts)
		if err != nil {
			t.Fatalf("json.Marshal(%v): %v", ts, err)
		}
		var back hlc.Timestamp
		if err := json.Unmarshal(j, &back); err != nil || back != ts {
			t.Fatalf("JSON round trip of %s = %#v, %v", j, back, err)
		}
	})
}
