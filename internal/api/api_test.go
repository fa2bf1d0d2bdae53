package api_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/fieldsync/fieldsync/internal/api"
	"github.com/fieldsync/fieldsync/internal/auth"
	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/sync/hlc"
	"github.com/fieldsync/fieldsync/sync/merge"
)

const base = "http://fieldsync.test"

// Tokens the test verifier knows.
const (
	deviceToken     = "tok-device-7Q2"
	supervisorToken = "tok-supervisor"
	outageToken     = "tok-outage" // the verifier cannot decide: 503
)

var device = domain.Identity{Subject: "dev-7Q2", Role: domain.RoleDevice, Unit: "KEN-3", Contingent: "KEN", TokenID: "jti-1"}

// The production verifier fits the interface.
var _ api.Verifier = (*auth.Keyring)(nil)

// verifier stands in for auth.Keyring.
type verifier struct{}

func (verifier) Verify(token string) (domain.Identity, error) {
	switch token {
	case deviceToken:
		return device, nil
	case supervisorToken:
		return domain.Identity{Subject: "sup.alice", Role: domain.RoleSupervisor, Contingent: "KEN"}, nil
	case outageToken:
		return domain.Identity{}, domain.ErrUnavailable
	}
	return domain.Identity{}, domain.Errorf(domain.CodeUnauthorized, "the token is not valid")
}

// syncer is an in-test domain.Syncer: it records what the HTTP layer asked
// of it and answers with push and pull (defaults: one applied result per
// change; an empty page).
type syncer struct {
	mu     sync.Mutex
	pushes []pushCall
	pulls  []domain.PullRequest
	push   func(changes []json.RawMessage) (*domain.PushResponse, error)
	pull   func(req domain.PullRequest) (*domain.PullResponse, error)
}

type pushCall struct {
	id      domain.Identity
	changes []json.RawMessage
}

var serverHLC = hlc.Timestamp{Wall: 1764300300000, Logical: 3, Node: "srv"}

func (s *syncer) Push(_ context.Context, id domain.Identity, changes []json.RawMessage) (*domain.PushResponse, error) {
	s.mu.Lock()
	s.pushes = append(s.pushes, pushCall{id, changes})
	fn := s.push
	s.mu.Unlock()
	if fn != nil {
		return fn(changes)
	}
	resp := &domain.PushResponse{ServerHLC: serverHLC, Results: []domain.PushResult{}}
	for i := range changes {
		resp.Results = append(resp.Results, domain.PushResult{ChangeID: fmt.Sprint(i), Status: merge.Applied})
	}
	return resp, nil
}

func (s *syncer) Pull(_ context.Context, _ domain.Identity, req domain.PullRequest) (*domain.PullResponse, error) {
	s.mu.Lock()
	s.pulls = append(s.pulls, req)
	fn := s.pull
	s.mu.Unlock()
	if fn != nil {
		return fn(req)
	}
	return &domain.PullResponse{Cursor: req.Cursor, ServerHLC: serverHLC, Records: []domain.RecordView{}}, nil
}

func (s *syncer) calls() (pushes []pushCall, pulls []domain.PullRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.pushes), slices.Clone(s.pulls)
}

// syncedBuffer is a log sink safe for the server's goroutines.
type syncedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// env is one app under test with its collaborators.
type env struct {
	app    *fiber.App
	syncer *syncer
	log    *syncedBuffer
	cfg    api.Config
}

// testConfig has small limits so that the limit tests stay fast.
var testConfig = api.Config{BodyLimit: 1 << 20, MaxChanges: 5, PullDefaultLimit: 50, PullMaxLimit: 100}

func newEnv(t *testing.T, deps api.Deps) *env {
	t.Helper()
	e := &env{syncer: &syncer{}, log: &syncedBuffer{}, cfg: testConfig}
	if deps.Syncer == nil {
		deps.Syncer = e.syncer
	}
	if deps.Verifier == nil {
		deps.Verifier = verifier{}
	}
	deps.Logger = slog.New(slog.NewJSONHandler(e.log, nil))
	e.app = api.New(e.cfg, deps)
	return e
}

// do sends req through the app with no test timeout (app.Test's default is
// one second) and returns the response and its body, inflated when the
// server compressed it.
func (e *env) do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := e.app.Test(req, -1)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	var r io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	}
	body, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func request(t *testing.T, method, path string, body []byte, header ...string) *http.Request {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, r)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return req
}

// pushRequest is an authenticated JSON push of body; header adds or
// overrides headers (an empty value deletes one).
func pushRequest(t *testing.T, body []byte, header ...string) *http.Request {
	t.Helper()
	req := request(t, http.MethodPost, "/v1/sync/push", body,
		"Authorization", "Bearer "+deviceToken, "Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	return req
}

func pullRequest(t *testing.T, query string) *http.Request {
	t.Helper()
	return request(t, http.MethodGet, "/v1/sync/pull"+query, nil, "Authorization", "Bearer "+deviceToken)
}

type problemDoc struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	Code      string `json:"code"`
	Instance  string `json:"instance"`
	RequestID string `json:"request_id"`
}

// wantProblem checks that resp is an RFC 9457 problem with status and code.
func wantProblem(t *testing.T, resp *http.Response, body []byte, status int, code string) problemDoc {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status %d, want %d (body %s)", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != api.ContentTypeProblem {
		t.Errorf("Content-Type %q, want %q", ct, api.ContentTypeProblem)
	}
	var p problemDoc
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("problem body %s: %v", body, err)
	}
	if p.Code != code || p.Status != status || p.Type != api.ProblemTypeBase+code {
		t.Errorf("problem code %q status %d type %q, want %q %d %q", p.Code, p.Status, p.Type, code, status, api.ProblemTypeBase+code)
	}
	if p.Title == "" || p.Detail == "" {
		t.Errorf("problem without title or detail: %s", body)
	}
	if p.RequestID == "" || p.RequestID != resp.Header.Get(api.HeaderRequestID) {
		t.Errorf("problem request_id %q, response %s %q", p.RequestID, api.HeaderRequestID, resp.Header.Get(api.HeaderRequestID))
	}
	return p
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// batch is a push body of n changes.
func batch(n int) []byte {
	changes := make([]string, n)
	for i := range changes {
		changes[i] = fmt.Sprintf(`{"change_id":"c%d","collection":"corridors","id":"seg-%d","vv":{"dev-7Q2":1},"hlc":"1764300200000-0-dev-7Q2","fields":{"status":"open"}}`, i, i)
	}
	return []byte(`{"changes":[` + strings.Join(changes, ",") + `]}`)
}

func TestPushRejectsBadInput(t *testing.T) {
	over := testConfig.BodyLimit + 1
	bigJSON := []byte(`{"changes":[` + strings.Repeat(" ", over) + `]}`)
	bomb := gzipped(t, make([]byte, 10<<20))
	if len(bomb) > testConfig.BodyLimit/10 {
		t.Fatalf("the bomb is %d bytes compressed: not a bomb", len(bomb))
	}
	valid := gzipped(t, batch(1))

	cases := []struct {
		name   string
		body   []byte
		header []string
		status int
		code   string
	}{
		{"text/plain is unsupported", batch(1), []string{"Content-Type", "text/plain"}, 415, domain.CodeUnsupportedType},
		{"no content type is unsupported", batch(1), []string{"Content-Type", ""}, 415, domain.CodeUnsupportedType},
		{"form encoding is unsupported", batch(1), []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, domain.CodeUnsupportedType},
		{"a latin-1 charset is unsupported", batch(1), []string{"Content-Type", "application/json; charset=iso-8859-1"}, 415, domain.CodeUnsupportedType},
		{"br encoding is unsupported", batch(1), []string{"Content-Encoding", "br"}, 415, domain.CodeUnsupportedType},
		{"compress encoding is unsupported", batch(1), []string{"Content-Encoding", "compress"}, 415, domain.CodeUnsupportedType},
		{"deflate encoding is unsupported", batch(1), []string{"Content-Encoding", "deflate"}, 415, domain.CodeUnsupportedType},
		{"stacked encodings are unsupported", gzipped(t, valid), []string{"Content-Encoding", "gzip, gzip"}, 415, domain.CodeUnsupportedType},
		{"bad gzip is invalid_gzip", []byte("definitely not gzip"), []string{"Content-Encoding", "gzip"}, 400, domain.CodeInvalidGzip},
		{"truncated gzip is invalid_gzip", valid[:len(valid)-6], []string{"Content-Encoding", "gzip"}, 400, domain.CodeInvalidGzip},
		{"an empty gzip body is invalid_gzip", []byte{}, []string{"Content-Encoding", "gzip"}, 400, domain.CodeInvalidGzip},
		{"a gzip bomb is too large", bomb, []string{"Content-Encoding", "gzip"}, 413, domain.CodeBodyTooLarge},
		{"an uncompressed body over the limit is too large", bigJSON, nil, 413, domain.CodeBodyTooLarge},
		{"malformed JSON is invalid_json", []byte(`{"changes":[{"change_id":}]}`), nil, 400, domain.CodeInvalidJSON},
		{"an empty body is invalid_json", []byte{}, nil, 400, domain.CodeInvalidJSON},
		{"a truncated body is invalid_json", batch(2)[:40], nil, 400, domain.CodeInvalidJSON},
		{"an unknown member is invalid_json", []byte(`{"changes":[],"device":"x"}`), nil, 400, domain.CodeInvalidJSON},
		{"a differently cased member is invalid_json", []byte(`{"Changes":[]}`), nil, 400, domain.CodeInvalidJSON},
		{"changes null is invalid_json", []byte(`{"changes":null}`), nil, 400, domain.CodeInvalidJSON},
		{"changes as an object is invalid_json", []byte(`{"changes":{"a":1}}`), nil, 400, domain.CodeInvalidJSON},
		{"missing changes is invalid_json", []byte(`{}`), nil, 400, domain.CodeInvalidJSON},
		{"a top-level array is invalid_json", []byte(`[{"change_id":"c1"}]`), nil, 400, domain.CodeInvalidJSON},
		{"a top-level null is invalid_json", []byte(`null`), nil, 400, domain.CodeInvalidJSON},
		{"changes twice is invalid_json", []byte(`{"changes":[],"changes":[]}`), nil, 400, domain.CodeInvalidJSON},
		{"trailing data is invalid_json", []byte(`{"changes":[]} {"changes":[]}`), nil, 400, domain.CodeInvalidJSON},
		{"gzipped malformed JSON is invalid_json", gzipped(t, []byte(`{"changes":[`)), []string{"Content-Encoding", "gzip"}, 400, domain.CodeInvalidJSON},
		{"too many changes", batch(testConfig.MaxChanges + 1), nil, 413, domain.CodeTooManyChanges},
		{"too many gzipped changes", gzipped(t, batch(testConfig.MaxChanges+1)), []string{"Content-Encoding", "gzip"}, 413, domain.CodeTooManyChanges},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, api.Deps{})
			resp, body := e.do(t, pushRequest(t, tc.body, tc.header...))
			wantProblem(t, resp, body, tc.status, tc.code)
			if pushes, _ := e.syncer.calls(); len(pushes) != 0 {
				t.Errorf("the syncer was called %d times", len(pushes))
			}
			if slices.Contains(tc.header, "Content-Encoding") && tc.status == 415 && resp.Header.Get("Accept-Encoding") != "gzip, identity" {
				t.Errorf("a 415 for an encoding has Accept-Encoding %q", resp.Header.Get("Accept-Encoding"))
			}
		})
	}
}

func TestPushOverWireLimitNeverReachesSyncer(t *testing.T) {
	e := newEnv(t, api.Deps{})
	body := bytes.Repeat([]byte(" "), 2*testConfig.BodyLimit)
	resp, err := e.app.Test(pushRequest(t, body), -1)
	// Under app.Test fasthttp's body-limit error surfaces as a Go error (on
	// a real listener it is a 413 through the error handler).
	if err == nil {
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		wantProblem(t, resp, b, 413, domain.CodeBodyTooLarge)
	}
	if pushes, _ := e.syncer.calls(); len(pushes) != 0 {
		t.Errorf("the syncer was called %d times", len(pushes))
	}
}

func TestPushAcceptsEncodings(t *testing.T) {
	for name, header := range map[string][]string{
		"identity":             {"Content-Encoding", "identity"},
		"no encoding":          nil,
		"gzip":                 {"Content-Encoding", "gzip"},
		"GZIP, any case":       {"Content-Encoding", "GZIP"},
		"x-gzip":               {"Content-Encoding", "x-gzip"},
		"charset utf-8":        {"Content-Type", "application/json; charset=UTF-8"},
		"media type any case ": {"Content-Type", "Application/JSON"},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, api.Deps{})
			body := batch(3)
			if len(header) > 0 && strings.Contains(strings.ToLower(header[1]), "gzip") {
				body = gzipped(t, body)
			}
			resp, b := e.do(t, pushRequest(t, body, header...))
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			pushes, _ := e.syncer.calls()
			if len(pushes) != 1 || len(pushes[0].changes) != 3 {
				t.Fatalf("syncer calls %+v, want one push of 3 changes", pushes)
			}
		})
	}
}

func TestPullRejectsBadInput(t *testing.T) {
	cursor := domain.Cursor{TxID: 9, Seq: 42}.String()
	cases := []struct {
		name, query, code string
	}{
		{"a cursor that does not parse", "?cursor=not-a-cursor", domain.CodeInvalidCursor},
		{"a cursor in another spelling", "?cursor=" + cursor + "%3D%3D", domain.CodeInvalidCursor},
		{"limit zero", "?limit=0", domain.CodeInvalidParam},
		{"a negative limit", "?limit=-1", domain.CodeInvalidParam},
		{"a signed limit", "?limit=%2B10", domain.CodeInvalidParam},
		{"limit over the maximum", fmt.Sprintf("?limit=%d", testConfig.PullMaxLimit+1), domain.CodeInvalidParam},
		{"a huge limit", "?limit=99999999999999999999", domain.CodeInvalidParam},
		{"a limit that is not a number", "?limit=ten", domain.CodeInvalidParam},
		{"an empty limit", "?limit=", domain.CodeInvalidParam},
		{"an unknown collection", "?collections=corridors,secrets", domain.CodeInvalidParam},
		{"empty collections", "?collections=", domain.CodeInvalidParam},
		{"a trailing comma in collections", "?collections=corridors,", domain.CodeInvalidParam},
		{"a space in collections", "?collections=corridors,%20patrol_logs", domain.CodeInvalidParam},
		{"an unknown parameter", "?colections=corridors", domain.CodeInvalidParam},
		{"a parameter given twice", "?limit=5&limit=6", domain.CodeInvalidParam},
	}
	for _, tc := range cases {
		t.Run(tc.name+" is "+tc.code, func(t *testing.T) {
			e := newEnv(t, api.Deps{})
			resp, body := e.do(t, pullRequest(t, tc.query))
			wantProblem(t, resp, body, 400, tc.code)
			if _, pulls := e.syncer.calls(); len(pulls) != 0 {
				t.Errorf("the syncer was called %d times", len(pulls))
			}
		})
	}
}

func TestPullPassesQuery(t *testing.T) {
	cursor := domain.Cursor{TxID: 9, Seq: 42}
	cases := []struct {
		name, query string
		want        domain.PullRequest
	}{
		{"no parameters: start, default limit, all collections", "", domain.PullRequest{Limit: testConfig.PullDefaultLimit}},
		{"an empty cursor is the start", "?cursor=", domain.PullRequest{Limit: testConfig.PullDefaultLimit}},
		{"cursor and limit", "?cursor=" + cursor.String() + "&limit=7", domain.PullRequest{Cursor: cursor, Limit: 7}},
		{"the maximum limit", fmt.Sprintf("?limit=%d", testConfig.PullMaxLimit), domain.PullRequest{Limit: testConfig.PullMaxLimit}},
		{"collections sorted without repeats", "?collections=patrol_logs,corridors,patrol_logs",
			domain.PullRequest{Limit: testConfig.PullDefaultLimit, Collections: []string{domain.Corridors, domain.PatrolLogs}}},
		{"every collection", "?collections=patrol_entries,patrol_logs,corridors",
			domain.PullRequest{Limit: testConfig.PullDefaultLimit, Collections: []string{domain.Corridors, domain.PatrolEntries, domain.PatrolLogs}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, api.Deps{})
			resp, body := e.do(t, pullRequest(t, tc.query))
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			_, pulls := e.syncer.calls()
			if len(pulls) != 1 {
				t.Fatalf("%d pulls, want 1", len(pulls))
			}
			got := pulls[0]
			if got.Cursor != tc.want.Cursor || got.Limit != tc.want.Limit || !slices.Equal(got.Collections, tc.want.Collections) {
				t.Errorf("syncer got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestAuthentication(t *testing.T) {
	routes := []struct{ method, path string }{
		{http.MethodPost, "/v1/sync/push"},
		{http.MethodGet, "/v1/sync/pull"},
	}
	cases := []struct {
		name, authorization string
		status              int
		code                string
	}{
		{"no Authorization header", "", 401, domain.CodeUnauthorized},
		{"a garbage token", "Bearer garbage.token.here", 401, domain.CodeUnauthorized},
		{"another scheme", "Basic " + deviceToken, 401, domain.CodeUnauthorized},
		{"a scheme without token", "Bearer", 401, domain.CodeUnauthorized},
		{"a verifier that cannot decide", "Bearer " + outageToken, 503, domain.CodeUnavailable},
	}
	for _, r := range routes {
		for _, tc := range cases {
			t.Run(r.method+" "+r.path+": "+tc.name, func(t *testing.T) {
				e := newEnv(t, api.Deps{})
				req := request(t, r.method, r.path, batch(1), "Content-Type", "application/json")
				if tc.authorization != "" {
					req.Header.Set("Authorization", tc.authorization)
				}
				resp, body := e.do(t, req)
				wantProblem(t, resp, body, tc.status, tc.code)
				if tc.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("WWW-Authenticate %q, want a Bearer challenge", resp.Header.Get("WWW-Authenticate"))
				}
				if tc.status == 503 && resp.Header.Get("Retry-After") != api.RetryAfterSeconds {
					t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
				}
				if pushes, pulls := e.syncer.calls(); len(pushes)+len(pulls) != 0 {
					t.Error("the syncer was called")
				}
				if strings.Contains(string(body), "garbage.token") || strings.Contains(e.log.String(), "garbage.token") {
					t.Error("the token was echoed or logged")
				}
			})
		}
	}
	t.Run("a good token reaches the syncer as its identity", func(t *testing.T) {
		e := newEnv(t, api.Deps{})
		resp, body := e.do(t, pushRequest(t, batch(1), "Authorization", "bearer "+deviceToken))
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		pushes, _ := e.syncer.calls()
		if len(pushes) != 1 || pushes[0].id != device {
			t.Fatalf("syncer got %+v, want one push as %+v", pushes, device)
		}
	})
}

// record decodes a canonical record.
func record(t *testing.T, s string) *merge.Record {
	t.Helper()
	var r merge.Record
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

const (
	corridorJSON = `{"collection":"corridors","id":"seg-RN1-12","vv":{"dev-7Q2":2,"dev-K81":1},"fields":{"status":"open","verified_at":"2026-11-27T01:00:00Z"},"clocks":{"status":{"hlc":"1764300000000-0-dev-7Q2","dot":2},"verified_at":{"hlc":"1764300000000-0-dev-7Q2","dot":2}},"deleted":false}`
	logJSON      = `{"collection":"patrol_logs","id":"0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11","vv":{"dev-7Q2":5},"fields":{"status":"completed","unit":"KEN-3"},"clocks":{"status":{"hlc":"1764300200000-0-dev-7Q2","dot":5},"unit":{"hlc":"1764300000000-0-dev-7Q2","dot":1}},"deleted":false}`
)

func TestPushRendersResults(t *testing.T) {
	corridor, patrolLog := record(t, corridorJSON), record(t, logJSON)
	e := newEnv(t, api.Deps{})
	e.syncer.push = func(changes []json.RawMessage) (*domain.PushResponse, error) {
		return &domain.PushResponse{ServerHLC: serverHLC, Results: []domain.PushResult{
			{ChangeID: "c0", Status: merge.Merged, Record: &domain.RecordView{Record: corridor, Stale: true}},
			{ChangeID: "c1", Status: merge.Applied, Record: &domain.RecordView{Record: patrolLog}, ClockClamped: true},
			{ChangeID: "c2", Status: merge.Rejected, Code: domain.CodeOutOfScope, Message: `the record "x" is outside your scope`},
		}}, nil
	}
	body := batch(3)
	resp, got := e.do(t, pushRequest(t, gzipped(t, body), "Content-Encoding", "gzip", "Accept-Encoding", "gzip"))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, got)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "gzip" {
		t.Errorf("Content-Encoding %q: a client that accepts gzip gets gzip", ce)
	}
	want := `{"results":[` +
		`{"change_id":"c0","status":"merged","record":` + strings.TrimSuffix(string(corridor.AppendJSON(nil)), "}") + `,"stale":true}},` +
		`{"change_id":"c1","status":"applied","record":` + string(patrolLog.AppendJSON(nil)) + `,"clock_clamped":true},` +
		`{"change_id":"c2","status":"rejected","code":"out_of_scope","message":"the record \"x\" is outside your scope"}` +
		`],"server_hlc":"1764300300000-3-srv"}`
	if string(got) != want {
		t.Errorf("push response\n got %s\nwant %s", got, want)
	}
	if !json.Valid(got) {
		t.Error("the response is not valid JSON")
	}

	// The syncer got the changes exactly as sent, in order.
	pushes, _ := e.syncer.calls()
	if len(pushes) != 1 {
		t.Fatalf("%d pushes", len(pushes))
	}
	var sent struct{ Changes []json.RawMessage }
	if err := json.Unmarshal(body, &sent); err != nil {
		t.Fatal(err)
	}
	if len(pushes[0].changes) != len(sent.Changes) {
		t.Fatalf("syncer got %d changes, want %d", len(pushes[0].changes), len(sent.Changes))
	}
	for i := range sent.Changes {
		if !bytes.Equal(pushes[0].changes[i], sent.Changes[i]) {
			t.Errorf("change %d: syncer got %s, want %s", i, pushes[0].changes[i], sent.Changes[i])
		}
	}
}

// Prefer: return=minimal drops the records of changes applied or merged as
// sent, and only those: a clamped clock, a replay, a rejection keep theirs.
func TestPushReturnMinimal(t *testing.T) {
	corridor, patrolLog := record(t, corridorJSON), record(t, logJSON)
	e := newEnv(t, api.Deps{})
	e.syncer.push = func(changes []json.RawMessage) (*domain.PushResponse, error) {
		return &domain.PushResponse{ServerHLC: serverHLC, Results: []domain.PushResult{
			{ChangeID: "c0", Status: merge.Merged, Record: &domain.RecordView{Record: corridor}},
			{ChangeID: "c1", Status: merge.Applied, Record: &domain.RecordView{Record: patrolLog}, ClockClamped: true},
			{ChangeID: "c2", Status: merge.Duplicate, Record: &domain.RecordView{Record: patrolLog}},
			{ChangeID: "c3", Status: merge.Applied, Record: &domain.RecordView{Record: patrolLog}},
		}}, nil
	}
	for _, c := range []struct {
		prefer  string
		minimal bool
	}{{"return=minimal", true}, {"respond-async, return=minimal; x=1", true}, {"return=representation", false}, {"", false}} {
		req := pushRequest(t, batch(4))
		if c.prefer != "" {
			req.Header.Set("Prefer", c.prefer)
		}
		resp, got := e.do(t, req)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, got)
		}
		var out struct {
			Results []struct {
				ChangeID string          `json:"change_id"`
				Record   json.RawMessage `json:"record"`
			} `json:"results"`
		}
		if err := json.Unmarshal(got, &out); err != nil {
			t.Fatal(err)
		}
		with := ""
		for _, r := range out.Results {
			if r.Record != nil {
				with += r.ChangeID
			}
		}
		want := "c0c1c2c3"
		if c.minimal {
			want = "c1c2"
		}
		if with != want || (resp.Header.Get("Preference-Applied") == "return=minimal") != c.minimal {
			t.Errorf("Prefer %q: records for %s (want %s), Preference-Applied %q", c.prefer, with, want, resp.Header.Get("Preference-Applied"))
		}
	}
}

func TestPushEmptyBatch(t *testing.T) {
	e := newEnv(t, api.Deps{})
	resp, got := e.do(t, pushRequest(t, []byte(` { "changes" : [ ] } `)))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, got)
	}
	if want := `{"results":[],"server_hlc":"1764300300000-3-srv"}`; string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
	pushes, _ := e.syncer.calls()
	if len(pushes) != 1 || pushes[0].changes == nil || len(pushes[0].changes) != 0 {
		t.Errorf("syncer calls %+v, want one push of an empty, non-nil batch", pushes)
	}
}

func TestPushAtTheLimits(t *testing.T) {
	e := newEnv(t, api.Deps{})
	resp, got := e.do(t, pushRequest(t, batch(testConfig.MaxChanges)))
	if resp.StatusCode != 200 {
		t.Fatalf("MaxChanges changes: status %d: %s", resp.StatusCode, got)
	}
	// A body of exactly BodyLimit bytes after inflation passes.
	body := batch(1)
	pad := testConfig.BodyLimit - len(body)
	body = append([]byte(`{"changes":[`+strings.Repeat(" ", pad)), body[len(`{"changes":[`):]...)
	if len(body) != testConfig.BodyLimit {
		t.Fatalf("body of %d bytes", len(body))
	}
	for _, enc := range []string{"identity", "gzip"} {
		b := body
		if enc == "gzip" {
			b = gzipped(t, body)
		}
		resp, got := e.do(t, pushRequest(t, b, "Content-Encoding", enc))
		if resp.StatusCode != 200 {
			t.Errorf("%s body of exactly BodyLimit: status %d: %s", enc, resp.StatusCode, got)
		}
	}
}

func TestPullRendersPage(t *testing.T) {
	corridor, patrolLog := record(t, corridorJSON), record(t, logJSON)
	next := domain.Cursor{TxID: 0, Seq: 77}
	e := newEnv(t, api.Deps{})
	e.syncer.pull = func(domain.PullRequest) (*domain.PullResponse, error) {
		return &domain.PullResponse{
			Records:   []domain.RecordView{{Record: patrolLog}, {Record: corridor, Stale: true}},
			Cursor:    next,
			HasMore:   true,
			ServerHLC: serverHLC,
		}, nil
	}
	resp, got := e.do(t, pullRequest(t, "?limit=2"))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, got)
	}
	want := `{"records":[` + string(patrolLog.AppendJSON(nil)) + `,` +
		strings.TrimSuffix(string(corridor.AppendJSON(nil)), "}") + `,"stale":true}` +
		`],"cursor":"` + next.String() + `","has_more":true,"server_hlc":"1764300300000-3-srv"}`
	if string(got) != want {
		t.Errorf("pull response\n got %s\nwant %s", got, want)
	}

	// An empty page keeps the cursor and says there is no more.
	e.syncer.pull = nil
	resp, got = e.do(t, pullRequest(t, "?cursor="+next.String()))
	if want := `{"records":[],"cursor":"` + next.String() + `","has_more":false,"server_hlc":"1764300300000-3-srv"}`; resp.StatusCode != 200 || string(got) != want {
		t.Errorf("empty page: %d %s, want %s", resp.StatusCode, got, want)
	}
}

func TestAppendRecordStale(t *testing.T) {
	corridor := record(t, corridorJSON)
	canonical := corridor.AppendJSON(nil)
	prefix := []byte(`[1,`)

	fresh := api.AppendRecord(slices.Clone(prefix), &domain.RecordView{Record: corridor})
	if want := append(slices.Clone(prefix), canonical...); !bytes.Equal(fresh, want) {
		t.Errorf("a fresh record:\n got %s\nwant %s", fresh, want)
	}

	stale := api.AppendRecord(slices.Clone(prefix), &domain.RecordView{Record: corridor, Stale: true})
	if !bytes.HasPrefix(stale, append(slices.Clone(prefix), canonical[:len(canonical)-1]...)) {
		t.Errorf("the stale record does not start with the canonical bytes: %s", stale)
	}
	if !bytes.HasSuffix(stale, []byte(`,"stale":true}`)) {
		t.Errorf("the stale record does not end with the stale member: %s", stale)
	}
	obj := stale[len(prefix):]
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		t.Fatalf("%s: %v", obj, err)
	}
	if string(m["stale"]) != "true" {
		t.Errorf("stale = %s", m["stale"])
	}
	// A replica reading the record back gets the same state: stale is a
	// read-time flag, not state.
	var back merge.Record
	if err := json.Unmarshal(obj, &back); err != nil {
		t.Fatal(err)
	}
	if !back.Equal(corridor) || !corridor.Equal(&back) {
		t.Errorf("the stale record decodes to another state: %s", back.AppendJSON(nil))
	}
}

func TestSyncerFailures(t *testing.T) {
	const secret = "pq: password authentication failed for user fieldsync"
	cases := []struct {
		name   string
		push   func([]json.RawMessage) (*domain.PushResponse, error)
		status int
		code   string
		logged bool
	}{
		{"a panic is a 500", func([]json.RawMessage) (*domain.PushResponse, error) { panic(secret) }, 500, domain.CodeInternal, true},
		{"a panic with an error value is a 500", func([]json.RawMessage) (*domain.PushResponse, error) { panic(errors.New(secret)) }, 500, domain.CodeInternal, true},
		{"a plain error is a 500", func([]json.RawMessage) (*domain.PushResponse, error) { return nil, errors.New(secret) }, 500, domain.CodeInternal, true},
		{"a domain error with an unmapped code is a 500", func([]json.RawMessage) (*domain.PushResponse, error) {
			return nil, domain.Errorf("no_such_code", "%s", secret)
		}, 500, domain.CodeInternal, true},
		{"a short result list is a 500", func([]json.RawMessage) (*domain.PushResponse, error) {
			return &domain.PushResponse{ServerHLC: serverHLC}, nil
		}, 500, domain.CodeInternal, true},
		{"an unreachable database is a 503", func([]json.RawMessage) (*domain.PushResponse, error) {
			return nil, fmt.Errorf("store: begin: %s: %w", secret, domain.ErrUnavailable)
		}, 503, domain.CodeUnavailable, false},
		{"a deadline is a 503", func([]json.RawMessage) (*domain.PushResponse, error) {
			return nil, fmt.Errorf("store: %w", context.DeadlineExceeded)
		}, 503, domain.CodeUnavailable, false},
		{"a bad change id is a 422", func([]json.RawMessage) (*domain.PushResponse, error) {
			return nil, domain.Errorf(domain.CodeInvalidChangeID, "change 0 has no change_id")
		}, 422, domain.CodeInvalidChangeID, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, api.Deps{})
			e.syncer.push = tc.push
			resp, body := e.do(t, pushRequest(t, batch(1)))
			p := wantProblem(t, resp, body, tc.status, tc.code)
			if strings.Contains(string(body), "password") || strings.Contains(string(body), "panic") {
				t.Errorf("the problem leaks the error: %s", body)
			}
			if tc.status == 503 && resp.Header.Get("Retry-After") != api.RetryAfterSeconds {
				t.Errorf("Retry-After %q, want %q", resp.Header.Get("Retry-After"), api.RetryAfterSeconds)
			}
			logs := e.log.String()
			errorLines := strings.Count(logs, `"level":"ERROR"`)
			if tc.logged {
				if errorLines != 1 || !strings.Contains(logs, `"msg":"internal error","request_id":"`+p.RequestID) {
					t.Errorf("want the error logged once with request id %s; log:\n%s", p.RequestID, logs)
				}
			} else if errorLines != 0 {
				t.Errorf("a client-visible error was logged as an error:\n%s", logs)
			}
		})
	}
	t.Run("a panic in pull is a 500 and the server carries on", func(t *testing.T) {
		e := newEnv(t, api.Deps{})
		e.syncer.pull = func(domain.PullRequest) (*domain.PullResponse, error) { panic("boom") }
		resp, body := e.do(t, pullRequest(t, ""))
		wantProblem(t, resp, body, 500, domain.CodeInternal)
		if !strings.Contains(e.log.String(), `"stack"`) {
			t.Error("the panic was logged without its stack")
		}
		resp, _ = e.do(t, request(t, http.MethodGet, "/healthz", nil))
		if resp.StatusCode != 200 {
			t.Errorf("after a panic, /healthz is %d", resp.StatusCode)
		}
	})
}

func TestRoutingProblems(t *testing.T) {
	auth := []string{"Authorization", "Bearer " + deviceToken}
	cases := []struct {
		name, method, path string
		header             []string
		status             int
		code, allow        string
	}{
		{"an unknown route", http.MethodGet, "/nope", nil, 404, domain.CodeNotFound, ""},
		{"an unknown route under /v1", http.MethodGet, "/v1/nope", auth, 404, domain.CodeNotFound, ""},
		{"an unknown route under /v1 without a token", http.MethodGet, "/v1/nope", nil, 401, domain.CodeUnauthorized, ""},
		{"a trailing slash", http.MethodGet, "/healthz/", nil, 404, domain.CodeNotFound, ""},
		{"another case", http.MethodGet, "/HEALTHZ", nil, 404, domain.CodeNotFound, ""},
		{"GET on push", http.MethodGet, "/v1/sync/push", auth, 405, domain.CodeMethodNotAllow, "POST"},
		{"POST on pull", http.MethodPost, "/v1/sync/pull", auth, 405, domain.CodeMethodNotAllow, "GET"},
		{"DELETE on healthz", http.MethodDelete, "/healthz", nil, 405, domain.CodeMethodNotAllow, "GET"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, api.Deps{})
			resp, body := e.do(t, request(t, tc.method, tc.path, nil, tc.header...))
			wantProblem(t, resp, body, tc.status, tc.code)
			if tc.allow != "" && !strings.Contains(resp.Header.Get("Allow"), tc.allow) {
				t.Errorf("Allow %q, want it to list %s", resp.Header.Get("Allow"), tc.allow)
			}
		})
	}
}

func TestHealthz(t *testing.T) {
	e := newEnv(t, api.Deps{Ready: func(context.Context) error { return domain.ErrUnavailable }})
	resp, body := e.do(t, request(t, http.MethodGet, "/healthz", nil))
	if resp.StatusCode != 200 || string(body) != `{"status":"ok"}` || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("/healthz while the database is down: %d %q %s, want 200 {\"status\":\"ok\"}", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

func TestReadyz(t *testing.T) {
	cases := []struct {
		name   string
		ready  func(context.Context) error
		status int
		code   string
	}{
		{"no check is ready", nil, 200, ""},
		{"a passing check is ready", func(context.Context) error { return nil }, 200, ""},
		{"an unreachable database is unavailable", func(context.Context) error { return domain.ErrUnavailable }, 503, domain.CodeUnavailable},
		{"a schema behind is not ready", func(context.Context) error {
			return domain.Errorf(domain.CodeNotReady, "the schema is at 3, the binary needs 4")
		}, 503, domain.CodeNotReady},
		{"an unclassified failure is unavailable", func(context.Context) error { return errors.New("dial tcp: refused") }, 503, domain.CodeUnavailable},
		{"a check that hangs is unavailable", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }, 503, domain.CodeUnavailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, api.Deps{Ready: tc.ready})
			resp, body := e.do(t, request(t, http.MethodGet, "/readyz", nil))
			if tc.status == 200 {
				if resp.StatusCode != 200 || string(body) != `{"status":"ready"}` {
					t.Errorf("got %d %s", resp.StatusCode, body)
				}
				return
			}
			wantProblem(t, resp, body, tc.status, tc.code)
			if ra := resp.Header.Get("Retry-After"); ra != "2" {
				t.Errorf("Retry-After %q, want 2", ra)
			}
			if strings.Contains(string(body), "dial tcp") {
				t.Errorf("the problem leaks the error: %s", body)
			}
		})
	}
}

func TestOpenAPIAndJWKS(t *testing.T) {
	spec := []byte("openapi: 3.1.0\ninfo: {title: fieldsync, version: '1'}\n")
	jwks := []byte(`{"keys":[]}`)
	e := newEnv(t, api.Deps{OpenAPI: spec, JWKS: func() ([]byte, error) { return jwks, nil }})
	resp, body := e.do(t, request(t, http.MethodGet, "/openapi.yaml", nil))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/yaml" || !bytes.Equal(body, spec) {
		t.Errorf("/openapi.yaml: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	resp, body = e.do(t, request(t, http.MethodGet, "/.well-known/jwks.json", nil))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || !bytes.Equal(body, jwks) {
		t.Errorf("/.well-known/jwks.json: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}

	bare := newEnv(t, api.Deps{})
	for _, path := range []string{"/openapi.yaml", "/.well-known/jwks.json"} {
		resp, body := bare.do(t, request(t, http.MethodGet, path, nil))
		wantProblem(t, resp, body, 404, domain.CodeNotFound)
	}
}

func TestRequestID(t *testing.T) {
	e := newEnv(t, api.Deps{})
	resp, _ := e.do(t, request(t, http.MethodGet, "/healthz", nil, api.HeaderRequestID, "dev-7Q2:sync-0042"))
	if got := resp.Header.Get(api.HeaderRequestID); got != "dev-7Q2:sync-0042" {
		t.Errorf("a sane request id was not echoed: %q", got)
	}
	for _, bad := range []string{"has space", strings.Repeat("x", 200), "quote\"d"} {
		resp, body := e.do(t, request(t, http.MethodGet, "/nope", nil, api.HeaderRequestID, bad))
		p := wantProblem(t, resp, body, 404, domain.CodeNotFound)
		if p.RequestID == bad || !regexp.MustCompile(`^[0-9a-f-]{36}$`).MatchString(p.RequestID) {
			t.Errorf("request id %q was used (got %q), want a generated one", bad, p.RequestID)
		}
	}
}

func TestAccessLog(t *testing.T) {
	e := newEnv(t, api.Deps{})
	e.do(t, pushRequest(t, batch(1), api.HeaderRequestID, "rid-1"))
	e.do(t, pullRequest(t, "?cursor="+domain.Cursor{Seq: 5}.String()))
	e.do(t, request(t, http.MethodGet, "/v1/sync/pull", nil, "Authorization", "Bearer leaked-secret-token"))

	logs := e.log.String()
	for _, secret := range []string{deviceToken, "leaked-secret-token", "Authorization", "Bearer", domain.Cursor{Seq: 5}.String()} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains %q:\n%s", secret, logs)
		}
	}
	var lines []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 3 {
		t.Fatalf("%d log lines, want one per request:\n%s", len(lines), logs)
	}
	first := lines[0]
	for k, v := range map[string]any{"method": "POST", "route": "/v1/sync/push", "status": 200.0, "request_id": "rid-1", "sub": device.Subject, "role": string(device.Role)} {
		if first[k] != v {
			t.Errorf("push log line: %s = %v, want %v (%v)", k, first[k], v, first)
		}
	}
	if _, ok := first["duration"]; !ok {
		t.Errorf("push log line without duration: %v", first)
	}
	if lines[2]["status"] != 401.0 || lines[2]["sub"] != nil {
		t.Errorf("unauthenticated log line: %v", lines[2])
	}
}

func TestRoutesMatchTheApp(t *testing.T) {
	e := newEnv(t, api.Deps{})
	param := regexp.MustCompile(`:([A-Za-z0-9_]+)\??`)
	var got []api.Route
	for _, r := range e.app.GetRoutes(true) {
		if r.Method == http.MethodHead {
			continue // fiber adds one per GET
		}
		got = append(got, api.Route{Method: r.Method, Path: param.ReplaceAllString(r.Path, "{$1}")})
	}
	want := api.Routes()
	less := func(a, b api.Route) int { return strings.Compare(a.Method+" "+a.Path, b.Method+" "+b.Path) }
	slices.SortFunc(got, less)
	slices.SortFunc(want, less)
	if !slices.Equal(got, want) {
		t.Errorf("app routes %v\n  Routes() %v", got, want)
	}
}
