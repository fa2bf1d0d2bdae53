package hlc_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"pgregory.net/rapid"

	"github.com/fieldsync/fieldsync/sync/hlc"
	"github.com/fieldsync/fieldsync/sync/vv"
)

func ts(wall int64, logical uint32, node vv.NodeID) hlc.Timestamp {
	return hlc.Timestamp{Wall: wall, Logical: logical, Node: node}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want hlc.Timestamp
	}{
		{"protocol example, node with a dash", "1764300000000-0-dev-7Q2", ts(1764300000000, 0, "dev-7Q2")},
		{"protocol example with a counter", "1764300123456-2-dev-K81", ts(1764300123456, 2, "dev-K81")},
		{"server node", "1764300200000-0-srv", ts(1764300200000, 0, "srv")},
		{"node with several dashes", "1-2-a-b-c-", ts(1, 2, "a-b-c-")},
		{"zero wall and counter", "0-0-a", ts(0, 0, "a")},
		{"largest wall", strconv.FormatInt(hlc.MaxWall, 10) + "-0-a", ts(hlc.MaxWall, 0, "a")},
		{"largest counter", "1-4294967295-a", ts(1, math.MaxUint32, "a")},
		{"64-character node", "1-0-" + strings.Repeat("n", 64), ts(1, 0, vv.NodeID(strings.Repeat("n", 64)))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := hlc.Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q) = %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("Parse(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
			if s := got.String(); s != tt.in {
				t.Errorf("Parse(%q).String() = %q", tt.in, s)
			}
			if b := got.AppendText([]byte("x:")); string(b) != "x:"+tt.in {
				t.Errorf("AppendText = %q, want %q", b, "x:"+tt.in)
			}
			var u hlc.Timestamp
			if err := u.UnmarshalText([]byte(tt.in)); err != nil || u != tt.want {
				t.Errorf("UnmarshalText(%q) = %#v, %v", tt.in, u, err)
			}
			j, err := json.Marshal(got)
			if err != nil || string(j) != strconv.Quote(tt.in) {
				t.Errorf("json.Marshal = %s, %v; want %q", j, err, tt.in)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"wall only", "1764300000000"},
		{"no node part", "1764300000000-0"},
		{"empty node", "1764300000000-0-"},
		{"empty wall", "-0-a"},
		{"empty counter", "1764300000000--a"},
		{"all parts empty", "--"},
		{"leading zero in wall", "01764300000000-0-a"},
		{"zero wall with leading zero", "00-0-a"},
		{"leading zero in counter", "1764300000000-01-a"},
		{"plus sign on wall", "+1764300000000-0-a"},
		{"minus sign on wall", "-1764300000000-0-a"},
		{"plus sign on counter", "1764300000000-+1-a"},
		{"wall above MaxWall", strconv.FormatInt(hlc.MaxWall+1, 10) + "-0-a"},
		{"wall above int64", "9223372036854775808-0-a"},
		{"wall above uint64", "18446744073709551616-0-a"},
		{"wall of 21 digits", "100000000000000000000-0-a"},
		{"counter above uint32", "1-4294967296-a"},
		{"counter above uint64", "1-18446744073709551616-a"},
		{"hex wall", "0x1-0-a"},
		{"fractional wall", "1.5-0-a"},
		{"exponent wall", "1e3-0-a"},
		{"spaces", " 1-0-a"},
		{"trailing newline", "1-0-a\n"},
		{"node with a space", "1-0-dev 7"},
		{"node starting with a dash", "1-0--a"},
		{"node starting with a dot", "1-0-.a"},
		{"node of 65 characters", "1-0-" + strings.Repeat("n", 65)},
		{"non-ASCII digits", "١-0-a"},
		{"non-ASCII node", "1-0-dév"},
		{"underscore separators", "1_000-0-a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := hlc.Parse(tt.in)
			if !errors.Is(err, hlc.ErrSyntax) {
				t.Errorf("Parse(%q) = %#v, %v; want ErrSyntax", tt.in, got, err)
			}
			if got != (hlc.Timestamp{}) {
				t.Errorf("Parse(%q) returned %#v with an error; want the zero stamp", tt.in, got)
			}
			u := ts(5, 5, "keep")
			if err := u.UnmarshalText([]byte(tt.in)); !errors.Is(err, hlc.ErrSyntax) || u != ts(5, 5, "keep") {
				t.Errorf("UnmarshalText(%q) = %v and left %#v", tt.in, err, u)
			}
		})
	}
}

func TestCompare(t *testing.T) {
	tests := []struct {
		name string
		a, b hlc.Timestamp
		want int // of a relative to b; b to a must be the negation
	}{
		{"equal: same stamp", ts(10, 2, "a"), ts(10, 2, "a"), 0},
		{"equal: zero stamps", hlc.Timestamp{}, hlc.Timestamp{}, 0},
		{"earlier: wall decides", ts(10, 0, "a"), ts(11, 0, "a"), -1},
		{"earlier: wall decides over a higher counter", ts(10, math.MaxUint32, "z"), ts(11, 0, "a"), -1},
		{"earlier: wall decides over the node", ts(10, 0, "zzz"), ts(11, 0, "aaa"), -1},
		{"earlier: same wall, counter decides", ts(10, 1, "z"), ts(10, 2, "a"), -1},
		{"earlier: same wall and counter, node decides", ts(10, 2, "dev-7Q2"), ts(10, 2, "dev-K81"), -1},
		{"earlier: node prefix orders first", ts(10, 2, "dev"), ts(10, 2, "dev-7Q2"), -1},
		{"earlier: zero stamp before everything", hlc.Timestamp{}, ts(0, 0, "a"), -1},
		{"later: wall decides", ts(1764300123456, 0, "dev-7Q2"), ts(1764300000000, 9, "dev-K81"), 1},
		{"later: upper-case node orders before lower-case", ts(10, 2, "srv"), ts(10, 2, "SRV"), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hlc.Compare(tt.a, tt.b); got != tt.want {
				t.Errorf("Compare(%v, %v) = %d, want %d", tt.a, tt.b, got, tt.want)
			}
			if got := hlc.Compare(tt.b, tt.a); got != -tt.want {
				t.Errorf("Compare(%v, %v) = %d, want %d", tt.b, tt.a, got, -tt.want)
			}
			if got := tt.a.Less(tt.b); got != (tt.want < 0) {
				t.Errorf("%v.Less(%v) = %v, want %v", tt.a, tt.b, got, tt.want < 0)
			}
			if got := tt.b.Less(tt.a); got != (tt.want > 0) {
				t.Errorf("%v.Less(%v) = %v, want %v", tt.b, tt.a, got, tt.want > 0)
			}
			// The order of the canonical strings is not the order of stamps
			// (numbers are not padded), so nothing may sort stamps as text.
		})
	}
}

func TestIsZero(t *testing.T) {
	if !(hlc.Timestamp{}).IsZero() {
		t.Error("zero stamp: IsZero = false")
	}
	for _, s := range []hlc.Timestamp{ts(0, 0, "a"), ts(1, 0, ""), ts(0, 1, "")} {
		if s.IsZero() {
			t.Errorf("%#v.IsZero() = true", s)
		}
	}
}

// manualClock is a physical clock the test sets by hand.
type manualClock struct{ ms int64 }

func (m *manualClock) now() int64 { return m.ms }

type event int

const (
	now     event = iota // Clock.Now
	observe              // Clock.Observe(in)
	receive              // Clock.Receive(in)
)

func (e event) String() string { return [...]string{"Now", "Observe", "Receive"}[e] }

// TestClockHistory drives one clock through a history of physical times and
// events, checking every stamp it returns and where it stands after.
func TestClockHistory(t *testing.T) {
	const skew = 60_000 // ms, the protocol's default max_clock_skew
	const me vv.NodeID = "srv"
	m := &manualClock{}
	c := hlc.NewClock(me, m.now, skew)
	if c.Node() != me || c.MaxSkew() != skew {
		t.Fatalf("Node, MaxSkew = %q, %d", c.Node(), c.MaxSkew())
	}
	if got := c.Last(); got != ts(0, 0, me) {
		t.Fatalf("a new clock's Last = %v, want 0-0-%s", got, me)
	}

	const maxU32 = math.MaxUint32
	steps := []struct {
		why     string
		phys    int64 // physical time before the event
		ev      event
		in      hlc.Timestamp // for Observe and Receive
		want    hlc.Timestamp // returned by Now and Receive
		clamped bool          // returned by Receive
		last    hlc.Timestamp // Last() after the event
	}{
		// Physical time moving forward: the wall follows it, counter 0.
		{"first tick", 1000, now, hlc.Timestamp{}, ts(1000, 0, me), false, ts(1000, 0, me)},
		{"time moves forward", 1001, now, hlc.Timestamp{}, ts(1001, 0, me), false, ts(1001, 0, me)},
		// Standing still: the counter orders events within the millisecond.
		{"time stands still", 1001, now, hlc.Timestamp{}, ts(1001, 1, me), false, ts(1001, 1, me)},
		{"time still stands still", 1001, now, hlc.Timestamp{}, ts(1001, 2, me), false, ts(1001, 2, me)},
		// Going backwards: the clock never does.
		{"time goes backwards", 900, now, hlc.Timestamp{}, ts(1001, 3, me), false, ts(1001, 3, me)},
		{"time goes far backwards", 0, now, hlc.Timestamp{}, ts(1001, 4, me), false, ts(1001, 4, me)},
		{"time catches up", 1002, now, hlc.Timestamp{}, ts(1002, 0, me), false, ts(1002, 0, me)},
		// A stamp ahead within the skew: returned as is, the clock jumps to
		// it with the counter one past the sender's.
		{"receive ahead within skew", 1002, receive, ts(1500, 7, "dev-7Q2"), ts(1500, 7, "dev-7Q2"), false, ts(1500, 8, me)},
		{"tick after the jump", 1002, now, hlc.Timestamp{}, ts(1500, 9, me), false, ts(1500, 9, me)},
		{"physical time passes the jump", 1600, now, hlc.Timestamp{}, ts(1600, 0, me), false, ts(1600, 0, me)},
		// A stamp behind: returned as is; the clock just ticks.
		{"receive behind", 1600, receive, ts(1000, 5, "dev-K81"), ts(1000, 5, "dev-K81"), false, ts(1600, 1, me)},
		// Same wall: the counter moves past the larger of the two.
		{"receive same wall, higher counter", 1600, receive, ts(1600, 10, "dev-K81"), ts(1600, 10, "dev-K81"), false, ts(1600, 11, me)},
		{"receive same wall, lower counter", 1600, receive, ts(1600, 3, "dev-K81"), ts(1600, 3, "dev-K81"), false, ts(1600, 12, me)},
		// Physical time ahead of both: the wall takes it.
		{"receive with physical time ahead", 2000, receive, ts(1999, 50, "dev-K81"), ts(1999, 50, "dev-K81"), false, ts(2000, 0, me)},
		// Beyond the skew: clamped to a local tick that keeps the sender's
		// node; the clock does not jump.
		{"receive beyond skew is clamped", 2000, receive, ts(2000+skew+1, 0, "dev-FUT"), ts(2000, 1, "dev-FUT"), true, ts(2000, 1, me)},
		{"receive a year ahead is clamped", 2000, receive, ts(2000+365*86_400_000, 3, "dev-FUT"), ts(2000, 2, "dev-FUT"), true, ts(2000, 2, me)},
		{"receive at MaxWall is clamped", 2000, receive, ts(hlc.MaxWall, maxU32, "dev-FUT"), ts(2000, 3, "dev-FUT"), true, ts(2000, 3, me)},
		{"clamped with physical time moving", 2500, receive, ts(2500+skew+1, 0, "dev-FUT"), ts(2500, 0, "dev-FUT"), true, ts(2500, 0, me)},
		{"tick after clamps stays at physical time", 2500, now, hlc.Timestamp{}, ts(2500, 1, me), false, ts(2500, 1, me)},
		// Exactly the skew ahead is still trusted.
		{"receive exactly at the skew limit", 3000, receive, ts(3000+skew, 4, "dev-7Q2"), ts(3000+skew, 4, "dev-7Q2"), false, ts(3000+skew, 5, me)},
		{"tick after the limit jump", 3000, now, hlc.Timestamp{}, ts(3000+skew, 6, me), false, ts(3000+skew, 6, me)},
		// Observe moves the clock without a skew check (server_hlc).
		{"observe far ahead", 70_000, observe, ts(200_000, 2, "srv2"), hlc.Timestamp{}, false, ts(200_000, 3, me)},
		{"observe behind", 70_000, observe, ts(100, 0, "srv2"), hlc.Timestamp{}, false, ts(200_000, 4, me)},
		{"observe with physical time ahead of both", 300_000, observe, ts(250_000, 9, "srv2"), hlc.Timestamp{}, false, ts(300_000, 0, me)},
		{"observe same wall", 300_000, observe, ts(300_000, 41, "srv2"), hlc.Timestamp{}, false, ts(300_000, 42, me)},
		// Logical counter overflow carries into the wall time.
		{"receive counter at max, same wall", 300_000, receive, ts(300_000, maxU32, "dev-7Q2"), ts(300_000, maxU32, "dev-7Q2"), false, ts(300_001, 0, me)},
		{"tick after the carry", 300_000, now, hlc.Timestamp{}, ts(300_001, 1, me), false, ts(300_001, 1, me)},
		{"receive counter one below max, ahead", 300_000, receive, ts(310_000, maxU32-1, "dev-7Q2"), ts(310_000, maxU32-1, "dev-7Q2"), false, ts(310_000, maxU32, me)},
		{"tick at max carries", 300_000, now, hlc.Timestamp{}, ts(310_001, 0, me), false, ts(310_001, 0, me)},
		{"receive counter at max, ahead", 300_000, receive, ts(320_000, maxU32, "dev-7Q2"), ts(320_000, maxU32, "dev-7Q2"), false, ts(320_001, 0, me)},
		{"observe counter at max, ahead", 300_000, observe, ts(330_000, maxU32, "srv2"), hlc.Timestamp{}, false, ts(330_001, 0, me)},
		{"receive behind after a carry", 330_001, receive, ts(330_000, maxU32-1, "dev-7Q2"), ts(330_000, maxU32-1, "dev-7Q2"), false, ts(330_001, 1, me)},
		{"receive sets the counter to max", 330_001, receive, ts(340_000, maxU32-1, "dev-7Q2"), ts(340_000, maxU32-1, "dev-7Q2"), false, ts(340_000, maxU32, me)},
		{"clamped tick at max carries", 330_001, receive, ts(330_001+skew+1, 0, "dev-FUT"), ts(340_001, 0, "dev-FUT"), true, ts(340_001, 0, me)},
		{"physical time passes the carry", 400_000, now, hlc.Timestamp{}, ts(400_000, 0, me), false, ts(400_000, 0, me)},
	}
	for i, s := range steps {
		m.ms = s.phys
		var got hlc.Timestamp
		var clamped bool
		switch s.ev {
		case now:
			got = c.Now()
		case observe:
			c.Observe(s.in)
		case receive:
			got, clamped = c.Receive(s.in)
		}
		if s.ev != observe && (got != s.want || clamped != s.clamped) {
			t.Errorf("step %d (%s): phys %d, %v(%v) = %v, clamped %v; want %v, clamped %v",
				i, s.why, s.phys, s.ev, s.in, got, clamped, s.want, s.clamped)
		}
		if last := c.Last(); last != s.last {
			t.Errorf("step %d (%s): after %v(%v) at phys %d, Last = %v; want %v", i, s.why, s.ev, s.in, s.phys, last, s.last)
		}
	}
}

// key is a stamp's position in the clock's sequence, without its node: a
// clamped stamp carries another node but takes a place in the local sequence.
type key struct {
	wall    int64
	logical uint32
}

func keyOf(t hlc.Timestamp) key { return key{t.Wall, t.Logical} }

func (k key) less(o key) bool { return k.wall < o.wall || k.wall == o.wall && k.logical < o.logical }

// TestClockProperties: over random histories, every event moves the clock
// strictly forward, past every stamp it accepted (a received stamp within the
// skew, an observed one), never behind physical time; a local stamp returned
// (Now, a clamped Receive) takes the clock's new place; and clamping never
// moves the clock toward the clamped stamp.
func TestClockProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		const skew = 60_000
		m := &manualClock{ms: rapid.Int64Range(0, 1<<40).Draw(t, "start")}
		c := hlc.NewClock("srv", m.now, skew)
		nodes := []vv.NodeID{"dev-7Q2", "dev-K81", "srv", "zzz"}
		for i := range rapid.IntRange(1, 60).Draw(t, "steps") {
			m.ms = max(0, m.ms+rapid.SampledFrom([]int64{0, 0, 1, 5, -3, -100_000, 100_000}).Draw(t, "dt"))
			before := c.Last()
			r := hlc.Timestamp{
				Wall:    max(0, m.ms+rapid.SampledFrom([]int64{-5, 0, 1, skew, skew + 1, 10 * skew}).Draw(t, "ahead")),
				Logical: rapid.SampledFrom([]uint32{0, 1, 7, math.MaxUint32 - 1, math.MaxUint32}).Draw(t, "logical"),
				Node:    rapid.SampledFrom(nodes).Draw(t, "node"),
			}
			ev := event(rapid.IntRange(0, 2).Draw(t, "event"))
			var got hlc.Timestamp
			accepted, returned := false, false
			switch ev {
			case now:
				got, returned = c.Now(), true
				if got.Node != "srv" {
					t.Fatalf("step %d: Now = %v, not the clock's node", i, got)
				}
			case observe:
				c.Observe(r)
				accepted = true
			case receive:
				var clamped bool
				got, clamped = c.Receive(r)
				if wantClamp := r.Wall > m.ms && r.Wall-m.ms > skew; clamped != wantClamp {
					t.Fatalf("step %d: Receive(%v) at phys %d: clamped = %v, want %v", i, r, m.ms, clamped, wantClamp)
				}
				if clamped {
					returned = true
					if got.Node != r.Node {
						t.Fatalf("step %d: clamped stamp %v lost the sender's node %s", i, got, r.Node)
					}
					if got.Wall > max(before.Wall, m.ms)+1 {
						t.Fatalf("step %d: clamped stamp %v jumped toward %v (clock was %v, phys %d)", i, got, r, before, m.ms)
					}
				} else {
					accepted = true
					if got != r {
						t.Fatalf("step %d: Receive(%v) = %v, want it unchanged", i, r, got)
					}
				}
			}
			last := c.Last()
			if last.Node != "srv" {
				t.Fatalf("step %d: Last = %v, not the clock's node", i, last)
			}
			if !keyOf(before).less(keyOf(last)) {
				t.Fatalf("step %d: %v at phys %d moved the clock from %v to %v", i, ev, m.ms, before, last)
			}
			if accepted && !keyOf(r).less(keyOf(last)) {
				t.Fatalf("step %d: %v(%v) left the clock at %v, not past it", i, ev, r, last)
			}
			if returned && keyOf(got) != keyOf(last) {
				t.Fatalf("step %d: %v returned %v but the clock is at %v", i, ev, got, last)
			}
			if last.Wall < m.ms {
				t.Fatalf("step %d: clock %v behind physical time %d", i, last, m.ms)
			}
		}
	})
}

// TestClockConcurrent calls Now and Receive from many goroutines (run it
// with -race): every goroutine must see its local stamps strictly increase,
// past every stamp it had accepted, and no two local stamps may be equal.
func TestClockConcurrent(t *testing.T) {
	const (
		workers = 8
		ops     = 2000
		skew    = 60_000
	)
	var phys atomic.Int64
	phys.Store(1_764_300_000_000)
	c := hlc.NewClock(vv.Server, phys.Load, skew)

	results := make([][]hlc.Timestamp, workers)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			node := vv.NodeID(fmt.Sprintf("dev-%d", w))
			var floor key // local stamps must pass this
			var mine []hlc.Timestamp
			for i := range ops {
				var local hlc.Timestamp
				switch rng.IntN(10) {
				case 0:
					phys.Add(1) // time passes now and then
					continue
				case 1, 2:
					r := ts(phys.Load()+rng.Int64N(skew), rng.Uint32N(3), node)
					got, clamped := c.Receive(r)
					if clamped || got != r {
						errs <- fmt.Errorf("worker %d op %d: Receive(%v) = %v, clamped %v; want it unchanged", w, i, r, got, clamped)
						return
					}
					if floor.less(keyOf(r)) {
						floor = keyOf(r)
					}
					continue
				case 3:
					// Far enough ahead that time passing meanwhile cannot
					// bring it within the skew.
					r := ts(phys.Load()+skew+10_000+rng.Int64N(1_000_000), rng.Uint32(), node)
					got, clamped := c.Receive(r)
					if !clamped || got.Node != node {
						errs <- fmt.Errorf("worker %d op %d: Receive(%v) = %v, clamped %v; want a clamped stamp of node %s", w, i, r, got, clamped, node)
						return
					}
					local = got
				default:
					local = c.Now()
					if local.Node != vv.Server {
						errs <- fmt.Errorf("worker %d op %d: Now = %v, want node %s", w, i, local, vv.Server)
						return
					}
				}
				if !floor.less(keyOf(local)) {
					errs <- fmt.Errorf("worker %d op %d: local stamp %v not after %v", w, i, local, floor)
					return
				}
				floor = keyOf(local)
				mine = append(mine, local)
			}
			results[w] = mine
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	seen := map[key]hlc.Timestamp{}
	total := 0
	for w, mine := range results {
		total += len(mine)
		for _, s := range mine {
			if prev, dup := seen[keyOf(s)]; dup {
				t.Errorf("worker %d: stamp %v has the same place as %v", w, s, prev)
			}
			seen[keyOf(s)] = s
		}
	}
	if total < workers*ops/2 {
		t.Errorf("only %d local stamps checked", total)
	}
}
