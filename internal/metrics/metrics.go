// Package metrics is fieldsync's Prometheus instrumentation: requests and
// latency by route and status, push results by outcome, conflicts by
// collection and rule, pull lag, and the database pool. It owns the
// registry; the HTTP layer and the sync service report to it through small
// interfaces of their own, and GET /metrics serves it.
package metrics

import (
	"database/sql"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the collectors of one server process.
type Metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	pushed    *prometheus.CounterVec
	conflicts *prometheus.CounterVec
	pullLag   prometheus.Histogram
	pulled    prometheus.Counter
}

// New registers fieldsync's collectors, the Go runtime's and the process's,
// and, when db is not nil, the connection pool's.
func New(db *sql.DB) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "fieldsync", Name: "http_requests_total",
		Help: "HTTP requests by route (the pattern, not the path), method and status.",
	}, []string{"route", "method", "status"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "fieldsync", Name: "http_request_duration_seconds",
		Help:    "Time to answer a request, by route and method.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"route", "method"})
	m.pushed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "fieldsync", Name: "push_changes_total",
		Help: "Changes answered by push, by outcome (applied, merged, duplicate, stale, rejected).",
	}, []string{"outcome"})
	m.conflicts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "fieldsync", Name: "conflicts_reported_total",
		Help: "Conflict reports written (a field opened or updated for review), by collection and rule.",
	}, []string{"collection", "rule"})
	m.pullLag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "fieldsync", Name: "pull_lag_seconds",
		Help:    "For each pull page with records: how long ago the oldest record in it was written; how far behind the feed the puller is.",
		Buckets: prometheus.ExponentialBuckets(0.01, 4, 12), // 10 ms to ~48 days
	})
	m.pulled = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "fieldsync", Name: "pull_records_total", Help: "Records served by pulls.",
	})
	m.reg.MustRegister(m.requests, m.latency, m.pushed, m.conflicts, m.pullLag, m.pulled,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if db != nil {
		m.reg.MustRegister(collectors.NewDBStatsCollector(db, "fieldsync"))
	}
	return m
}

// ObserveRequest counts one answered request.
func (m *Metrics) ObserveRequest(route, method string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route, method).Observe(d.Seconds())
}

// ObservePush counts one change's outcome.
func (m *Metrics) ObservePush(outcome string) { m.pushed.WithLabelValues(outcome).Inc() }

// ObserveConflict counts one conflict report.
func (m *Metrics) ObserveConflict(collection, rule string) {
	m.conflicts.WithLabelValues(collection, rule).Inc()
}

// ObservePull records a pull page: how many records, and the age of the
// oldest (zero when the page is empty).
func (m *Metrics) ObservePull(records int, oldest time.Duration) {
	m.pulled.Add(float64(records))
	if records > 0 {
		m.pullLag.Observe(oldest.Seconds())
	}
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
