// Package hlc implements the hybrid logical clock of the fieldsync protocol.
//
// A Timestamp is written `<unix_ms>-<counter>-<node>`: the wall time in Unix
// milliseconds, a logical counter that orders events within one millisecond,
// and the node that made the stamp. The node is everything after the second
// '-' (node ids may themselves contain '-'). Timestamps are totally ordered by
// wall time, then counter, then node id.
//
// In fieldsync an HLC never decides causality (version vectors and dots do);
// it only breaks ties between concurrent writes. Because field devices run for
// weeks without a time source, a stamp more than a configured skew ahead of
// the local clock is not trusted: Clock.Receive replaces it with a local tick
// that keeps the writer's node id and reports that it did so. Without that a
// device whose clock is a year ahead would win every tie for a year.
//
// The package reads no clock of its own: a Clock is given a function that
// returns the physical time, so tests drive it by hand.
package hlc

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/fieldsync/fieldsync/sync/vv"
)

// MaxWall is the largest wall time accepted: 9999-12-31T23:59:59.999Z. It keeps
// formatted stamps bounded and arithmetic on wall times far from overflow.
const MaxWall int64 = 253402300799999

// Timestamp is one HLC stamp. The zero value is the smallest stamp and has no
// node; it is not a valid stamp on the wire.
type Timestamp struct {
	Wall    int64  // Unix milliseconds
	Logical uint32 // orders stamps within one millisecond
	Node    vv.NodeID
}

// ErrSyntax is returned (wrapped) for a stamp that does not parse.
var ErrSyntax = errors.New("hlc: invalid timestamp")

// Parse reads a stamp in the canonical form `<unix_ms>-<counter>-<node>`.
// Numbers are decimal without sign or leading zeros, so every stamp has one
// spelling and Parse(s).String() == s.
func Parse(s string) (Timestamp, error) {
	i := strings.IndexByte(s, '-')
	if i < 0 {
		return Timestamp{}, fmt.Errorf("%w: %q: want <unix_ms>-<counter>-<node>", ErrSyntax, s)
	}
	j := strings.IndexByte(s[i+1:], '-')
	if j < 0 {
		return Timestamp{}, fmt.Errorf("%w: %q: want <unix_ms>-<counter>-<node>", ErrSyntax, s)
	}
	j += i + 1
	wall, ok := parseDecimal(s[:i], uint64(MaxWall))
	if !ok {
		return Timestamp{}, fmt.Errorf("%w: %q: bad wall time", ErrSyntax, s)
	}
	logical, ok := parseDecimal(s[i+1:j], math.MaxUint32)
	if !ok {
		return Timestamp{}, fmt.Errorf("%w: %q: bad counter", ErrSyntax, s)
	}
	node := s[j+1:]
	if !vv.ValidNodeID(node) {
		return Timestamp{}, fmt.Errorf("%w: %q: bad node id", ErrSyntax, s)
	}
	return Timestamp{Wall: int64(wall), Logical: uint32(logical), Node: vv.NodeID(node)}, nil
}

// parseDecimal parses a canonical unsigned decimal no larger than limit.
func parseDecimal(s string, limit uint64) (uint64, bool) {
	if s == "" || len(s) > 20 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > limit {
		return 0, false
	}
	return n, true
}

// String formats the stamp canonically.
func (t Timestamp) String() string { return string(t.AppendText(make([]byte, 0, 32+len(t.Node)))) }

// AppendText appends the canonical form of t to b.
func (t Timestamp) AppendText(b []byte) []byte {
	b = strconv.AppendInt(b, t.Wall, 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, uint64(t.Logical), 10)
	b = append(b, '-')
	return append(b, t.Node...)
}

// MarshalText implements encoding.TextMarshaler (JSON encodes it as a string).
func (t Timestamp) MarshalText() ([]byte, error) { return t.AppendText(nil), nil }

// UnmarshalText implements encoding.TextUnmarshaler with Parse.
func (t *Timestamp) UnmarshalText(b []byte) error {
	p, err := Parse(string(b))
	if err != nil {
		return err
	}
	*t = p
	return nil
}

// IsZero reports whether t is the zero stamp.
func (t Timestamp) IsZero() bool { return t == Timestamp{} }

// Compare orders two stamps: by wall time, then counter, then node id.
// It returns -1, 0 or +1.
func Compare(a, b Timestamp) int {
	switch {
	case a.Wall < b.Wall:
		return -1
	case a.Wall > b.Wall:
		return 1
	case a.Logical < b.Logical:
		return -1
	case a.Logical > b.Logical:
		return 1
	}
	return strings.Compare(string(a.Node), string(b.Node))
}

// Less reports whether a orders before b.
func (t Timestamp) Less(b Timestamp) bool { return Compare(t, b) < 0 }
