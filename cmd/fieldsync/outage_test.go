package main

import (
	"bytes"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/config"
	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/internal/store/dbtest"
)

// flakyProxy forwards TCP to a target and can be switched off (every
// connection cut, new ones closed at once) and on again: a database that
// restarts or a network that drops, without touching the real server.
type flakyProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  []net.Conn
}

func newFlakyProxy(t *testing.T, target string) *flakyProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &flakyProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.setDown(true) })
	go p.serve()
	return p
}

func (p *flakyProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); up.Close() }()
		go func() { _, _ = io.Copy(c, up); c.Close() }()
	}
}

func (p *flakyProxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}

// The database going away gives 503 with Retry-After (never a 500), and
// the server serves again by itself when it is back.
func TestDatabaseOutageIs503AndRecovers(t *testing.T) {
	u, ok := dbtest.PostgresURL(t)
	if !ok {
		t.Skip(dbtest.EnvURL + " is not set: the PostgreSQL suite runs in CI")
	}
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newFlakyProxy(t, pu.Host)
	pu.Host = proxy.ln.Addr().String()
	q := pu.Query()
	q.Set("connect_timeout", "2")
	pu.RawQuery = q.Encode()

	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.DatabaseURL = pu.String()
	cfg.Dev = true
	var out syncBuffer
	base, stop, done := startMain(t, cfg, &out)
	defer func() { stop(); <-done }()
	c := &client{t: t, base: base, token: devToken(t, out.String()), spec: loadSpec(t)}

	body := func(id string, n int) []byte {
		return []byte(`{"changes":[{"change_id":"` + id + `","collection":"corridors","id":"rn1","vv":{"dev-demo":` +
			string(rune('0'+n)) + `},"hlc":"1764300000000-` + string(rune('0'+n)) + `-dev-demo","fields":{"status":"open"}}]}`)
	}
	if code, b := c.do("POST", "/v1/sync/push", body("o1", 1), nil); code != 200 {
		t.Fatalf("push before the outage = %d %s", code, b)
	}

	proxy.setDown(true)
	for _, probe := range []struct{ method, path string }{{"POST", "/v1/sync/push"}, {"GET", "/v1/sync/pull"}, {"GET", "/readyz"}} {
		var req []byte
		if probe.method == "POST" {
			req = body("o2", 2)
		}
		resp, b := c.doFull(probe.method, probe.path, req)
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !bytes.Contains(b, []byte(`"code":"unavailable"`)) {
			t.Fatalf("%s %s during the outage = %d (Retry-After %q) %s, want 503 unavailable", probe.method, probe.path, resp.StatusCode, resp.Header.Get("Retry-After"), b)
		}
	}
	if code, _ := c.do("GET", "/healthz", nil, nil); code != 200 {
		t.Fatalf("healthz during the outage = %d: the process is alive", code)
	}

	proxy.setDown(false)
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, b := c.doFull("POST", "/v1/sync/push", body("o2", 2))
		if resp.StatusCode == 200 {
			if !strings.Contains(string(b), `"applied"`) {
				t.Fatalf("push after the outage: %s", b)
			}
			break
		}
		if resp.StatusCode != 503 || time.Now().After(deadline) {
			t.Fatalf("push after the outage = %d %s", resp.StatusCode, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// /readyz fails while the schema is behind the binary, and passes once it
// is migrated.
func TestReadyzFailsWhileTheSchemaIsBehind(t *testing.T) {
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.DatabaseURL = filepath.Join(t.TempDir(), "fieldsync.db")
	cfg.AutoMigrate = false
	m := &Main{Config: cfg, Stdout: io.Discard}
	if err := m.open(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer m.store.Close()
	ready := m.ready()
	if err := ready(t.Context()); domain.ErrorCode(err) != domain.CodeNotReady {
		t.Fatalf("ready on an unmigrated database = %v, want not_ready", err)
	}
	// serve without auto-migrate refuses to start on it rather than serve
	// half-ready.
	if err := (&Main{Config: cfg, Stdout: io.Discard}).Run(t.Context()); err == nil {
		t.Fatal("serve on an unmigrated database without auto-migrate started")
	}
	if _, err := m.store.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := ready(t.Context()); err != nil {
		t.Fatalf("ready after migrate = %v", err)
	}
	base, stop, done := startMain(t, cfg, io.Discard)
	defer func() { stop(); <-done }()
	c := &client{t: t, base: base, spec: loadSpec(t)}
	if code, b := c.do("GET", "/readyz", nil, nil); code != 200 {
		t.Fatalf("readyz after migrate = %d %s", code, b)
	}
}

func devToken(t *testing.T, stdout string) string {
	t.Helper()
	for _, line := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(line, "export TOKEN=") {
			return strings.TrimPrefix(line, "export TOKEN=")
		}
	}
	t.Fatalf("serve --dev printed no token:\n%s", stdout)
	return ""
}
