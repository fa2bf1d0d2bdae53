package vv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// DecodeLimit is the most entries UnmarshalJSON accepts, whatever the
// configured maximum: it bounds the memory one hostile vector can take before
// Validate sees it.
const DecodeLimit = 4096

// OnlyJSONSpace reports whether b holds nothing but JSON whitespace (space,
// tab, CR, LF). bytes.TrimSpace is wider (vertical tab, form feed, NEL,
// no-break space), which would let non-JSON bytes trail a value.
func OnlyJSONSpace(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

// MarshalJSON encodes v as a JSON object with keys in ascending order, so the
// same vector always encodes to the same bytes. Node ids are restricted to
// characters that need no escaping.
func (v Vector) MarshalJSON() ([]byte, error) {
	return v.AppendJSON(make([]byte, 0, 2+len(v)*16)), nil
}

// AppendJSON appends the canonical encoding of v to b.
func (v Vector) AppendJSON(b []byte) []byte {
	b = append(b, '{')
	for i, e := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, e.Node...)
		b = append(b, '"', ':')
		b = strconv.AppendUint(b, e.Counter, 10)
	}
	return append(b, '}')
}

// UnmarshalJSON decodes a JSON object of node id to counter. It rejects
// invalid node ids, duplicate keys, counters that are not whole numbers >= 1
// and more than DecodeLimit entries. Keys may come in any order.
func (v *Vector) UnmarshalJSON(data []byte) error {
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return fmt.Errorf("%w: null", ErrEncoding)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrEncoding, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("%w: want an object", ErrEncoding)
	}
	out := Vector{}
	for dec.More() {
		if len(out) >= DecodeLimit {
			return fmt.Errorf("%w: more than %d entries", ErrTooLarge, DecodeLimit)
		}
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrEncoding, err)
		}
		key, _ := tok.(string)
		if !ValidNodeID(key) {
			return fmt.Errorf("%w: %q", ErrNodeID, key)
		}
		tok, err = dec.Token()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrEncoding, err)
		}
		num, ok := tok.(json.Number)
		if !ok {
			return fmt.Errorf("%w: counter of %q is not a number", ErrEncoding, key)
		}
		c, err := strconv.ParseUint(string(num), 10, 64)
		if err != nil || c > MaxCounter {
			return fmt.Errorf("%w: counter of %q must be a whole number up to %d: %s", ErrCounter, key, uint64(MaxCounter), num)
		}
		if c == 0 {
			return fmt.Errorf("%w: node %q", ErrCounter, key)
		}
		out = append(out, Entry{Node: NodeID(key), Counter: c})
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("%w: %v", ErrEncoding, err)
	}
	if !OnlyJSONSpace(data[dec.InputOffset():]) {
		return fmt.Errorf("%w: trailing data", ErrEncoding)
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(string(a.Node), string(b.Node)) })
	for i := 1; i < len(out); i++ {
		if out[i-1].Node == out[i].Node {
			return fmt.Errorf("%w: duplicate node %q", ErrEncoding, out[i].Node)
		}
	}
	*v = out
	return nil
}
