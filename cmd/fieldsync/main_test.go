package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/internal/api"
	"github.com/fieldsync/fieldsync/internal/auth"
	"github.com/fieldsync/fieldsync/internal/config"
	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/internal/store"
	"github.com/fieldsync/fieldsync/internal/store/dbtest"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// spec validates every response the end-to-end tests get against
// openapi.yaml, statuses included.
type spec struct {
	router routers.Router
}

func loadSpec(t *testing.T) *spec {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(fieldsync.OpenAPI)
	if err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not valid: %v", err)
	}
	doc.Servers = nil // match any host
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &spec{router: r}
}

// check validates one exchange; body is the response body already read.
func (s *spec) check(t *testing.T, req *http.Request, reqBody []byte, resp *http.Response, body []byte) {
	t.Helper()
	r := req.Clone(context.Background())
	r.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := s.router.FindRoute(r)
	if err != nil {
		t.Fatalf("%s %s is not in openapi.yaml: %v", req.Method, req.URL.Path, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body:    io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Fatalf("%s %s -> %d does not match openapi.yaml: %v\n%s", req.Method, req.URL.Path, resp.StatusCode, err, body)
	}
}

type client struct {
	t     *testing.T
	base  string
	token string
	spec  *spec
}

func (c *client) do(method, path string, body []byte, header map[string]string) (int, []byte) {
	c.t.Helper()
	resp, out := c.doHeaders(method, path, body, header)
	return resp.StatusCode, out
}

// doFull is do returning the whole response (headers included).
func (c *client) doFull(method, path string, body []byte) (*http.Response, []byte) {
	c.t.Helper()
	return c.doHeaders(method, path, body, nil)
}

func (c *client) doHeaders(method, path string, body []byte, header map[string]string) (*http.Response, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.spec != nil {
		c.spec.check(c.t, req, body, resp, out)
	}
	return resp, out
}

// startMain runs a Main in this process on 127.0.0.1:0.
func startMain(t *testing.T, cfg config.Config, stdout io.Writer) (string, context.CancelFunc, <-chan error) {
	t.Helper()
	return startMainLogging(t, cfg, stdout, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// startMainLogging is startMain with the caller's logger.
func startMainLogging(t *testing.T, cfg config.Config, stdout io.Writer, log *slog.Logger) (string, context.CancelFunc, <-chan error) {
	t.Helper()
	started := make(chan string, 1)
	m := &Main{Config: cfg, Stdout: stdout, Logger: log, Started: started}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	select {
	case addr := <-started:
		return "http://" + addr, cancel, done
	case err := <-done:
		cancel()
		t.Fatalf("serve: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("serve did not start in 30 s")
	}
	return "", cancel, done
}

func TestServeDevPushPullOverHTTP(t *testing.T) {
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.DatabaseURL = filepath.Join(t.TempDir(), "fieldsync.db")
	cfg.Dev = true
	var out syncBuffer
	base, stop, done := startMain(t, cfg, &out)
	token := ""
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "export TOKEN=") {
			token = strings.TrimPrefix(line, "export TOKEN=")
		}
	}
	if token == "" {
		t.Fatalf("serve --dev printed no token:\n%s", out.String())
	}
	c := &client{t: t, base: base, token: token, spec: loadSpec(t)}

	if code, _ := c.do("GET", "/healthz", nil, nil); code != 200 {
		t.Fatalf("healthz = %d", code)
	}
	if code, _ := c.do("GET", "/readyz", nil, nil); code != 200 {
		t.Fatalf("readyz = %d", code)
	}
	push := []byte(`{"changes":[{"change_id":"e2e-1","collection":"patrol_logs","id":"0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11",
		"vv":{"dev-demo":1},"hlc":"1764300000000-0-dev-demo","fields":{"unit":"KEN-3","status":"active","route":"RN1 north"}},
		{"change_id":"e2e-2","collection":"corridors","id":"rn1-north","vv":{"dev-demo":1},"hlc":"1764300000001-0-dev-demo",
		"fields":{"status":"closed","verified_at":"2026-01-01T00:00:00Z"}},
		{"change_id":"e2e-3","collection":"patrol_logs","id":"bad","vv":{"dev-demo":1},"hlc":"1764300000002-0-dev-demo","fields":{"colour":"red"}}]}`)
	code, body := c.do("POST", "/v1/sync/push", push, nil)
	if code != 200 {
		t.Fatalf("push = %d %s", code, body)
	}
	var pr struct {
		Results []struct {
			Status string          `json:"status"`
			Code   string          `json:"code"`
			Record json.RawMessage `json:"record"`
		} `json:"results"`
	}
	if err := json.Unmarshal(body, &pr); err != nil {
		t.Fatal(err)
	}
	if len(pr.Results) != 3 || pr.Results[0].Status != "applied" || pr.Results[1].Status != "applied" ||
		pr.Results[2].Status != "rejected" || pr.Results[2].Code != "unknown_field" {
		t.Fatalf("push results = %s", body)
	}
	if !bytes.Contains(pr.Results[1].Record, []byte(`"stale":true`)) {
		t.Fatalf("a corridor verified months ago must read stale: %s", pr.Results[1].Record)
	}
	// The same batch, gzip-compressed, is a pure replay.
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	_, _ = w.Write(push)
	_ = w.Close()
	code, body = c.do("POST", "/v1/sync/push", gz.Bytes(), map[string]string{"Content-Encoding": "gzip"})
	if code != 200 || strings.Count(string(body), `"duplicate"`) != 2 {
		t.Fatalf("replayed push = %d %s", code, body)
	}
	code, body = c.do("GET", "/v1/sync/pull?limit=1", nil, nil)
	var pull struct {
		Records []json.RawMessage `json:"records"`
		Cursor  string            `json:"cursor"`
		HasMore bool              `json:"has_more"`
	}
	if err := json.Unmarshal(body, &pull); code != 200 || err != nil || len(pull.Records) != 1 || !pull.HasMore {
		t.Fatalf("first pull page = %d %s", code, body)
	}
	code, body = c.do("GET", "/v1/sync/pull?limit=1&cursor="+pull.Cursor, nil, nil)
	if err := json.Unmarshal(body, &pull); code != 200 || err != nil || len(pull.Records) != 1 || pull.HasMore {
		t.Fatalf("second pull page = %d %s", code, body)
	}
	// Every class of bad input: a problem with its code, and the data set
	// exactly as it was.
	_, before := c.do("GET", "/v1/sync/pull?limit=1000", nil, nil)
	var bomb bytes.Buffer
	bw := gzip.NewWriter(&bomb)
	_, _ = bw.Write([]byte(`{"changes":[`))
	_, _ = bw.Write(make([]byte, 16<<20)) // 16 MiB of zeros inflate past the 4 MiB limit
	_ = bw.Close()
	many := `{"changes":[` + strings.TrimSuffix(strings.Repeat(`{"change_id":"m","collection":"corridors","id":"x","vv":{"dev-demo":9},"hlc":"1-0-dev-demo","fields":{}},`, 501), ",") + `]}`
	noID := []byte(`{"changes":[{"change_id":"ok-1","collection":"corridors","id":"rn9","vv":{"dev-demo":1},"hlc":"1764300000000-0-dev-demo","fields":{"status":"open"}},{"collection":"corridors","id":"rn9"}]}`)
	for _, bad := range []struct {
		name         string
		method, path string
		body         []byte
		header       map[string]string
		status       int
		code         string
	}{
		{"bad cursor", "GET", "/v1/sync/pull?cursor=%21%21", nil, nil, 400, "invalid_cursor"},
		{"limit too large", "GET", "/v1/sync/pull?limit=5000", nil, nil, 400, "invalid_parameter"},
		{"unknown collection", "GET", "/v1/sync/pull?collections=secrets", nil, nil, 400, "invalid_parameter"},
		{"truncated JSON", "POST", "/v1/sync/push", []byte(`{"changes":[`), nil, 400, "invalid_json"},
		{"unknown member", "POST", "/v1/sync/push", []byte(`{"changes":[],"extra":1}`), nil, 400, "invalid_json"},
		{"wrong type", "POST", "/v1/sync/push", []byte(`{"changes":{"a":1}}`), nil, 400, "invalid_json"},
		{"not JSON", "POST", "/v1/sync/push", []byte(`changes=1`), map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"},
		{"unknown encoding", "POST", "/v1/sync/push", []byte(`{"changes":[]}`), map[string]string{"Content-Encoding": "br"}, 415, "unsupported_media_type"},
		{"bad gzip", "POST", "/v1/sync/push", []byte("not gzip at all"), map[string]string{"Content-Encoding": "gzip"}, 400, "invalid_gzip"},
		{"gzip bomb", "POST", "/v1/sync/push", bomb.Bytes(), map[string]string{"Content-Encoding": "gzip"}, 413, "body_too_large"},
		{"too many changes", "POST", "/v1/sync/push", []byte(many), nil, 413, "too_many_changes"},
		{"a change without id", "POST", "/v1/sync/push", noID, nil, 422, "invalid_change_id"},
	} {
		code, body := c.do(bad.method, bad.path, bad.body, bad.header)
		if code != bad.status || !bytes.Contains(body, []byte(`"code":"`+bad.code+`"`)) {
			t.Fatalf("%s: %s %s = %d %s, want %d %s", bad.name, bad.method, bad.path, code, body, bad.status, bad.code)
		}
	}
	if _, after := c.do("GET", "/v1/sync/pull?limit=1000", nil, nil); !bytes.Equal(recordsOf(t, before), recordsOf(t, after)) {
		t.Fatalf("bad input changed the data:\nbefore %s\nafter  %s", before, after)
	}
	anon := &client{t: t, base: base, spec: c.spec}
	if code, _ := anon.do("GET", "/v1/sync/pull", nil, nil); code != 401 {
		t.Fatalf("pull without a token = %d, want 401", code)
	}
	if code, body := anon.do("GET", "/openapi.yaml", nil, nil); code != 200 || !bytes.Equal(body, fieldsync.OpenAPI) {
		t.Fatalf("openapi.yaml = %d", code)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run after shutdown: %v", err)
	}
}

// The dev token must never reach the log.
func TestTheDevTokenIsPrintedNotLogged(t *testing.T) {
	var logs, out syncBuffer
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.DatabaseURL = filepath.Join(t.TempDir(), "fieldsync.db")
	cfg.Dev = true
	started := make(chan string, 1)
	m := &Main{Config: cfg, Stdout: &out, Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Started: started}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	token := ""
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "export TOKEN=") {
			token = strings.TrimPrefix(line, "export TOKEN=")
		}
	}
	if token == "" || strings.Contains(logs.String(), token) || strings.Contains(logs.String(), "eyJ") {
		t.Fatalf("token missing from stdout or present in the log:\n%s", logs.String())
	}
}

// recordsOf returns the "records" member of a pull response.
func recordsOf(t *testing.T, body []byte) []byte {
	t.Helper()
	var page struct {
		Records json.RawMessage `json:"records"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatalf("pull response: %v", err)
	}
	return page.Records
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Three fieldsync serve processes on one PostgreSQL database, pushers on
// every instance and a puller hopping between them: every record any
// instance acknowledged is pulled, none twice-missing.
func TestThreeServersOnOnePostgreSQLMissNoChange(t *testing.T) {
	u, ok := dbtest.PostgresURL(t)
	if !ok {
		t.Skip(dbtest.EnvURL + " is not set: the PostgreSQL suite runs in CI")
	}
	ctx := context.Background()
	// Migrate and create the signing key first, as an administrator would,
	// so the three instances start on one key.
	s, err := store.Open(ctx, u, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	ring, err := auth.NewKeyring(ctx, s, auth.Config{Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience})
	if err != nil {
		t.Fatal(err)
	}
	if err := ring.EnsureSigningKey(ctx); err != nil {
		t.Fatal(err)
	}

	bin := filepath.Join(t.TempDir(), "fieldsync")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var bases []string
	for i := 0; i < 3; i++ {
		cmd := exec.Command(bin, "serve", "-addr", "127.0.0.1:0", "-log-format", "json")
		cmd.Env = append(os.Environ(), "FIELDSYNC_DATABASE_URL="+u, "FIELDSYNC_DB_MAX_CONNS=8")
		stderr, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		addr := make(chan string, 1)
		go func() {
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				var line struct {
					Msg  string `json:"msg"`
					Addr string `json:"addr"`
				}
				if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "fieldsync serving" {
					addr <- line.Addr
				}
			}
		}()
		select {
		case a := <-addr:
			bases = append(bases, "http://"+a)
		case <-time.After(60 * time.Second):
			t.Fatalf("instance %d did not start", i)
		}
	}

	const pushers, batches, perBatch = 6, 10, 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	committed := map[string]bool{}
	errs := make(chan error, pushers)
	devTokens := make([]string, pushers)
	for p := 0; p < pushers; p++ {
		node := fmt.Sprintf("dev-%d", p)
		tok, err := ring.Issue(domain.Identity{Subject: node, Role: domain.RoleDevice, Unit: "KEN-3", Contingent: "KEN"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		devTokens[p] = tok
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for b := 0; b < batches; b++ {
				var chs []string
				var ids []string
				for i := 0; i < perBatch; i++ {
					id := fmt.Sprintf("log-%d-%d-%d", p, b, i)
					ids = append(ids, id)
					chs = append(chs, fmt.Sprintf(`{"change_id":"c-%s","collection":"patrol_logs","id":"%s","vv":{"%s":1},"hlc":"%d-0-%s","fields":{"unit":"KEN-3","status":"active"}}`,
						id, id, node, time.Now().UnixMilli(), node))
				}
				// Every batch also edits one shared corridor, so pushes on
				// different instances contend for the same record.
				chs = append(chs, fmt.Sprintf(`{"change_id":"s-%d-%d","collection":"corridors","id":"shared-%d","vv":{"%s":%d},"hlc":"%d-0-%s","fields":{"status":"restricted"}}`,
					p, b, b%2, node, b/2+1, time.Now().UnixMilli(), node))
				body := `{"changes":[` + strings.Join(chs, ",") + `]}`
				base := bases[(p+b)%len(bases)]
				req, _ := http.NewRequest("POST", base+"/v1/sync/push", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+tok)
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					return
				}
				out, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || strings.Count(string(out), `"applied"`)+strings.Count(string(out), `"merged"`) != perBatch+1 {
					errs <- fmt.Errorf("push to %s: %d %s", base, resp.StatusCode, out)
					return
				}
				mu.Lock()
				for _, id := range ids {
					committed[id] = true
				}
				mu.Unlock()
			}
		}(p)
	}
	admin, err := ring.Issue(domain.Identity{Subject: "admin-1", Role: domain.RoleAdmin}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pulled := map[string]bool{}
	cursor := ""
	pullOnce := func(i int) bool {
		base := bases[i%len(bases)]
		req, _ := http.NewRequest("GET", base+"/v1/sync/pull?limit=45&collections=patrol_logs&cursor="+cursor, nil)
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var page struct {
			Records []struct {
				ID string `json:"id"`
			} `json:"records"`
			Cursor  string `json:"cursor"`
			HasMore bool   `json:"has_more"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&page); err != nil || resp.StatusCode != 200 {
			t.Fatalf("pull from %s: %d %v", base, resp.StatusCode, err)
		}
		for _, r := range page.Records {
			pulled[r.ID] = true
		}
		cursor = page.Cursor
		return page.HasMore
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	i := 0
	for running := true; running; i++ {
		select {
		case <-done:
			running = false
		default:
			pullOnce(i)
		}
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for pullOnce(i) {
		i++
	}
	for id := range committed {
		if !pulled[id] {
			t.Errorf("acknowledged record %s was never pulled", id)
		}
	}
	if len(committed) != pushers*batches*perBatch || len(pulled) != len(committed) {
		t.Fatalf("acknowledged %d, pulled %d, want %d each", len(committed), len(pulled), pushers*batches*perBatch)
	}
	// No lost update on the contended corridors: each holds every
	// pusher's last counter.
	s2, err := store.Open(ctx, u, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for k := 0; k < 2; k++ {
		sr, err := s2.Get(ctx, domain.Key{Collection: "corridors", ID: fmt.Sprintf("shared-%d", k)})
		if err != nil || sr == nil {
			t.Fatalf("shared-%d: %v", k, err)
		}
		for p := 0; p < pushers; p++ {
			if got := sr.Record.VV.Get(vv.NodeID(fmt.Sprintf("dev-%d", p))); got != batches/2 {
				t.Fatalf("shared-%d holds dev-%d at %d, want %d: an update was lost", k, p, got, batches/2)
			}
		}
	}
	t.Logf("%d records over 3 instances, %d pulls", len(committed), i)

	// Revoking a device on one instance stops it on all three within a
	// second.
	req, _ := http.NewRequest("POST", bases[0]+"/v1/devices/dev-0/revoke", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("revoke dev-0 = %d", resp.StatusCode)
	}
	revokedAt := time.Now()
	for k, base := range bases {
		for {
			req, _ := http.NewRequest("GET", base+"/v1/sync/pull?limit=1", nil)
			req.Header.Set("Authorization", "Bearer "+devTokens[0])
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode == 401 {
				break
			}
			if time.Since(revokedAt) > time.Second {
				t.Fatalf("instance %d still serves the revoked device after 1 s (%d)", k, resp.StatusCode)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("all three instances refused the revoked device within %v", time.Since(revokedAt).Round(time.Millisecond))
}

// Every route the server registers is in openapi.yaml, and every path of
// openapi.yaml is served.
func TestEveryRouteIsInTheSpec(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(fieldsync.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, r := range api.Routes() {
		served[r.Method+" "+r.Path] = true
		item := doc.Paths.Find(r.Path)
		if item == nil || item.GetOperation(r.Method) == nil {
			t.Errorf("%s %s is served but missing from openapi.yaml", r.Method, r.Path)
		}
	}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if !served[method+" "+path] {
				t.Errorf("openapi.yaml describes %s %s, which the server does not serve", method, path)
			}
		}
	}
}
