package merge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
)

// decodeFieldsTokens is the Token-based reading decodeFields replaced,
// kept as the reference it must agree with.
func decodeFieldsTokens(data []byte) ([]FieldValue, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("fields must be an object")
	}
	var out []FieldValue
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		out = append(out, FieldValue{Name: name, Value: raw})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	SortFields(out)
	for i := 1; i < len(out); i++ {
		if out[i-1].Name == out[i].Name {
			return nil, fmt.Errorf("field %q is given twice", out[i].Name)
		}
	}
	return out, nil
}

// FuzzDecodeFieldsMatchesTokenizer: for every input that is one JSON value,
// the hand walk and encoding/json's tokenizer accept the same objects and
// read the same names and raw values.
func FuzzDecodeFieldsMatchesTokenizer(f *testing.F) {
	for _, s := range []string{
		`{}`, ` { } `, `{"a":1}`, `{"b":"x","a":[1,{"c":"}"}]}`, `{"a":1,"a":2}`,
		`{"\u0041":true,"A":false}`, `{"é":null}`, "{\"\xff\":1}", `{"s":"a\"b\\"}`,
		`{"n":-1.5e+3 , "o" : { "p" : [ ] } }`, `[]`, `"x"`, `null`, `{"a":{"b":{"c":[[["]"]]]}}}`,
		`{"a\\":"\\"}`, `{"":""}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			if _, err := decodeFields(data); err == nil {
				t.Fatalf("decodeFields accepted %q, which is not JSON", data)
			}
			return
		}
		got, err := decodeFields(data)
		want, werr := decodeFieldsTokens(data)
		if (err == nil) != (werr == nil) {
			t.Fatalf("%q: hand walk %v, tokenizer %v", data, err, werr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\nhand walk %q\ntokenizer %q", data, got, want)
		}
	})
}
