// Package sim puts fieldsync through a field operation's bad week: simulated
// devices (sync/client replicas) edit offline and sync through a proxy that
// injects the faults of a weak link, and at the end every device's state is
// checked against the server's.
package sim

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Faults counts what the proxy did to requests.
type Faults struct {
	CutBefore  atomic.Int64 // connection cut before the request reached the server
	CutAfter   atomic.Int64 // request applied, response lost
	Duplicated atomic.Int64 // request sent twice
	Delayed    atomic.Int64
	Passed     atomic.Int64
}

// Proxy forwards HTTP requests to a server and injects faults at a given
// rate: each request is, with probability rate, cut before forwarding, cut
// after the server answered (the classic lost response), sent twice, or
// delayed.
type Proxy struct {
	Upstream string
	// Upstreams, when set, are several server instances (on one
	// database): each request goes to one of them at random, and a
	// request sent twice may reach two different ones.
	Upstreams []string
	Rate      float64
	Faults    Faults
	// Link shaping (zero values: none). Bandwidth is bytes per second each
	// way, Latency the round trip, CutEvery the bytes after which a
	// transfer is cut (a link that drops long transfers).
	Bandwidth int
	Latency   time.Duration
	CutEvery  int
	client    *http.Client
	mu        sync.Mutex
	rng       *rand.Rand
}

// NewProxy returns a proxy to upstream with a seeded fault generator.
func NewProxy(upstream string, rate float64, seed uint64) *Proxy {
	return &Proxy{Upstream: upstream, Rate: rate, client: &http.Client{Timeout: 60 * time.Second},
		rng: rand.New(rand.NewPCG(seed, seed^0x5eed))}
}

func (p *Proxy) draw() (fault int, delay time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rng.Float64() >= p.Rate {
		return 0, 0
	}
	return 1 + p.rng.IntN(4), time.Duration(p.rng.IntN(40)) * time.Millisecond
}

func (p *Proxy) upstream() string {
	if len(p.Upstreams) == 0 {
		return p.Upstream
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.Upstreams[p.rng.IntN(len(p.Upstreams))]
}

func (p *Proxy) forward(r *http.Request, body []byte) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(r.Context(), r.Method, p.upstream()+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header = r.Header.Clone()
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func cut(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler) // net/http closes the connection
}

// ServeHTTP forwards one request, perhaps with a fault.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		cut(w)
		return
	}
	// A shaped link: half the round trip and the transfer time each way;
	// a transfer longer than CutEvery is cut once that much has gone.
	if p.CutEvery > 0 && len(body) > p.CutEvery {
		p.wait(p.CutEvery, true)
		p.Faults.CutBefore.Add(1)
		cut(w)
		return
	}
	p.wait(len(body), true)
	fault, delay := p.draw()
	switch fault {
	case 1:
		p.Faults.CutBefore.Add(1)
		cut(w)
		return
	case 4:
		p.Faults.Delayed.Add(1)
		time.Sleep(delay)
	}
	resp, rb, err := p.forward(r, body)
	if err != nil {
		cut(w)
		return
	}
	switch fault {
	case 2:
		p.Faults.CutAfter.Add(1)
		cut(w)
		return
	case 3:
		p.Faults.Duplicated.Add(1)
		if r2, b2, err := p.forward(r, body); err == nil {
			resp, rb = r2, b2
		}
	case 0:
		p.Faults.Passed.Add(1)
	}
	if p.CutEvery > 0 && len(rb) > p.CutEvery {
		p.wait(p.CutEvery, false)
		p.Faults.CutAfter.Add(1)
		cut(w)
		return
	}
	p.wait(len(rb), true)
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(rb)
}

// wait sleeps for n bytes at the link's bandwidth, plus half the round trip
// when withLatency.
func (p *Proxy) wait(n int, withLatency bool) {
	var d time.Duration
	if withLatency {
		d += p.Latency / 2
	}
	if p.Bandwidth > 0 {
		d += time.Duration(int64(n) * int64(time.Second) / int64(p.Bandwidth))
	}
	if d > 0 {
		time.Sleep(d)
	}
}
