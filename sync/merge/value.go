package merge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// canonical checks that raw is a valid value for the field and returns its
// canonical encoding: compact JSON, one spelling per value, so that equal
// values are equal bytes on every replica.
func (f *FieldSpec) canonical(raw []byte) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	if string(raw) == "null" {
		if f.Required {
			return nil, fmt.Errorf("field %q may not be null", f.Name)
		}
		return []byte("null"), nil
	}
	switch f.Type {
	case String, Enum, Time, UUID:
		s, canon, err := decodeString(raw)
		if err != nil {
			return nil, fmt.Errorf("field %q must be a string", f.Name)
		}
		switch f.Type {
		case String:
			if f.MaxLen > 0 && len(s) > f.MaxLen {
				return nil, fmt.Errorf("field %q is longer than %d bytes", f.Name, f.MaxLen)
			}
		case Enum:
			if f.rank(canon) < 0 {
				return nil, fmt.Errorf("field %q must be one of %v", f.Name, f.Enum)
			}
		case Time:
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil || len(s) > 40 {
				return nil, fmt.Errorf("field %q must be an RFC 3339 date-time", f.Name)
			}
			if t.Year() < 1970 || t.Year() > 9999 {
				return nil, fmt.Errorf("field %q is out of range", f.Name)
			}
		case UUID:
			if !validUUID(s) {
				return nil, fmt.Errorf("field %q must be a lower-case UUID", f.Name)
			}
		}
		return canon, nil
	case Bool:
		if string(raw) == "true" || string(raw) == "false" {
			return raw, nil
		}
		return nil, fmt.Errorf("field %q must be a boolean", f.Name)
	case Int:
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil || n < -(1<<53) || n > 1<<53 {
			return nil, fmt.Errorf("field %q must be a whole number", f.Name)
		}
		return strconv.AppendInt(nil, n, 10), nil
	case Number:
		x, err := parseNumber(raw)
		if err != nil {
			return nil, fmt.Errorf("field %q must be a number", f.Name)
		}
		return strconv.AppendFloat(nil, x, 'g', -1, 64), nil
	case Geo:
		var g struct {
			Lat *json.Number `json:"lat"`
			Lon *json.Number `json:"lon"`
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		dec.UseNumber()
		if raw[0] != '{' || dec.Decode(&g) != nil || dec.More() || g.Lat == nil || g.Lon == nil {
			return nil, fmt.Errorf("field %q must be {\"lat\": number, \"lon\": number}", f.Name)
		}
		lat, err1 := parseNumber([]byte(*g.Lat))
		lon, err2 := parseNumber([]byte(*g.Lon))
		if err1 != nil || err2 != nil || lat < -90 || lat > 90 || lon < -180 || lon > 180 {
			return nil, fmt.Errorf("field %q has a latitude or longitude out of range", f.Name)
		}
		out := append([]byte(`{"lat":`), strconv.AppendFloat(nil, lat, 'g', -1, 64)...)
		out = append(out, `,"lon":`...)
		out = strconv.AppendFloat(out, lon, 'g', -1, 64)
		return append(out, '}'), nil
	}
	return nil, fmt.Errorf("field %q has unknown type %q", f.Name, f.Type)
}

func parseNumber(raw []byte) (float64, error) {
	if !json.Valid(raw) || len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return 0, fmt.Errorf("not a number")
	}
	x, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsInf(x, 0) || math.IsNaN(x) {
		return 0, fmt.Errorf("not a finite number")
	}
	return x, nil
}

// decodeString decodes a JSON string and returns it with its canonical
// encoding. The common case, a string with no escapes, is returned as is.
func decodeString(raw []byte) (string, []byte, error) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", nil, fmt.Errorf("not a string")
	}
	inner := raw[1 : len(raw)-1]
	// encoding/json escapes U+2028 and U+2029 and replaces invalid UTF-8, so
	// such strings take the slow path; any other valid UTF-8 is already
	// canonical. One pass over ASCII; UTF-8 is checked only when present.
	plain, ascii := true, true
	for _, c := range inner {
		if c < 0x20 || c == '\\' || c == '"' || c == '<' || c == '>' || c == '&' {
			plain = false
			break
		}
		if c >= 0x80 {
			ascii = false
		}
	}
	if plain && !ascii {
		plain = utf8.Valid(inner) && !bytes.Contains(inner, []byte("\u2028")) && !bytes.Contains(inner, []byte("\u2029"))
	}
	if plain {
		return string(inner), raw, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", nil, err
	}
	if !utf8.ValidString(s) {
		return "", nil, fmt.Errorf("invalid UTF-8")
	}
	canon, err := json.Marshal(s)
	if err != nil {
		return "", nil, err
	}
	return s, canon, nil
}

func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}
