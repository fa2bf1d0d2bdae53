package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/internal/config"
)

// A partner whose token allows it posts corridor observations, and nothing
// else; a partner without that permission posts nothing.
func TestPartnerCorridorObservationsOnlyWhereTheTokenAllows(t *testing.T) {
	db, env := preparedDB(t)
	observer, err := runCLI(t, env, "token", "-role", "partner", "-sub", "agency-obs-1", "-observe")
	if err != nil {
		t.Fatal(err)
	}
	reader, err := runCLI(t, env, "token", "-role", "partner", "-sub", "agency-read-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, env, "token", "-role", "supervisor", "-sub", "sup-1", "-observe"); err == nil {
		t.Fatal("a supervisor token with -observe was minted")
	}
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.DatabaseURL = db
	base, stop, done := startMain(t, cfg, &syncBuffer{})
	defer func() { stop(); <-done }()
	spec := loadSpec(t)
	obs := &client{t: t, base: base, spec: spec, token: strings.TrimSpace(observer)}
	body := []byte(`{"changes":[
		{"change_id":"o1","collection":"corridors","id":"rn1","vv":{"agency-obs-1":1},"hlc":"1764300000000-0-agency-obs-1","fields":{"status":"closed","reason":"roadblock at km 12","verified_at":"2026-11-28T06:00:00Z"}},
		{"change_id":"o2","collection":"corridors","id":"rn1","vv":{"agency-obs-1":2},"hlc":"1764300000001-0-agency-obs-1","fields":{"notes":"internal"}},
		{"change_id":"o3","collection":"patrol_logs","id":"log-1","vv":{"agency-obs-1":1},"hlc":"1764300000002-0-agency-obs-1","fields":{"unit":"KEN-3","status":"active"}},
		{"change_id":"o4","collection":"corridors","id":"rn2","vv":{"dev-x":1},"hlc":"1764300000003-0-dev-x","fields":{"status":"open"}}]}`)
	status, out := obs.do("POST", "/v1/sync/push", body, nil)
	if status != 200 {
		t.Fatalf("observation push = %d %s", status, out)
	}
	for _, want := range []string{`"change_id":"o1","status":"applied"`, `"change_id":"o2","status":"rejected"`, `"change_id":"o3","status":"rejected"`, `"change_id":"o4","status":"rejected"`} {
		if !bytes.Contains(out, []byte(want)) {
			t.Fatalf("push results lack %s:\n%s", want, out)
		}
	}
	if !bytes.Contains(out, []byte(`"code":"out_of_scope"`)) || !bytes.Contains(out, []byte(`"code":"invalid_hlc"`)) {
		t.Fatalf("internal fields and patrol logs are out of scope, another node's stamp invalid:\n%s", out)
	}
	rd := &client{t: t, base: base, spec: spec, token: strings.TrimSpace(reader)}
	if status, _ := rd.do("POST", "/v1/sync/push", body, nil); status != 403 {
		t.Fatalf("a partner without -observe pushing = %d, want 403", status)
	}
	if status, out := rd.do("GET", "/v1/sync/pull", nil, nil); status != 200 || !bytes.Contains(out, []byte(`"roadblock at km 12"`)) {
		t.Fatalf("the observation in the partner feed: %d %s", status, out)
	}
}
