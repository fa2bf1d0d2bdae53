package merge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/fieldsync/fieldsync/sync/hlc"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// MarshalJSON encodes the record in the protocol's form, canonically: members
// in a fixed order, map keys sorted, values as stored. Two replicas holding
// the same state produce the same bytes.
//
//	{"collection","id","vv","fields","clocks","deleted","siblings"?}
//
// fields holds each field's kept value; clocks the kept write's hlc and dot
// (including the "_deleted" pseudo-field); siblings, when any, the other
// writes of a field's frontier: losing concurrent values and pending
// amendments, each {"value","hlc","dot"}.
func (r *Record) MarshalJSON() ([]byte, error) { return r.AppendJSON(nil), nil }

// AppendJSON appends the canonical encoding of r to b.
func (r *Record) AppendJSON(b []byte) []byte {
	b = append(b, `{"collection":`...)
	b = appendString(b, r.Collection)
	b = append(b, `,"id":`...)
	b = appendString(b, r.ID)
	b = append(b, `,"vv":`...)
	b = r.VV.AppendJSON(b)
	b = append(b, `,"fields":{`...)
	n := 0
	for k := range r.Fields {
		f := &r.Fields[k]
		if f.Name == DeletedField || f.Kept < 0 {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = appendString(b, f.Name)
		b = append(b, ':')
		b = append(b, f.Writes[f.Kept].Value...)
	}
	b = append(b, `},"clocks":{`...)
	n = 0
	for k := range r.Fields {
		f := &r.Fields[k]
		if f.Kept < 0 {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = appendString(b, f.Name)
		b = append(b, `:{"hlc":"`...)
		b = f.Writes[f.Kept].HLC.AppendText(b)
		b = append(b, `","dot":`...)
		b = strconv.AppendUint(b, f.Writes[f.Kept].Dot, 10)
		b = append(b, '}')
	}
	b = append(b, `},"deleted":`...)
	b = strconv.AppendBool(b, r.Deleted())
	n = 0
	for k := range r.Fields {
		f := &r.Fields[k]
		if len(f.Writes) < 2 && f.Kept == 0 {
			continue
		}
		if n == 0 {
			b = append(b, `,"siblings":{`...)
		} else {
			b = append(b, ',')
		}
		n++
		b = appendString(b, f.Name)
		b = append(b, ":["...)
		m := 0
		for i := range f.Writes {
			if i == f.Kept {
				continue
			}
			if m > 0 {
				b = append(b, ',')
			}
			m++
			w := &f.Writes[i]
			b = append(b, `{"value":`...)
			b = append(b, w.Value...)
			b = append(b, `,"hlc":"`...)
			b = w.HLC.AppendText(b)
			b = append(b, `","dot":`...)
			b = strconv.AppendUint(b, w.Dot, 10)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if n > 0 {
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendString appends s as a JSON string. Names and ids are validated to
// need no escaping; anything else goes through encoding/json.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

type wireClock struct {
	HLC hlc.Timestamp `json:"hlc"`
	Dot uint64        `json:"dot"`
}

type wireWrite struct {
	Value json.RawMessage `json:"value"`
	HLC   hlc.Timestamp   `json:"hlc"`
	Dot   uint64          `json:"dot"`
}

type wireRecord struct {
	Collection string                     `json:"collection"`
	ID         string                     `json:"id"`
	VV         vv.Vector                  `json:"vv"`
	Fields     map[string]json.RawMessage `json:"fields"`
	Clocks     map[string]wireClock       `json:"clocks"`
	Deleted    bool                       `json:"deleted"`
	Siblings   map[string][]wireWrite     `json:"siblings"`
	Stale      *bool                      `json:"stale"` // computed by the server at read time; not state
}

// ErrRecordEncoding is returned (wrapped) for a record that does not decode.
var ErrRecordEncoding = errors.New("merge: malformed record")

// UnmarshalJSON decodes a record in the form MarshalJSON writes. It checks
// the structure (every kept value has a clock, dots are >= 1, no write twice)
// but not values against a policy: records come from a replica that
// validated them.
func (r *Record) UnmarshalJSON(data []byte) error {
	var w wireRecord
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return fmt.Errorf("%w: %v", ErrRecordEncoding, err)
	}
	if !vv.OnlyJSONSpace(data[dec.InputOffset():]) {
		return fmt.Errorf("%w: trailing data", ErrRecordEncoding)
	}
	if !ValidID(w.ID) || w.Collection == "" {
		return fmt.Errorf("%w: bad collection or id", ErrRecordEncoding)
	}
	out := Record{Collection: w.Collection, ID: w.ID, VV: w.VV}
	if out.VV == nil {
		out.VV = vv.Vector{}
	}
	names := make([]string, 0, len(w.Clocks)+len(w.Siblings))
	for name := range w.Clocks {
		names = append(names, name)
	}
	for name := range w.Siblings {
		if _, ok := w.Clocks[name]; !ok {
			names = append(names, name)
		}
	}
	for name := range w.Fields {
		if _, ok := w.Clocks[name]; !ok {
			return fmt.Errorf("%w: field %q has no clock", ErrRecordEncoding, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		f := Field{Name: name, Kept: -1}
		var kept *Write
		if c, ok := w.Clocks[name]; ok {
			var v []byte
			if name == DeletedField {
				v = []byte(strconv.FormatBool(w.Deleted))
			} else if raw, ok := w.Fields[name]; ok {
				v = compactJSON(raw)
			} else {
				return fmt.Errorf("%w: clock of %q without a value", ErrRecordEncoding, name)
			}
			kept = &Write{Value: v, HLC: c.HLC, Dot: c.Dot}
			f.Writes = append(f.Writes, *kept)
		}
		if sib, ok := w.Siblings[name]; ok && len(sib) == 0 {
			return fmt.Errorf("%w: siblings of %q is empty", ErrRecordEncoding, name)
		}
		for _, s := range w.Siblings[name] {
			if len(s.Value) == 0 || !json.Valid(s.Value) {
				return fmt.Errorf("%w: a sibling of %q has no value", ErrRecordEncoding, name)
			}
			f.Writes = append(f.Writes, Write{Value: compactJSON(s.Value), HLC: s.HLC, Dot: s.Dot})
		}
		slices.SortFunc(f.Writes, compareID)
		for i := range f.Writes {
			if f.Writes[i].Dot == 0 || f.Writes[i].HLC.IsZero() {
				return fmt.Errorf("%w: field %q has a write without hlc or dot", ErrRecordEncoding, name)
			}
			if i > 0 && compareID(f.Writes[i-1], f.Writes[i]) == 0 {
				return fmt.Errorf("%w: field %q holds one write twice", ErrRecordEncoding, name)
			}
			if kept != nil && f.Writes[i].sameID(kept) {
				f.Kept = i
			}
		}
		out.Fields = append(out.Fields, f)
	}
	*r = out
	return nil
}

func compactJSON(raw []byte) []byte {
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		return slices.Clone(raw)
	}
	return buf.Bytes()
}

// DecodeError says why a change did not decode, with the stable code a push
// result carries and, when it could be read, the change's id.
type DecodeError struct {
	Code     string
	Message  string
	ChangeID string
}

func (e *DecodeError) Error() string { return e.Code + ": " + e.Message }

type wireChange struct {
	ChangeID   string          `json:"change_id"`
	Collection string          `json:"collection"`
	ID         string          `json:"id"`
	VV         json.RawMessage `json:"vv"`
	HLC        json.RawMessage `json:"hlc"`
	Fields     json.RawMessage `json:"fields"`
	Deleted    bool            `json:"deleted"`
}

// DecodeChange decodes one change of a push body. Unknown members, a fields
// object with a name twice, and malformed vv or hlc are errors, each with its
// own code. Values are kept raw; Policy.Apply validates them against the
// collection.
func DecodeChange(data []byte) (*Change, error) {
	var w wireChange
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return nil, &DecodeError{Code: CodeInvalidChange, Message: "change does not decode: " + err.Error(), ChangeID: peekChangeID(data)}
	}
	if !ValidID(w.ChangeID) {
		// No usable id: the error carries none, so nothing is keyed by it.
		return nil, &DecodeError{Code: CodeInvalidChange, Message: fmt.Sprintf("change_id must be 1 to %d characters of [A-Za-z0-9._:-]", MaxIDLen)}
	}
	if !vv.OnlyJSONSpace(data[dec.InputOffset():]) {
		return nil, &DecodeError{Code: CodeInvalidChange, Message: "trailing data after the change", ChangeID: w.ChangeID}
	}
	fail := func(code, format string, args ...any) (*Change, error) {
		return nil, &DecodeError{Code: code, Message: fmt.Sprintf(format, args...), ChangeID: w.ChangeID}
	}
	ch := &Change{ChangeID: w.ChangeID, Collection: w.Collection, ID: w.ID, Deleted: w.Deleted}
	if len(w.VV) == 0 {
		return fail(CodeInvalidVV, "vv is required")
	}
	if err := ch.VV.UnmarshalJSON(w.VV); err != nil {
		return fail(CodeInvalidVV, "%v", err)
	}
	var stamp string
	if len(w.HLC) == 0 || json.Unmarshal(w.HLC, &stamp) != nil {
		return fail(CodeInvalidHLC, "hlc must be a string <unix_ms>-<counter>-<node>")
	}
	t, err := hlc.Parse(stamp)
	if err != nil {
		return fail(CodeInvalidHLC, "%v", err)
	}
	ch.HLC = t
	if len(w.Fields) > 0 && string(bytes.TrimSpace(w.Fields)) != "null" {
		fs, err := decodeFields(w.Fields)
		if err != nil {
			return fail(CodeInvalidChange, "%v", err)
		}
		ch.Fields = fs
	}
	return ch, nil
}

// decodeFields reads a JSON object of field name to raw value, rejecting a
// name given twice (encoding/json would keep the last silently).
//
// It walks the object by hand: encoding/json's Token API built and threw
// away an error value after every member's value and was, with it, a
// quarter of a push's CPU. The input is checked to be one JSON value
// first, so the walk only has to find where names and values end.
func decodeFields(data []byte) ([]FieldValue, error) {
	if !json.Valid(data) {
		return nil, fmt.Errorf("fields: not one JSON value")
	}
	i := skipJSONSpace(data, 0)
	if data[i] != '{' {
		return nil, fmt.Errorf("fields must be an object")
	}
	i = skipJSONSpace(data, i+1)
	var out []FieldValue
	for data[i] != '}' {
		end := jsonStringEnd(data, i)
		name, err := jsonName(data[i:end])
		if err != nil {
			return nil, fmt.Errorf("fields: %v", err)
		}
		i = skipJSONSpace(data, skipJSONSpace(data, end)+1) // past the colon
		end = jsonValueEnd(data, i)
		out = append(out, FieldValue{Name: name, Value: json.RawMessage(data[i:end:end])})
		i = skipJSONSpace(data, end)
		if data[i] == ',' {
			i = skipJSONSpace(data, i+1)
		}
	}
	SortFields(out)
	for i := 1; i < len(out); i++ {
		if out[i-1].Name == out[i].Name {
			return nil, fmt.Errorf("field %q is given twice", out[i].Name)
		}
	}
	return out, nil
}

// The walkers below take valid JSON and the index of a token's first byte.

func skipJSONSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// jsonStringEnd returns the index after the string starting at data[i].
func jsonStringEnd(data []byte, i int) int {
	for i++; data[i] != '"'; i++ {
		if data[i] == '\\' {
			i++
		}
	}
	return i + 1
}

// jsonValueEnd returns the index after the value starting at data[i].
func jsonValueEnd(data []byte, i int) int {
	switch data[i] {
	case '"':
		return jsonStringEnd(data, i)
	case '{', '[':
		depth := 0
		for {
			switch data[i] {
			case '"':
				i = jsonStringEnd(data, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
	}
	for i < len(data) && !strings.ContainsRune(",}] \t\r\n", rune(data[i])) {
		i++
	}
	return i
}

// jsonName decodes a quoted member name: directly when it is plain ASCII
// without escapes, through encoding/json otherwise (escapes, and invalid
// UTF-8 becoming U+FFFD, exactly as encoding/json reads it).
func jsonName(quoted []byte) (string, error) {
	inner := quoted[1 : len(quoted)-1]
	for _, c := range inner {
		if c == '\\' || c >= utf8.RuneSelf {
			var s string
			err := json.Unmarshal(quoted, &s)
			return s, err
		}
	}
	return string(inner), nil
}

// peekChangeID extracts change_id from a change that does not decode, so
// its rejection can still be reported against it.
func peekChangeID(data []byte) string {
	var w struct {
		ChangeID string `json:"change_id"`
	}
	if json.Unmarshal(data, &w) != nil || !ValidID(w.ChangeID) {
		return ""
	}
	return w.ChangeID
}

// MarshalJSON encodes a change in the push form, canonically.
func (c *Change) MarshalJSON() ([]byte, error) {
	b := append([]byte(nil), `{"change_id":`...)
	b = appendString(b, c.ChangeID)
	b = append(b, `,"collection":`...)
	b = appendString(b, c.Collection)
	b = append(b, `,"id":`...)
	b = appendString(b, c.ID)
	b = append(b, `,"vv":`...)
	b = c.VV.AppendJSON(b)
	b = append(b, `,"hlc":"`...)
	b = c.HLC.AppendText(b)
	b = append(b, `","fields":{`...)
	b = appendFields(b, c.Fields)
	b = append(b, `},"deleted":`...)
	b = strconv.AppendBool(b, c.Deleted)
	return append(b, '}'), nil
}
