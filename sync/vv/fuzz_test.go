package vv_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"testing"

	"github.com/fieldsync/fieldsync/sync/vv"
)

// FuzzVVDecode feeds arbitrary bytes to Vector.UnmarshalJSON. Whatever it
// accepts must be one valid JSON object, decode to a valid vector that agrees
// with encoding/json's reading of it, and re-encode canonically:
// decode(encode(v)) == v and encode is stable.
//
// Seeds are in testdata/fuzz/FuzzVVDecode; run longer with
//
//	go test ./sync/vv -run '^$' -fuzz FuzzVVDecode -fuzztime 60s
func FuzzVVDecode(f *testing.F) {
	for _, s := range []string{
		`{"dev-7Q2": 4, "dev-K81": 2, "srv": 1}`,
		`{"dev-7Q2":5,"dev-K81":2,"srv":1}`,
		`{}`,
		`{"srv":1,"a":2}`,
		`{"a":18446744073709551615}`,
		`{"a":18446744073709551616}`,
		`{"a":1,"a":2}`,
		`{"\u0061":1}`,
		`{"a":0}`,
		`{"a":-1}`,
		`{"a":1.5}`,
		`{"a":1e3}`,
		`{"-a":1}`,
		`null`,
		`[]`,
		`{"a":1} x`,
		`{"a":1`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v vv.Vector
		err := v.UnmarshalJSON(data)
		if err != nil {
			for _, want := range []error{vv.ErrEncoding, vv.ErrNodeID, vv.ErrCounter, vv.ErrTooLarge} {
				if errors.Is(err, want) {
					return
				}
			}
			t.Fatalf("UnmarshalJSON(%q) = %v, not one of the package's errors", data, err)
		}
		if !json.Valid(data) {
			t.Fatalf("UnmarshalJSON accepted %q, which is not one JSON value", data)
		}
		if v == nil {
			t.Fatalf("UnmarshalJSON(%q) left a nil vector", data)
		}
		if err := v.Validate(vv.DecodeLimit); err != nil {
			t.Fatalf("UnmarshalJSON(%q) = %v, invalid: %v", data, v, err)
		}
		// encoding/json must read the same map (duplicates were refused, so
		// no key was silently overwritten).
		var m map[string]json.Number
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("encoding/json rejects accepted input %q: %v", data, err)
		}
		if len(m) != len(v) {
			t.Fatalf("UnmarshalJSON(%q) = %v; encoding/json reads %d entries", data, v, len(m))
		}
		for _, e := range v {
			if n, ok := m[string(e.Node)]; !ok || n.String() != strconv.FormatUint(e.Counter, 10) {
				t.Fatalf("UnmarshalJSON(%q): %s = %d; encoding/json reads %q", data, e.Node, e.Counter, n)
			}
		}

		enc, err := v.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON: %v", err)
		}
		var w vv.Vector
		if err := w.UnmarshalJSON(enc); err != nil {
			t.Fatalf("re-decoding %s (from %q): %v", enc, data, err)
		}
		if !slices.Equal(v, w) {
			t.Fatalf("decode(encode(v)) = %v, want %v", w, v)
		}
		if enc2, _ := w.MarshalJSON(); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable: %s then %s", enc, enc2)
		}
	})
}
