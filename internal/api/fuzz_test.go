package api_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"testing"

	"github.com/fieldsync/fieldsync/internal/api"
	"github.com/fieldsync/fieldsync/internal/domain"
)

// FuzzParsePush drives the push decoding path (content decoding, size
// limit, strict envelope) with arbitrary bodies: it must never panic, fail
// only with the client-visible codes of a bad body, and agree with
// encoding/json on every body it accepts.
func FuzzParsePush(f *testing.F) {
	const limit, maxChanges = 1 << 16, 8
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(b)
		zw.Close()
		return buf.Bytes()
	}
	for _, body := range [][]byte{
		batch(1), batch(3), batch(maxChanges + 1),
		[]byte(`{"changes":[]}`), []byte(`{"changes":null}`), []byte(`{"Changes":[]}`),
		[]byte(`{"changes":[],"x":1}`), []byte(`{"changes":[1,"a",null,{}]}`), []byte(`[]`),
		[]byte(`{"changes":[{"change_id":"c1"}]} x`), []byte(`{"changes":[`), []byte(""),
	} {
		f.Add("", body)
		f.Add("gzip", gz(body))
	}
	f.Add("gzip", []byte("not gzip"))
	f.Add("gzip", gz(make([]byte, limit+1)))
	f.Add("br", batch(1))

	allowed := map[string]bool{
		domain.CodeInvalidJSON: true, domain.CodeInvalidGzip: true, domain.CodeBodyTooLarge: true,
		domain.CodeTooManyChanges: true, domain.CodeUnsupportedType: true,
	}
	f.Fuzz(func(t *testing.T, encoding string, raw []byte) {
		changes, err := api.ParsePush(encoding, raw, limit, maxChanges)
		if err != nil {
			var de *domain.Error
			if !errors.As(err, &de) || !allowed[de.Code] {
				t.Fatalf("error %v (%T): not a client-visible body problem", err, err)
			}
			return
		}
		if changes == nil || len(changes) > maxChanges {
			t.Fatalf("%d changes (nil %v), limit %d", len(changes), changes == nil, maxChanges)
		}
		for i, ch := range changes {
			if !json.Valid(ch) {
				t.Fatalf("change %d is not valid JSON: %q", i, ch)
			}
		}
		if encoding != "" {
			return
		}
		// Whatever the strict decoder accepts, encoding/json accepts too,
		// with the same changes.
		var env struct{ Changes []json.RawMessage }
		if err := json.Unmarshal(raw, &env); err != nil {
			t.Fatalf("accepted %q, which encoding/json rejects: %v", raw, err)
		}
		if len(env.Changes) != len(changes) {
			t.Fatalf("%d changes, encoding/json finds %d", len(changes), len(env.Changes))
		}
		for i := range changes {
			if !bytes.Equal(changes[i], env.Changes[i]) {
				t.Fatalf("change %d: %q, encoding/json %q", i, changes[i], env.Changes[i])
			}
		}
		// Changes are copies: scribbling over the request buffer (fasthttp
		// reuses it) must not change them.
		before := make([][]byte, len(changes))
		for i := range changes {
			before[i] = bytes.Clone(changes[i])
		}
		for i := range raw {
			raw[i] = 'X'
		}
		for i := range changes {
			if !bytes.Equal(changes[i], before[i]) {
				t.Fatalf("change %d aliases the request buffer", i)
			}
		}
	})
}
