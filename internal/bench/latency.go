package bench

import (
	"slices"
	"sync"
	"time"
)

// Latency summarises the durations of one request type.
type Latency struct {
	Count int     `json:"count"`
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
}

// recorder collects request durations by request type; safe for concurrent
// use.
type recorder struct {
	mu   sync.Mutex
	durs map[string][]time.Duration
}

func newRecorder() *recorder { return &recorder{durs: make(map[string][]time.Duration)} }

func (r *recorder) add(kind string, d time.Duration) {
	r.mu.Lock()
	r.durs[kind] = append(r.durs[kind], d)
	r.mu.Unlock()
}

// summary returns the latency of every request type recorded.
func (r *recorder) summary() map[string]Latency {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]Latency, len(r.durs))
	for k, ds := range r.durs {
		out[k] = Summarize(ds)
	}
	return out
}

// Summarize returns the count, median, 99th percentile and maximum of ds
// (nearest-rank percentiles: the value below which that share of the
// requests fall, never an interpolation between two requests).
func Summarize(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return Latency{Count: len(s), P50Ms: ms(rank(s, 0.50)), P99Ms: ms(rank(s, 0.99)), MaxMs: ms(s[len(s)-1])}
}

// rank returns the nearest-rank q-quantile of sorted s.
func rank(s []time.Duration, q float64) time.Duration {
	i := int(float64(len(s))*q+0.999999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}
