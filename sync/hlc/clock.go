package hlc

import (
	"math"
	"sync"

	"github.com/fieldsync/fieldsync/sync/vv"
)

// Clock is a hybrid logical clock for one node. It is safe for concurrent use.
//
// Invariant: every stamp a Clock returns is greater than every stamp it
// returned or received before, and its wall part is never behind the physical
// clock it was given.
type Clock struct {
	node    vv.NodeID
	physMS  func() int64
	maxSkew int64 // milliseconds

	mu   sync.Mutex
	last Timestamp
}

// NewClock returns a clock for node that reads physical time (Unix ms) from
// physMS and treats a received stamp more than maxSkewMS ahead of physical
// time as a wrong clock (see Receive).
func NewClock(node vv.NodeID, physMS func() int64, maxSkewMS int64) *Clock {
	return &Clock{node: node, physMS: physMS, maxSkew: maxSkewMS, last: Timestamp{Node: node}}
}

// Node returns the clock's node id.
func (c *Clock) Node() vv.NodeID { return c.node }

// MaxSkew returns the configured skew limit in milliseconds.
func (c *Clock) MaxSkew() int64 { return c.maxSkew }

// Now returns a new stamp for a local event (an edit, a sign-off).
func (c *Clock) Now() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tick(c.physMS())
}

// Last returns the latest stamp issued or observed without advancing the clock.
func (c *Clock) Last() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

func (c *Clock) tick(pt int64) Timestamp {
	if pt > c.last.Wall {
		c.last = Timestamp{Wall: pt, Node: c.node}
	} else {
		c.bump()
	}
	return c.last
}

// bump advances the logical counter, carrying into the wall time on overflow
// so the clock stays strictly increasing.
func (c *Clock) bump() {
	if c.last.Logical == math.MaxUint32 {
		c.last.Wall++
		c.last.Logical = 0
		return
	}
	c.last.Logical++
}

// Observe moves the clock past a stamp received from another node (a
// server_hlc in a response, say) without checking skew. Use Receive for stamps
// that will be stored.
func (c *Clock) Observe(r Timestamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.observe(c.physMS(), r)
}

func (c *Clock) observe(pt int64, r Timestamp) {
	switch {
	case pt > c.last.Wall && pt > r.Wall:
		c.last = Timestamp{Wall: pt, Node: c.node}
	case r.Wall > c.last.Wall:
		c.last = Timestamp{Wall: r.Wall, Logical: r.Logical, Node: c.node}
		c.bump()
	case c.last.Wall > r.Wall:
		c.bump()
	default: // equal wall times
		c.last.Logical = max(c.last.Logical, r.Logical)
		c.bump()
	}
}

// Receive takes the stamp r of a write received from another node and returns
// the stamp to store it under. A stamp within the skew limit is returned
// unchanged and the clock moves past it. A stamp more than the limit ahead of
// physical time is clamped: it is replaced by a fresh local tick that keeps
// r's node id (so the write is still attributed to its author), clamped is
// true, and the clock does not jump to the wrong time. Clamping is a report,
// never an error: the write is kept.
func (c *Clock) Receive(r Timestamp) (stamp Timestamp, clamped bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pt := c.physMS()
	if r.Wall > pt && r.Wall-pt > c.maxSkew {
		t := c.tick(pt)
		t.Node = r.Node
		return t, true
	}
	c.observe(pt, r)
	return r, false
}
