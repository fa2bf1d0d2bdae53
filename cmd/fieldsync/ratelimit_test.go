package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/config"
)

// A device's rate limit holds across instances: two servers on one
// database share the count.
func TestRateLimitHoldsAcrossInstances(t *testing.T) {
	db, env := preparedDB(t)
	tok, err := runCLI(t, env, "token", "-role", "device", "-sub", "dev-rl", "-unit", "KEN-3", "-contingent", "KEN")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.DatabaseURL = db
	cfg.RateLimitDevice = 5
	spec := loadSpec(t)
	var clients []*client
	for i := 0; i < 2; i++ {
		base, stop, done := startMain(t, cfg, io.Discard)
		defer func() { stop(); <-done }()
		clients = append(clients, &client{t: t, base: base, spec: spec, token: strings.TrimSpace(tok)})
	}
	// Windows are whole minutes: start clear of a boundary so that all the
	// requests below fall in one window.
	if s := time.Now().Second(); s >= 55 {
		time.Sleep(time.Duration(61-s) * time.Second)
	}
	for i := 0; i < 5; i++ {
		if status, body := clients[i%2].do("GET", "/v1/sync/pull", nil, nil); status != 200 {
			t.Fatalf("request %d = %d %s, want 200 within the limit", i+1, status, body)
		}
	}
	for i := 0; i < 2; i++ {
		resp, body := clients[i%2].doFull("GET", "/v1/sync/pull", nil)
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || !bytes.Contains(body, []byte(`"code":"rate_limited"`)) {
			t.Fatalf("request over the shared limit on instance %d = %d (Retry-After %q) %s", i, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	// Another device has its own count.
	other, err := runCLI(t, env, "token", "-role", "device", "-sub", "dev-other", "-unit", "KEN-3", "-contingent", "KEN")
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, base: clients[0].base, spec: spec, token: strings.TrimSpace(other)}
	if status, _ := c.do("GET", "/v1/sync/pull", nil, nil); status != 200 {
		t.Fatalf("another device = %d, want 200", status)
	}
}
