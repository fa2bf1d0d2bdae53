package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/internal/config"
)

// GET /metrics after real traffic: requests by route pattern and status,
// push outcomes, conflicts by collection and rule, pull lag, the database
// pool; never a record id or a token.
func TestMetricsReportTheTrafficAnAdministratorNeeds(t *testing.T) {
	w := newReviewWorld(t)
	a := w.device("dev-a", "KEN-1", "KEN")
	b := w.device("dev-b", "KEN-1", "KEN")
	w.edit(a, "patrol_logs", kenLog, map[string]string{"unit": "KEN-1", "status": "active"})
	w.sync(a, b)
	w.edit(a, "patrol_logs", kenLog, map[string]string{"route": "RN1 north"})
	w.edit(b, "patrol_logs", kenLog, map[string]string{"route": "RN1 south"})
	w.sync(a, b)
	sup := w.as("-role", "supervisor", "-sub", "sup-ken", "-contingent", "KEN")
	sup.do("GET", "/v1/records/patrol_logs/"+kenLog+"/history", nil, nil)
	admin := w.as("-role", "admin", "-sub", "prometheus")
	status, body := admin.do("GET", "/metrics", nil, nil)
	if status != 200 {
		t.Fatalf("metrics = %d %s", status, body)
	}
	for _, want := range []string{
		`fieldsync_http_requests_total{method="POST",route="/v1/sync/push",status="200"}`,
		`fieldsync_http_requests_total{method="GET",route="/v1/records/:collection/:id/history",status="200"}`,
		`fieldsync_http_request_duration_seconds_bucket{method="GET",route="/v1/sync/pull",le=`,
		`fieldsync_push_changes_total{outcome="applied"} 2`,
		`fieldsync_push_changes_total{outcome="merged"} 1`,
		`fieldsync_conflicts_reported_total{collection="patrol_logs",rule="later_hlc"} 1`,
		`fieldsync_pull_lag_seconds_count`,
		`fieldsync_pull_records_total`,
		`go_sql_open_connections{db_name="fieldsync"}`,
		`process_resident_memory_bytes`,
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, secret := range []string{kenLog, admin.token, sup.token, "dev-a"} {
		if bytes.Contains(body, []byte(secret)) {
			t.Errorf("metrics carry %q", secret)
		}
	}
	if t.Failed() {
		t.Logf("%s", body)
	}
}

// Profiles are served only on loopback, and only when the operator asks.
func TestPprofOnlyOnLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{"127.0.0.1:6060": true, "localhost:6060": true, "[::1]:6060": true,
		"0.0.0.0:6060": false, ":6060": false, "10.0.0.5:6060": false, "example.org:6060": false} {
		cfg := config.Default()
		cfg.PprofAddr = addr
		err := cfg.Validate()
		if (err == nil) != ok {
			t.Errorf("pprof-addr %q: validate = %v", addr, err)
		}
		if err != nil && !strings.Contains(err.Error(), "loopback") {
			t.Errorf("pprof-addr %q: the error does not say why: %v", addr, err)
		}
	}
}
