// Package vv implements the version vectors of the fieldsync protocol: a map
// from node id to counter, kept as a slice sorted by node id so that the same
// vector always iterates, compares and encodes the same way.
//
// A node is a device (its device id) or the server ("srv"). A counter is the
// number of edits that node has made to one record; zero means "no edit" and
// is never stored.
//
// Invariants of a valid Vector: entries sorted by Node, strictly increasing
// (no duplicates), every Counter >= 1, every Node a valid NodeID. The
// functions here keep those invariants when given valid vectors; decoding and
// Validate enforce them on input.
package vv

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// NodeID names a writer: a device id or the server node "srv".
type NodeID string

// Server is the node id the server uses for versions it authors itself
// (supervisor resolutions, sign-offs).
const Server NodeID = "srv"

// MaxNodeIDLen is the longest node id accepted.
const MaxNodeIDLen = 64

// MaxCounter is the largest counter accepted: 2^53-1, the largest integer a
// JSON number holds exactly in every client language (JavaScript included).
const MaxCounter = 1<<53 - 1

// Entry is one node's counter in a vector.
type Entry struct {
	Node    NodeID
	Counter uint64
}

// Vector is a version vector. The zero value (nil) is the empty vector.
type Vector []Entry

// Ordering is the causal relation between two vectors.
type Ordering int

// The four possible orderings of two vectors.
const (
	Equal      Ordering = iota // the same history
	Before                     // a happened before b: b has seen all of a and more
	After                      // a happened after b
	Concurrent                 // each has seen something the other has not
)

func (o Ordering) String() string {
	switch o {
	case Equal:
		return "equal"
	case Before:
		return "before"
	case After:
		return "after"
	case Concurrent:
		return "concurrent"
	}
	return fmt.Sprintf("Ordering(%d)", int(o))
}

// Errors returned by validation and decoding, matched with errors.Is.
var (
	ErrNodeID    = errors.New("vv: invalid node id")
	ErrCounter   = errors.New("vv: counter out of range")
	ErrUnsorted  = errors.New("vv: entries not sorted or duplicated")
	ErrTooLarge  = errors.New("vv: too many entries")
	ErrEncoding  = errors.New("vv: malformed encoding")
	ErrNoCounter = errors.New("vv: node has no counter")
)

// ValidNodeID reports whether s is an acceptable node id: 1 to MaxNodeIDLen
// characters from [A-Za-z0-9._:-], starting with a letter or digit. Node ids
// may contain '-': in an HLC stamp the node is everything after the second '-'.
func ValidNodeID(s string) bool { return ValidName(s, MaxNodeIDLen) }

// ValidName reports whether s is 1 to maxLen characters from [A-Za-z0-9._:-],
// starting with a letter or digit: the syntax of node ids, and of record and
// change ids (with their own length limit).
func ValidName(s string, maxLen int) bool {
	if len(s) == 0 || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == ':' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// FromMap builds a valid vector from a map, dropping zero counters. It
// returns an error for an invalid node id.
func FromMap(m map[NodeID]uint64) (Vector, error) {
	v := make(Vector, 0, len(m))
	for n, c := range m {
		if !ValidNodeID(string(n)) {
			return nil, fmt.Errorf("%w: %q", ErrNodeID, n)
		}
		if c == 0 {
			continue
		}
		v = append(v, Entry{Node: n, Counter: c})
	}
	slices.SortFunc(v, func(a, b Entry) int { return strings.Compare(string(a.Node), string(b.Node)) })
	return v, nil
}

// MustFromMap is FromMap for literals in tests and examples; it panics on an
// invalid node id.
func MustFromMap(m map[NodeID]uint64) Vector {
	v, err := FromMap(m)
	if err != nil {
		panic(err)
	}
	return v
}

// Map returns the vector as a map (a copy).
func (v Vector) Map() map[NodeID]uint64 {
	m := make(map[NodeID]uint64, len(v))
	for _, e := range v {
		m[e.Node] = e.Counter
	}
	return m
}

// Validate checks the invariants and that the vector has at most maxEntries
// entries (maxEntries <= 0 means no limit).
func (v Vector) Validate(maxEntries int) error {
	if maxEntries > 0 && len(v) > maxEntries {
		return fmt.Errorf("%w: %d entries, at most %d", ErrTooLarge, len(v), maxEntries)
	}
	for i, e := range v {
		if !ValidNodeID(string(e.Node)) {
			return fmt.Errorf("%w: %q", ErrNodeID, e.Node)
		}
		if e.Counter == 0 || e.Counter > MaxCounter {
			return fmt.Errorf("%w: node %q has counter %d (1..%d)", ErrCounter, e.Node, e.Counter, uint64(MaxCounter))
		}
		if i > 0 && v[i-1].Node >= e.Node {
			return ErrUnsorted
		}
	}
	return nil
}

// Get returns the counter of node n (0 when absent).
func (v Vector) Get(n NodeID) uint64 {
	// Vectors are small; a linear scan beats binary search below ~16 entries
	// and is no worse than a map lookup above.
	if len(v) <= 16 {
		for _, e := range v {
			if e.Node == n {
				return e.Counter
			}
		}
		return 0
	}
	i, ok := slices.BinarySearchFunc(v, n, func(e Entry, n NodeID) int { return strings.Compare(string(e.Node), string(n)) })
	if !ok {
		return 0
	}
	return v[i].Counter
}

// Covers reports whether v has seen the write that node n made at counter
// dot, that is v[n] >= dot.
func (v Vector) Covers(n NodeID, dot uint64) bool { return v.Get(n) >= dot }

// Compare returns the causal ordering of a relative to b.
func Compare(a, b Vector) Ordering {
	aAhead, bAhead := false, false
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i].Node < b[j].Node):
			aAhead = true // b has 0 for a[i].Node, a has >= 1
			i++
		case i == len(a) || b[j].Node < a[i].Node:
			bAhead = true
			j++
		default:
			if a[i].Counter > b[j].Counter {
				aAhead = true
			} else if a[i].Counter < b[j].Counter {
				bAhead = true
			}
			i++
			j++
		}
		if aAhead && bAhead {
			return Concurrent
		}
	}
	switch {
	case aAhead:
		return After
	case bAhead:
		return Before
	}
	return Equal
}

// Descends reports whether a has seen everything b has (a >= b).
func Descends(a, b Vector) bool {
	o := Compare(a, b)
	return o == Equal || o == After
}

// Merge returns the pointwise maximum of a and b as a new vector.
func Merge(a, b Vector) Vector {
	out := make(Vector, 0, max(len(a), len(b)))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i].Node < b[j].Node):
			out = append(out, a[i])
			i++
		case i == len(a) || b[j].Node < a[i].Node:
			out = append(out, b[j])
			j++
		default:
			out = append(out, Entry{Node: a[i].Node, Counter: max(a[i].Counter, b[j].Counter)})
			i++
			j++
		}
	}
	return out
}

// Increment returns a copy of v with node n's counter raised by one. A
// counter already at the uint64 maximum stays there (it is far beyond
// MaxCounter, so Validate rejects the result) instead of wrapping to zero,
// which would erase the node.
func (v Vector) Increment(n NodeID) Vector {
	c := v.Get(n)
	if c < ^uint64(0) {
		c++
	}
	return v.With(n, c)
}

// With returns a copy of v with node n's counter set to c (c = 0 removes n).
func (v Vector) With(n NodeID, c uint64) Vector {
	out := make(Vector, 0, len(v)+1)
	done := false
	for _, e := range v {
		if !done && e.Node >= n {
			if c > 0 {
				out = append(out, Entry{Node: n, Counter: c})
			}
			done = true
			if e.Node == n {
				continue
			}
		}
		out = append(out, e)
	}
	if !done && c > 0 {
		out = append(out, Entry{Node: n, Counter: c})
	}
	return out
}

// Clone returns a copy of v that shares no memory with it.
func (v Vector) Clone() Vector {
	if v == nil {
		return nil
	}
	return slices.Clone(v)
}

// String renders the vector in its canonical JSON form.
func (v Vector) String() string {
	b, _ := v.MarshalJSON()
	return string(b)
}
