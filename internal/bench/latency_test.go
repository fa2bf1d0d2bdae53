package bench_test

import (
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/bench"
)

// TestBenchLatencyNearestRank pins the percentiles the reports print: the
// nearest rank, always a latency some request had.
func TestBenchLatencyNearestRank(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // unsorted on purpose
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		want bench.Latency
	}{
		{"empty is all zeros", nil, bench.Latency{}},
		{"one request is every percentile", ms(7), bench.Latency{Count: 1, P50Ms: 7, P99Ms: 7, MaxMs: 7}},
		{"two requests: the median is the lower", ms(9, 3), bench.Latency{Count: 2, P50Ms: 3, P99Ms: 9, MaxMs: 9}},
		{"a hundred requests: p99 is the 99th", ms(hundred...), bench.Latency{Count: 100, P50Ms: 50, P99Ms: 99, MaxMs: 100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := bench.Summarize(tc.in); got != tc.want {
				t.Errorf("Summarize = %+v, want %+v", got, tc.want)
			}
		})
	}
}
