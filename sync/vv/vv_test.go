package vv_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/fieldsync/fieldsync/sync/vv"
)

// vec builds a vector from node:counter pairs, failing the test on bad input.
func vec(t testing.TB, pairs ...any) vv.Vector {
	t.Helper()
	if len(pairs)%2 != 0 {
		t.Fatalf("vec: odd number of arguments %v", pairs)
	}
	m := map[vv.NodeID]uint64{}
	for i := 0; i < len(pairs); i += 2 {
		n, c := vv.NodeID(pairs[i].(string)), uint64(pairs[i+1].(int))
		if _, dup := m[n]; dup {
			t.Fatalf("vec: node %q given twice", n)
		}
		m[n] = c
	}
	v, err := vv.FromMap(m)
	if err != nil {
		t.Fatalf("vec: %v", err)
	}
	return v
}

// largeVec returns a valid vector of n nodes "n000", "n002", ... (even
// numbers only, so odd names fall between entries) with counter i+1.
func largeVec(n int) vv.Vector {
	v := make(vv.Vector, n)
	for i := range v {
		v[i] = vv.Entry{Node: vv.NodeID(fmt.Sprintf("n%03d", 2*i)), Counter: uint64(i + 1)}
	}
	return v
}

// mirror is the ordering of b relative to a given the ordering of a to b.
func mirror(o vv.Ordering) vv.Ordering {
	switch o {
	case vv.Before:
		return vv.After
	case vv.After:
		return vv.Before
	}
	return o
}

// checkCompare checks Compare, and Descends, in both argument orders.
func checkCompare(t *testing.T, a, b vv.Vector, want vv.Ordering) {
	t.Helper()
	if got := vv.Compare(a, b); got != want {
		t.Errorf("Compare(%v, %v) = %v, want %v", a, b, got, want)
	}
	if got := vv.Compare(b, a); got != mirror(want) {
		t.Errorf("Compare(%v, %v) = %v, want %v (mirror of %v)", b, a, got, mirror(want), want)
	}
	if got, wantD := vv.Descends(a, b), want == vv.Equal || want == vv.After; got != wantD {
		t.Errorf("Descends(%v, %v) = %v, want %v", a, b, got, wantD)
	}
	if got, wantD := vv.Descends(b, a), want == vv.Equal || want == vv.Before; got != wantD {
		t.Errorf("Descends(%v, %v) = %v, want %v", b, a, got, wantD)
	}
}

func TestCompare(t *testing.T) {
	big := largeVec(40)
	bigNewer := big.With("n078", 1000) // the last entry ahead
	bigExtra := big.With("n039", 1)    // a node the others lack, in the middle
	tests := []struct {
		name string
		a, b vv.Vector
		want vv.Ordering // of a relative to b; b to a must be the mirror
	}{
		{"equal: both nil", nil, nil, vv.Equal},
		{"equal: nil and empty", nil, vv.Vector{}, vv.Equal},
		{"equal: same single entry", vec(t, "a", 1), vec(t, "a", 1), vv.Equal},
		{"equal: same entries", vec(t, "a", 3, "b", 1, "srv", 9), vec(t, "a", 3, "b", 1, "srv", 9), vv.Equal},
		{"equal: large vectors", big, largeVec(40), vv.Equal},
		{"before: empty vector before any edit", nil, vec(t, "a", 1), vv.Before},
		{"before: empty non-nil vector before any edit", vv.Vector{}, vec(t, "a", 1, "b", 2), vv.Before},
		{"before: one counter lower", vec(t, "a", 1, "b", 2), vec(t, "a", 2, "b", 2), vv.Before},
		{"before: every counter lower", vec(t, "a", 1, "b", 1), vec(t, "a", 2, "b", 5), vv.Before},
		{"before: one side missing a node at the start", vec(t, "b", 2), vec(t, "a", 1, "b", 2), vv.Before},
		{"before: one side missing a node in the middle", vec(t, "a", 1, "c", 2), vec(t, "a", 1, "b", 1, "c", 2), vv.Before},
		{"before: one side missing a node at the end", vec(t, "a", 1), vec(t, "a", 1, "z", 1), vv.Before},
		{"before: large vectors, last entry lower", big, bigNewer, vv.Before},
		{"after: one counter higher", vec(t, "a", 4, "srv", 1), vec(t, "a", 3, "srv", 1), vv.After},
		{"after: other side missing a node", vec(t, "a", 1, "srv", 1), vec(t, "a", 1), vv.After},
		{"after: large vectors, extra node", bigExtra, big, vv.After},
		{"concurrent: each ahead on one node", vec(t, "a", 2, "b", 1), vec(t, "a", 1, "b", 2), vv.Concurrent},
		{"concurrent: disjoint nodes", vec(t, "a", 1), vec(t, "b", 1), vv.Concurrent},
		{"concurrent: disjoint nodes interleaved", vec(t, "a", 1, "c", 1), vec(t, "b", 1, "d", 1), vv.Concurrent},
		{"concurrent: one side missing a node, ahead on another", vec(t, "a", 5), vec(t, "a", 4, "b", 1), vv.Concurrent},
		{"concurrent: first entry ahead, last entry behind", vec(t, "a", 2, "z", 1), vec(t, "a", 1, "z", 2), vv.Concurrent},
		{"concurrent: large vectors, one ahead at the end, the other has an extra node", bigNewer, bigExtra, vv.Concurrent},
		{"concurrent: counters at the extremes", vec(t, "a", math.MaxInt64).With("a", math.MaxUint64), vec(t, "b", 1), vv.Concurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkCompare(t, tt.a, tt.b, tt.want)
		})
	}
}

func TestOrderingString(t *testing.T) {
	tests := []struct {
		o    vv.Ordering
		want string
	}{
		{vv.Equal, "equal"},
		{vv.Before, "before"},
		{vv.After, "after"},
		{vv.Concurrent, "concurrent"},
		{vv.Ordering(7), "Ordering(7)"},
	}
	for _, tt := range tests {
		if got := tt.o.String(); got != tt.want {
			t.Errorf("Ordering(%d).String() = %q, want %q", int(tt.o), got, tt.want)
		}
	}
}

func TestMerge(t *testing.T) {
	big := largeVec(20)
	tests := []struct {
		name string
		a, b vv.Vector
		want vv.Vector
	}{
		{"empty with empty is empty", nil, nil, vv.Vector{}},
		{"empty with a vector is that vector", nil, vec(t, "a", 2), vec(t, "a", 2)},
		{"equal vectors give the same vector", vec(t, "a", 2, "b", 1), vec(t, "a", 2, "b", 1), vec(t, "a", 2, "b", 1)},
		{"ordered vectors give the later one", vec(t, "a", 1), vec(t, "a", 3, "b", 1), vec(t, "a", 3, "b", 1)},
		{"concurrent vectors take the max per node", vec(t, "a", 5, "b", 1), vec(t, "a", 2, "b", 7), vec(t, "a", 5, "b", 7)},
		{"disjoint nodes are all kept in order", vec(t, "a", 1, "c", 3), vec(t, "b", 2, "d", 4), vec(t, "a", 1, "b", 2, "c", 3, "d", 4)},
		{"large vectors with a new node and a higher counter", big, big.With("n001", 1).With("n038", 99), big.With("n001", 1).With("n038", 99)},
		{"largest counter survives", vec(t, "a", vv.MaxCounter), vec(t, "a", 1), vec(t, "a", vv.MaxCounter)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			aBefore, bBefore := tt.a.Clone(), tt.b.Clone()
			for _, got := range []vv.Vector{vv.Merge(tt.a, tt.b), vv.Merge(tt.b, tt.a)} {
				if !slices.Equal(got, tt.want) {
					t.Errorf("Merge = %v, want %v", got, tt.want)
				}
				if err := got.Validate(0); err != nil {
					t.Errorf("Merge = %v, invalid: %v", got, err)
				}
				if len(got) > 0 {
					got[0].Counter = 12345 // must not write through to an input
				}
			}
			if !slices.Equal(tt.a, aBefore) || !slices.Equal(tt.b, bBefore) {
				t.Errorf("Merge modified its inputs: a %v -> %v, b %v -> %v", aBefore, tt.a, bBefore, tt.b)
			}
			if got := vv.Merge(tt.want, tt.want); !slices.Equal(got, tt.want) {
				t.Errorf("Merge(x, x) = %v, want %v (idempotent)", got, tt.want)
			}
		})
	}
}

func TestWith(t *testing.T) {
	base := vec(t, "b", 2, "d", 4)
	tests := []struct {
		name string
		node vv.NodeID
		c    uint64
		want vv.Vector
	}{
		{"new node first is inserted at the start", "a", 1, vec(t, "a", 1, "b", 2, "d", 4)},
		{"new node between is inserted in order", "c", 3, vec(t, "b", 2, "c", 3, "d", 4)},
		{"new node last is appended", "e", 5, vec(t, "b", 2, "d", 4, "e", 5)},
		{"existing node is raised", "b", 9, vec(t, "b", 9, "d", 4)},
		{"existing node may be lowered", "d", 1, vec(t, "b", 2, "d", 1)},
		{"zero removes an existing node", "b", 0, vec(t, "d", 4)},
		{"zero for an absent node changes nothing", "c", 0, vec(t, "b", 2, "d", 4)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := base.Clone()
			got := base.With(tt.node, tt.c)
			if !slices.Equal(got, tt.want) {
				t.Errorf("%v.With(%q, %d) = %v, want %v", base, tt.node, tt.c, got, tt.want)
			}
			if len(got) > 0 {
				got[0].Counter = 777
			}
			if !slices.Equal(base, before) {
				t.Errorf("With modified its receiver: %v -> %v", before, base)
			}
		})
	}
	t.Run("on the empty vector adds the node", func(t *testing.T) {
		if got, want := vv.Vector(nil).With("a", 3), vec(t, "a", 3); !slices.Equal(got, want) {
			t.Errorf("nil.With(a, 3) = %v, want %v", got, want)
		}
	})
}

func TestIncrement(t *testing.T) {
	big := largeVec(30)
	tests := []struct {
		name string
		v    vv.Vector
		node vv.NodeID
		want vv.Vector
	}{
		{"first edit on the empty vector counts 1", nil, "dev-7Q2", vec(t, "dev-7Q2", 1)},
		{"first edit of a new node counts 1", vec(t, "dev-K81", 2, "srv", 1), "dev-7Q2", vec(t, "dev-7Q2", 1, "dev-K81", 2, "srv", 1)},
		{"next edit of a known node counts one more", vec(t, "dev-7Q2", 4, "dev-K81", 2, "srv", 1), "dev-7Q2", vec(t, "dev-7Q2", 5, "dev-K81", 2, "srv", 1)},
		{"server edit raises srv", vec(t, "dev-7Q2", 4, "srv", 1), vv.Server, vec(t, "dev-7Q2", 4, "srv", 2)},
		{"large vector, node in the middle", big, "n020", big.With("n020", big.Get("n020")+1)},
		{"large vector, new node", big, "n021", big.With("n021", 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.v.Clone()
			got := tt.v.Increment(tt.node)
			if !slices.Equal(got, tt.want) {
				t.Errorf("%v.Increment(%q) = %v, want %v", tt.v, tt.node, got, tt.want)
			}
			if !slices.Equal(tt.v, before) {
				t.Errorf("Increment modified its receiver: %v -> %v", before, tt.v)
			}
			checkCompare(t, got, tt.v, vv.After)
		})
	}
}

// TestIncrementNeverMovesBack: a vector's counters may be anything a
// peer sent (up to MaxCounter on the wire, anything in memory); Increment
// must never give a vector before the original (a wrapped counter would
// erase the node). Past MaxCounter the result is invalid, not wrapped.
func TestIncrementNeverMovesBack(t *testing.T) {
	tests := []struct {
		name      string
		c         uint64
		wantValid bool
	}{
		{"one below the largest valid counter gives the largest", vv.MaxCounter - 1, true},
		{"the largest valid counter gives an invalid vector", vv.MaxCounter, false},
		{"one below the uint64 maximum gives the maximum", math.MaxUint64 - 1, false},
		{"the uint64 maximum stays there", math.MaxUint64, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := vv.Vector{{Node: "dev-7Q2", Counter: 1}, {Node: vv.Server, Counter: tt.c}}
			got := v.Increment(vv.Server)
			if o := vv.Compare(got, v); o != vv.After && o != vv.Equal {
				t.Errorf("%v.Increment(srv) = %v, %v the original", v, got, o)
			}
			if got.Get(vv.Server) < tt.c {
				t.Errorf("%v.Increment(srv) = %v lowered the counter", v, got)
			}
			if err := got.Validate(0); (err == nil) != tt.wantValid {
				t.Errorf("Validate(%v) = %v, want valid = %v", got, err, tt.wantValid)
			} else if err != nil && !errors.Is(err, vv.ErrCounter) {
				t.Errorf("Validate(%v) = %v, want ErrCounter", got, err)
			}
		})
	}
}

func TestGetCovers(t *testing.T) {
	small := vec(t, "dev-7Q2", 4, "dev-K81", 2, "srv", 1)
	for _, v := range []vv.Vector{small, largeVec(16), largeVec(17), largeVec(100)} {
		t.Run(fmt.Sprintf("%d entries", len(v)), func(t *testing.T) {
			for _, e := range v {
				if got := v.Get(e.Node); got != e.Counter {
					t.Errorf("Get(%q) = %d, want %d", e.Node, got, e.Counter)
				}
				if !v.Covers(e.Node, e.Counter) {
					t.Errorf("Covers(%q, %d) = false, want true (equal counter)", e.Node, e.Counter)
				}
				if !v.Covers(e.Node, e.Counter-1) {
					t.Errorf("Covers(%q, %d) = false, want true (older dot)", e.Node, e.Counter-1)
				}
				if v.Covers(e.Node, e.Counter+1) {
					t.Errorf("Covers(%q, %d) = true, want false (newer dot)", e.Node, e.Counter+1)
				}
			}
			// Absent nodes: before the first, between entries, after the last.
			for _, n := range []vv.NodeID{"0", "a", "dev-7Q3", "n001", "n0991", "n999", "zzz"} {
				if v.Get(n) != 0 {
					continue // present in this vector; checked above
				}
				if v.Covers(n, 1) {
					t.Errorf("Covers(%q, 1) = true for an absent node", n)
				}
				if !v.Covers(n, 0) {
					t.Errorf("Covers(%q, 0) = false; every vector covers the empty dot", n)
				}
			}
		})
	}
	t.Run("absent nodes count zero", func(t *testing.T) {
		for _, v := range []vv.Vector{nil, small, largeVec(40)} {
			for _, n := range []vv.NodeID{"0", "dev-7Q0", "n001", "n079", "n081", "zz"} {
				if got := v.Get(n); got != 0 {
					t.Errorf("%d entries: Get(%q) = %d, want 0", len(v), n, got)
				}
			}
		}
	})
}

func TestMapFromMap(t *testing.T) {
	m := map[vv.NodeID]uint64{"srv": 1, "dev-7Q2": 4, "dev-K81": 2, "gone": 0}
	v, err := vv.FromMap(m)
	if err != nil {
		t.Fatalf("FromMap: %v", err)
	}
	want := vv.Vector{{"dev-7Q2", 4}, {"dev-K81", 2}, {"srv", 1}}
	if !slices.Equal(v, want) {
		t.Errorf("FromMap = %v, want %v (sorted, zero dropped)", v, want)
	}
	back := v.Map()
	delete(m, "gone")
	if len(back) != len(m) {
		t.Fatalf("Map = %v, want %v", back, m)
	}
	for n, c := range m {
		if back[n] != c {
			t.Errorf("Map()[%q] = %d, want %d", n, back[n], c)
		}
	}
	if _, err := vv.FromMap(map[vv.NodeID]uint64{"ok": 1, "-bad": 1}); !errors.Is(err, vv.ErrNodeID) {
		t.Errorf("FromMap with an invalid node: err = %v, want ErrNodeID", err)
	}
}

func TestClone(t *testing.T) {
	if got := vv.Vector(nil).Clone(); got != nil {
		t.Errorf("nil.Clone() = %#v, want nil", got)
	}
	v := vec(t, "a", 1, "b", 2)
	c := v.Clone()
	c[0].Counter = 99
	if v[0].Counter != 1 {
		t.Errorf("Clone shares memory: original became %v", v)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name       string
		v          vv.Vector
		maxEntries int
		want       error
	}{
		{"valid: empty", nil, 0, nil},
		{"valid: sorted entries", vec(t, "a", 1, "b", 2, "srv", 3), 0, nil},
		{"valid: exactly the limit", largeVec(5), 5, nil},
		{"valid: no limit with a large vector", largeVec(300), 0, nil},
		{"valid: negative limit means no limit", largeVec(300), -1, nil},
		{"too large: one over the limit", largeVec(6), 5, vv.ErrTooLarge},
		{"bad node: empty", vv.Vector{{"", 1}}, 0, vv.ErrNodeID},
		{"bad node: leading dash", vv.Vector{{"-a", 1}}, 0, vv.ErrNodeID},
		{"bad node: space", vv.Vector{{"a b", 1}}, 0, vv.ErrNodeID},
		{"bad node: 65 characters", vv.Vector{{vv.NodeID(strings.Repeat("a", 65)), 1}}, 0, vv.ErrNodeID},
		{"valid: largest counter", vv.Vector{{"a", vv.MaxCounter}}, 0, nil},
		{"bad counter: zero", vv.Vector{{"a", 1}, {"b", 0}}, 0, vv.ErrCounter},
		{"bad counter: above MaxCounter", vv.Vector{{"a", vv.MaxCounter + 1}}, 0, vv.ErrCounter},
		{"bad counter: uint64 maximum", vv.Vector{{"a", math.MaxUint64}}, 0, vv.ErrCounter},
		{"unsorted: descending", vv.Vector{{"b", 1}, {"a", 1}}, 0, vv.ErrUnsorted},
		{"unsorted: duplicate node", vv.Vector{{"a", 1}, {"a", 2}}, 0, vv.ErrUnsorted},
		{"unsorted: late in a large vector", append(largeVec(20), vv.Entry{Node: "n000x", Counter: 1}), 0, vv.ErrUnsorted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.v.Validate(tt.maxEntries)
			switch {
			case tt.want == nil && err != nil:
				t.Errorf("Validate(%d) = %v, want nil", tt.maxEntries, err)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Errorf("Validate(%d) = %v, want errors.Is %v", tt.maxEntries, err, tt.want)
			}
		})
	}
}

func TestValidNodeID(t *testing.T) {
	tests := []struct {
		name string
		id   string
		want bool
	}{
		{"valid: server", "srv", true},
		{"valid: device id with dashes", "dev-7Q2", true},
		{"valid: single character", "a", true},
		{"valid: single digit", "7", true},
		{"valid: uuid", "0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11", true},
		{"valid: every punctuation inside", "a.b_c:d-e", true},
		{"valid: trailing dash", "dev-", true},
		{"valid: 64 characters", strings.Repeat("x", 64), true},
		{"invalid: empty", "", false},
		{"invalid: 65 characters", strings.Repeat("x", 65), false},
		{"invalid: leading dash", "-dev", false},
		{"invalid: leading dot", ".dev", false},
		{"invalid: leading underscore", "_dev", false},
		{"invalid: leading colon", ":dev", false},
		{"invalid: space", "dev 7", false},
		{"invalid: slash", "dev/7", false},
		{"invalid: quote", `dev"7`, false},
		{"invalid: non-ASCII letter", "dév", false},
		{"invalid: NUL", "dev\x00", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := vv.ValidNodeID(tt.id); got != tt.want {
				t.Errorf("ValidNodeID(%q) = %v, want %v", tt.id, got, tt.want)
			}
		})
	}
}

func TestMarshalJSONCanonical(t *testing.T) {
	tests := []struct {
		name string
		v    vv.Vector
		want string
	}{
		{"nil is an empty object", nil, `{}`},
		{"empty is an empty object", vv.Vector{}, `{}`},
		{"keys sorted, no spaces", vec(t, "srv", 1, "dev-K81", 2, "dev-7Q2", 4), `{"dev-7Q2":4,"dev-K81":2,"srv":1}`},
		{"largest counter in full", vec(t, "a", vv.MaxCounter), `{"a":9007199254740991}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.v.MarshalJSON()
			if err != nil {
				t.Fatalf("MarshalJSON: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("MarshalJSON = %s, want %s", got, tt.want)
			}
			if s := tt.v.String(); s != tt.want {
				t.Errorf("String = %s, want %s", s, tt.want)
			}
			if b := tt.v.AppendJSON([]byte("x=")); string(b) != "x="+tt.want {
				t.Errorf("AppendJSON = %s, want x=%s", b, tt.want)
			}
			// encoding/json uses the method for values inside other documents.
			doc, err := json.Marshal(struct {
				VV vv.Vector `json:"vv"`
			}{tt.v})
			if err != nil {
				t.Fatalf("json.Marshal: %v", err)
			}
			if want := `{"vv":` + tt.want + `}`; string(doc) != want {
				t.Errorf("json.Marshal = %s, want %s", doc, want)
			}
		})
	}

	t.Run("maps built in different orders encode the same bytes", func(t *testing.T) {
		nodes := []vv.NodeID{"srv", "dev-7Q2", "dev-K81", "a", "z-9", "M.x", "0"}
		var first []byte
		for r := 0; r < len(nodes); r++ {
			m := map[vv.NodeID]uint64{}
			for i := range nodes {
				n := nodes[(i+r)%len(nodes)]
				m[n] = uint64(len(n))
			}
			v, err := vv.FromMap(m)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := v.MarshalJSON()
			if first == nil {
				first = b
			} else if !bytes.Equal(b, first) {
				t.Errorf("rotation %d encodes %s, rotation 0 encoded %s", r, b, first)
			}
		}
		if want := `{"0":1,"M.x":3,"a":1,"dev-7Q2":7,"dev-K81":7,"srv":3,"z-9":3}`; string(first) != want {
			t.Errorf("encoding = %s, want %s", first, want)
		}
	})
}

func TestUnmarshalJSON(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want vv.Vector
	}{
		{"empty object is the empty vector", `{}`, vv.Vector{}},
		{"protocol example", `{"dev-7Q2": 4, "dev-K81": 2, "srv": 1}`, vec(t, "dev-7Q2", 4, "dev-K81", 2, "srv", 1)},
		{"keys in any order are sorted", `{"srv":1,"dev-K81":2,"dev-7Q2":4}`, vec(t, "dev-7Q2", 4, "dev-K81", 2, "srv", 1)},
		{"whitespace around and inside", " \n{ \"a\" :\t1 }\n ", vec(t, "a", 1)},
		{"escaped key naming a valid node", `{"\u0061":1}`, vec(t, "a", 1)},
		{"largest counter", `{"a":9007199254740991}`, vec(t, "a", vv.MaxCounter)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v vv.Vector
			if err := v.UnmarshalJSON([]byte(tt.in)); err != nil {
				t.Fatalf("UnmarshalJSON(%s) = %v", tt.in, err)
			}
			if v == nil || !slices.Equal(v, tt.want) {
				t.Errorf("UnmarshalJSON(%s) = %#v, want %#v", tt.in, v, tt.want)
			}
			if err := v.Validate(0); err != nil {
				t.Errorf("decoded vector invalid: %v", err)
			}
		})
	}
	t.Run("exactly DecodeLimit entries are accepted", func(t *testing.T) {
		in := largeVec(vv.DecodeLimit).String()
		var v vv.Vector
		if err := v.UnmarshalJSON([]byte(in)); err != nil {
			t.Fatalf("UnmarshalJSON: %v", err)
		}
		if len(v) != vv.DecodeLimit {
			t.Errorf("decoded %d entries, want %d", len(v), vv.DecodeLimit)
		}
	})
}

func TestUnmarshalJSONRejects(t *testing.T) {
	tooMany := largeVec(vv.DecodeLimit + 1).String()
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"null", `null`, vv.ErrEncoding},
		{"null with spaces", ` null `, vv.ErrEncoding},
		{"empty input", ``, vv.ErrEncoding},
		{"array", `[]`, vv.ErrEncoding},
		{"array of pairs", `[["a",1]]`, vv.ErrEncoding},
		{"string", `"a"`, vv.ErrEncoding},
		{"number", `1`, vv.ErrEncoding},
		{"unterminated object", `{"a":1`, vv.ErrEncoding},
		{"missing value", `{"a":}`, vv.ErrEncoding},
		{"trailing comma", `{"a":1,}`, vv.ErrEncoding},
		{"duplicate node", `{"a":1,"a":2}`, vv.ErrEncoding},
		{"duplicate node, same counter", `{"a":1,"b":1,"a":1}`, vv.ErrEncoding},
		{"duplicate node spelled with an escape", `{"a":1,"\u0061":1}`, vv.ErrEncoding},
		{"counter as a string", `{"a":"1"}`, vv.ErrEncoding},
		{"counter null", `{"a":null}`, vv.ErrEncoding},
		{"counter true", `{"a":true}`, vv.ErrEncoding},
		{"counter object", `{"a":{}}`, vv.ErrEncoding},
		{"zero counter", `{"a":0}`, vv.ErrCounter},
		{"negative counter", `{"a":-1}`, vv.ErrCounter},
		{"negative zero counter", `{"a":-0}`, vv.ErrCounter},
		{"fractional counter", `{"a":1.5}`, vv.ErrCounter},
		{"whole number written with a fraction", `{"a":1.0}`, vv.ErrCounter},
		{"exponent counter", `{"a":1e3}`, vv.ErrCounter},
		{"upper-case exponent counter", `{"a":1E0}`, vv.ErrCounter},
		{"counter above MaxCounter", `{"a":9007199254740992}`, vv.ErrCounter},
		{"counter at 2^64-1", `{"a":18446744073709551615}`, vv.ErrCounter},
		{"counter above 2^64-1", `{"a":18446744073709551616}`, vv.ErrCounter},
		{"invalid node: empty", `{"":1}`, vv.ErrNodeID},
		{"invalid node: leading dash", `{"-a":1}`, vv.ErrNodeID},
		{"invalid node: space", `{"a b":1}`, vv.ErrNodeID},
		{"invalid node: 65 characters", `{"` + strings.Repeat("a", 65) + `":1}`, vv.ErrNodeID},
		{"too many entries", tooMany, vv.ErrTooLarge},
		{"trailing garbage", `{"a":1} x`, vv.ErrEncoding},
		{"trailing second object", `{"a":1}{}`, vv.ErrEncoding},
		{"trailing number", `{"a":1} 1`, vv.ErrEncoding},
		{"trailing closing brace", `{"a":1}}`, vv.ErrEncoding},
		{"trailing closing bracket", `{"a":1}]`, vv.ErrEncoding},
		{"trailing closing brace then garbage", `{}}0`, vv.ErrEncoding},
		// JSON whitespace is space, tab, CR and LF only.
		{"trailing vertical tab", "{\"a\":1}\v", vv.ErrEncoding},
		{"trailing form feed", "{\"a\":1}\f", vv.ErrEncoding},
		{"trailing no-break space", "{\"a\":1} \u00a0", vv.ErrEncoding},
		{"trailing NEL", "{\"a\":1}\u0085", vv.ErrEncoding},
		{"leading vertical tab", "\v{\"a\":1}", vv.ErrEncoding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := vec(t, "keep", 1)
			err := v.UnmarshalJSON([]byte(tt.in))
			if !errors.Is(err, tt.want) {
				t.Errorf("UnmarshalJSON(%.60q) = %v, want errors.Is %v", tt.in, err, tt.want)
			}
			if want := vec(t, "keep", 1); err != nil && !slices.Equal(v, want) {
				t.Errorf("a failed decode changed the vector to %v", v)
			}
		})
	}
}

func TestJSONRoundTrip(t *testing.T) {
	for _, v := range []vv.Vector{
		{},
		vec(t, "srv", 1),
		vec(t, "dev-7Q2", 4, "dev-K81", 2, "srv", 1),
		vec(t, "a", 1, "b", vv.MaxCounter),
		largeVec(300),
	} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("Marshal(%v): %v", v, err)
		}
		var got vv.Vector
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("Unmarshal(%s): %v", b, err)
		}
		if !slices.Equal(got, v) {
			t.Errorf("round trip of %s gave %v", b, got)
		}
	}
}

// genNode draws node ids from a small pool most of the time, so that
// vectors share nodes, and sometimes any valid id.
func genNode() *rapid.Generator[vv.NodeID] {
	pool := []vv.NodeID{"a", "b", "c", "dev-7Q2", "dev-K81", "srv"}
	return rapid.OneOf(
		rapid.SampledFrom(pool),
		rapid.SampledFrom(pool),
		rapid.SampledFrom(pool),
		rapid.Map(rapid.StringMatching(`[A-Za-z0-9][A-Za-z0-9._:-]{0,63}`), func(s string) vv.NodeID { return vv.NodeID(s) }),
	)
}

func genCounter() *rapid.Generator[uint64] {
	return rapid.OneOf(rapid.Uint64Range(1, 4), rapid.Uint64Range(1, 4), rapid.Uint64Range(1, vv.MaxCounter))
}

func genVector() *rapid.Generator[vv.Vector] {
	return rapid.Custom(func(t *rapid.T) vv.Vector {
		m := rapid.MapOfN(genNode(), genCounter(), 0, 24).Draw(t, "entries")
		v, err := vv.FromMap(m)
		if err != nil {
			t.Fatalf("FromMap: %v", err)
		}
		return v
	})
}

// orderOf is the definition of the ordering, by maps, to check Compare against.
func orderOf(a, b vv.Vector) vv.Ordering {
	ma, mb := a.Map(), b.Map()
	aAhead, bAhead := false, false
	for n, c := range ma {
		if c > mb[n] {
			aAhead = true
		}
	}
	for n, c := range mb {
		if c > ma[n] {
			bAhead = true
		}
	}
	switch {
	case aAhead && bAhead:
		return vv.Concurrent
	case aAhead:
		return vv.After
	case bAhead:
		return vv.Before
	}
	return vv.Equal
}

func TestCompareProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := genVector().Draw(t, "a"), genVector().Draw(t, "b")
		ab, ba := vv.Compare(a, b), vv.Compare(b, a)
		if ba != mirror(ab) {
			t.Fatalf("Compare(a, b) = %v but Compare(b, a) = %v", ab, ba)
		}
		if want := orderOf(a, b); ab != want {
			t.Fatalf("Compare(%v, %v) = %v, want %v", a, b, ab, want)
		}
		if (ab == vv.Equal) != (a.String() == b.String()) {
			t.Fatalf("Compare(%v, %v) = %v, but encodings equal = %v", a, b, ab, a.String() == b.String())
		}
		if o := vv.Compare(a, a); o != vv.Equal {
			t.Fatalf("Compare(a, a) = %v", o)
		}
	})
}

func TestMergeProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b, c := genVector().Draw(t, "a"), genVector().Draw(t, "b"), genVector().Draw(t, "c")
		m := vv.Merge(a, b)
		if err := m.Validate(0); err != nil {
			t.Fatalf("Merge(%v, %v) = %v: %v", a, b, m, err)
		}
		if !vv.Descends(m, a) || !vv.Descends(m, b) {
			t.Fatalf("Merge(%v, %v) = %v is not an upper bound", a, b, m)
		}
		// Least upper bound: every counter comes from one of the inputs.
		for _, e := range m {
			if e.Counter != max(a.Get(e.Node), b.Get(e.Node)) {
				t.Fatalf("Merge(%v, %v)[%s] = %d, want the max of the two", a, b, e.Node, e.Counter)
			}
		}
		if ba := vv.Merge(b, a); !slices.Equal(m, ba) {
			t.Fatalf("Merge not commutative: %v vs %v", m, ba)
		}
		if l, r := vv.Merge(vv.Merge(a, b), c), vv.Merge(a, vv.Merge(b, c)); !slices.Equal(l, r) {
			t.Fatalf("Merge not associative: %v vs %v", l, r)
		}
		if aa := vv.Merge(a, a); !slices.Equal(aa, a) {
			t.Fatalf("Merge(a, a) = %v, want %v", aa, a)
		}
		if mm := vv.Merge(m, a); !slices.Equal(mm, m) {
			t.Fatalf("Merge(Merge(a, b), a) = %v, want %v", mm, m)
		}
		switch vv.Compare(a, b) {
		case vv.After, vv.Equal:
			if !slices.Equal(m, a) {
				t.Fatalf("a >= b but Merge = %v, want a = %v", m, a)
			}
		case vv.Before:
			if !slices.Equal(m, b) {
				t.Fatalf("a < b but Merge = %v, want b = %v", m, b)
			}
		}
	})
}

func TestIncrementProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		v := genVector().Draw(t, "v")
		n := genNode().Draw(t, "node")
		if v.Get(n) == vv.MaxCounter {
			return // covered by TestIncrementNeverMovesBack
		}
		w := v.Increment(n)
		if err := w.Validate(0); err != nil {
			t.Fatalf("%v.Increment(%s) = %v: %v", v, n, w, err)
		}
		if o := vv.Compare(w, v); o != vv.After {
			t.Fatalf("%v.Increment(%s) = %v is %v the original", v, n, w, o)
		}
		if w.Get(n) != v.Get(n)+1 || len(w.With(n, v.Get(n))) != len(v) || vv.Compare(w.With(n, v.Get(n)), v) != vv.Equal {
			t.Fatalf("%v.Increment(%s) = %v changed more than node %s", v, n, w, n)
		}
	})
}

func TestJSONRoundTripProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		v := genVector().Draw(t, "v")
		b, err := v.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var got vv.Vector
		if err := got.UnmarshalJSON(b); err != nil {
			t.Fatalf("UnmarshalJSON(%s): %v", b, err)
		}
		if !slices.Equal(got, v) {
			t.Fatalf("round trip of %s gave %v", b, got)
		}
		// Any spelling of the same map decodes to the same vector: reorder
		// the members and add whitespace.
		keys := rapid.Permutation(v).Draw(t, "order")
		var alt strings.Builder
		alt.WriteString("{ ")
		for i, e := range keys {
			if i > 0 {
				alt.WriteString(" ,\n")
			}
			alt.WriteString(strconv.Quote(string(e.Node)) + " : " + strconv.FormatUint(e.Counter, 10))
		}
		alt.WriteString(" }")
		var got2 vv.Vector
		if err := got2.UnmarshalJSON([]byte(alt.String())); err != nil {
			t.Fatalf("UnmarshalJSON(%s): %v", alt.String(), err)
		}
		if b2, _ := got2.MarshalJSON(); !bytes.Equal(b2, b) {
			t.Fatalf("%s re-encodes as %s, want %s", alt.String(), b2, b)
		}
	})
}
