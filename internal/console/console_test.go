package console_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/fieldsync/fieldsync/internal/console"
)

// fakeToken builds a token-shaped string with the given subject and
// expiry; the stub API below decides whether it is good, as the real one
// would by its signature.
func fakeToken(sub string, exp time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	payload, _ := json.Marshal(map[string]any{"sub": sub, "exp": exp.Unix()})
	return enc([]byte(`{"alg":"EdDSA","typ":"JWT"}`)) + "." + enc(payload) + "." + enc([]byte("signature-"+sub))
}

// stubAPI stands in for the API routes the tests touch, answering by token
// the way the real API does: 200 for a supervisor, 403 for a device, 401
// for a token it does not accept.
type stubAPI struct {
	mu         sync.Mutex
	supervisor string
	device     string
	signOffs   int
	headers    []http.Header
	resolves   []string // bodies of resolve requests
}

func stubConflict(id string) map[string]any {
	c := map[string]any{"id": id, "collection": "patrol_logs", "record_id": "log-1", "field": "notes",
		"values": []any{
			map[string]any{"value": "road blocked", "node": "dev-a", "hlc": "1764300000000-0-dev-a", "dot": 2},
			map[string]any{"value": "road open", "node": "dev-b", "hlc": "1764300000001-0-dev-b", "dot": 1},
		},
		"kept": 1, "rule": "later_hlc", "review_required": false, "status": "open", "unit": "KEN-1", "contingent": "KEN",
		"created_at": "2026-11-27T10:00:00Z", "updated_at": "2026-11-27T10:00:00Z", "resolved_at": nil}
	switch id {
	case "c-entry":
		c["collection"], c["record_id"], c["field"] = "patrol_entries", "e-1", "text"
	case "c-count":
		c["field"] = "members_count"
		c["values"] = []any{
			map[string]any{"value": 4, "node": "dev-a", "hlc": "1764300000000-0-dev-a", "dot": 2},
			map[string]any{"value": 5, "node": "dev-b", "hlc": "1764300000001-0-dev-b", "dot": 1},
		}
	}
	return c
}

func (s *stubAPI) problem(c *fiber.Ctx, status int, code, detail string) error {
	c.Set(fiber.HeaderContentType, "application/problem+json")
	b, _ := json.Marshal(map[string]any{"type": "https://fieldsync.dev/problems/" + code, "title": code,
		"status": status, "code": code, "detail": detail, "request_id": c.Get(fiber.HeaderXRequestID)})
	return c.Status(status).Send(b)
}

func (s *stubAPI) auth(c *fiber.Ctx) error {
	s.mu.Lock()
	h := http.Header{}
	c.Request().Header.VisitAll(func(k, v []byte) { h.Add(string(k), string(v)) })
	s.headers = append(s.headers, h)
	s.mu.Unlock()
	switch c.Get(fiber.HeaderAuthorization) {
	case "Bearer " + s.supervisor:
		return c.Next()
	case "Bearer " + s.device:
		return s.problem(c, 403, "forbidden", "only supervisors and administrators read the review routes")
	}
	return s.problem(c, 401, "unauthorized", "the token does not verify")
}

func newStub(t *testing.T) (*fiber.App, *stubAPI) {
	t.Helper()
	s := &stubAPI{
		supervisor: fakeToken("sup-ken", time.Now().Add(time.Hour)),
		device:     fakeToken("dev-1", time.Now().Add(time.Hour)),
	}
	app := fiber.New(fiber.Config{StrictRouting: true, CaseSensitive: true, DisableStartupMessage: true})
	app.Use(func(c *fiber.Ctx) error {
		id := c.Get(fiber.HeaderXRequestID)
		if id == "" {
			id = "req-1"
		}
		c.Set(fiber.HeaderXRequestID, id)
		return c.Next()
	})
	v1 := app.Group("/v1", s.auth)
	v1.Get("/conflicts", func(c *fiber.Ctx) error {
		return c.JSON(map[string]any{"conflicts": []any{}, "cursor": "", "has_more": false})
	})
	v1.Get("/patrol-logs", func(c *fiber.Ctx) error {
		if from := c.Query("from"); from != "" && from != "2026-11-27" {
			return s.problem(c, 400, "invalid_parameter", "from must be a day, YYYY-MM-DD <script>alert(1)</script>")
		}
		return c.JSON(map[string]any{"patrol_logs": []any{map[string]any{
			"id": "log-1", "unit": "KEN-1", "contingent": "KEN", "day": "2026-11-27", "status": "active",
			"signed_off": false, "entries": 2, "open_conflicts": 1,
			"record": map[string]any{"collection": "patrol_logs", "id": "log-1", "fields": map[string]any{}},
		}}, "cursor": "", "has_more": false})
	})
	v1.Post("/patrol-logs/:id/sign-off", func(c *fiber.Ctx) error {
		s.mu.Lock()
		s.signOffs++
		s.mu.Unlock()
		return c.JSON(map[string]any{"record": map[string]any{"collection": "patrol_logs", "id": c.Params("id")}})
	})
	v1.Get("/conflicts/:id", func(c *fiber.Ctx) error { return c.JSON(stubConflict(c.Params("id"))) })
	v1.Post("/conflicts/:id/resolve", func(c *fiber.Ctx) error {
		s.mu.Lock()
		s.resolves = append(s.resolves, c.Get(fiber.HeaderContentType)+" "+string(c.Body()))
		s.mu.Unlock()
		cf := stubConflict(c.Params("id"))
		cf["status"], cf["resolution"], cf["resolved_by"] = "resolved", "picked", "sup-ken"
		return c.JSON(map[string]any{"conflict": cf, "record": nil})
	})
	console.Mount(app, console.Config{})
	return app, s
}

// browser is a minimal cookie-keeping client over app.Test.
type browser struct {
	t       *testing.T
	app     *fiber.App
	cookies map[string]string
	proto   string
}

type page struct {
	status int
	header http.Header
	body   string
}

func (b *browser) do(method, path string, form url.Values) page {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req := httptest.NewRequest(method, path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if b.proto != "" {
		req.Header.Set("X-Forwarded-Proto", b.proto)
	}
	for k, v := range b.cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	resp, err := b.app.Test(req, -1)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	for _, c := range resp.Cookies() {
		if c.MaxAge < 0 || c.Value == "" {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c.Value
		}
	}
	return page{status: resp.StatusCode, header: resp.Header, body: string(out)}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, p page) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no CSRF field in the page:\n%s", p.body)
	}
	return m[1]
}

func (b *browser) signIn(token string) page {
	b.t.Helper()
	form := b.do("GET", "/console/sign-in", nil)
	return b.do("POST", "/console/sign-in", url.Values{"csrf": {csrfOf(b.t, form)}, "token": {"  Bearer " + token + "\n"}})
}

func newBrowser(t *testing.T, app *fiber.App) *browser {
	return &browser{t: t, app: app, cookies: map[string]string{}}
}

// sessionCookie returns the Set-Cookie line of the session cookie.
func sessionCookie(p page) string {
	for _, line := range p.header.Values("Set-Cookie") {
		if strings.HasPrefix(line, "fieldsync_console=") {
			return line
		}
	}
	return ""
}

func TestConsoleSignInKeepsTheTokenInAStrictHttpOnlyCookieThatExpiresWithIt(t *testing.T) {
	app, stub := newStub(t)
	b := newBrowser(t, app)
	p := b.signIn(stub.supervisor)
	if p.status != 303 || p.header.Get("Location") != "/console/logs" {
		t.Fatalf("sign-in = %d to %q\n%s", p.status, p.header.Get("Location"), p.body)
	}
	line := sessionCookie(p)
	for _, want := range []string{"fieldsync_console=" + stub.supervisor + ";", "HttpOnly", "SameSite=Strict", "path=/console", "max-age="} {
		if !strings.Contains(strings.ToLower(line), strings.ToLower(want)) {
			t.Errorf("session cookie %q lacks %q", line, want)
		}
	}
	if strings.Contains(strings.ToLower(line), "secure") {
		t.Errorf("a cookie set over plain HTTP is Secure (the browser would drop it): %q", line)
	}
	// Max-Age counts down to the token's exp (an hour).
	m := regexp.MustCompile(`max-age=(\d+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no max-age in %q", line)
	}
	if age, _ := strconv.Atoi(m[1]); age < 3500 || age > 3600 {
		t.Errorf("max-age of %q is not about an hour", line)
	}
	if strings.Contains(p.header.Get("Location"), stub.supervisor) || strings.Contains(p.body, stub.supervisor) {
		t.Error("the token is in the redirect")
	}
	// The page after sign-in shows data, not the token.
	logs := b.do("GET", "/console/logs", nil)
	if logs.status != 200 || !strings.Contains(logs.body, "KEN-1") || strings.Contains(logs.body, stub.supervisor) {
		t.Fatalf("logs page = %d, token shown: %v", logs.status, strings.Contains(logs.body, stub.supervisor))
	}
	// The in-process call carried the token as a bearer token, the
	// console's request id, and no Accept-Encoding.
	stub.mu.Lock()
	last := stub.headers[len(stub.headers)-1]
	stub.mu.Unlock()
	if last.Get("Authorization") != "Bearer "+stub.supervisor || last.Get("Accept-Encoding") != "" || last.Get("X-Request-Id") == "" {
		t.Errorf("API request headers: %v", last)
	}

	// Over TLS (here: a proxy that says so) the cookie is Secure.
	tls := newBrowser(t, app)
	tls.proto = "https"
	if line := sessionCookie(tls.signIn(stub.supervisor)); !strings.Contains(line, "secure") {
		t.Errorf("session cookie over https is not Secure: %q", line)
	}
}

func TestConsoleSignInRefusesDeviceAndBadTokensWithAClearMessage(t *testing.T) {
	app, stub := newStub(t)
	for _, c := range []struct {
		name, token, want string
		status            int
	}{
		{"device token", stub.device, "not a supervisor token", 403},
		{"token the API refuses", fakeToken("sup-x", time.Now().Add(time.Hour)), "did not accept this token", 401},
		{"not a token", "hello", "not a token", 422},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := newBrowser(t, app)
			p := b.signIn(c.token)
			if p.status != c.status || !strings.Contains(p.body, c.want) {
				t.Fatalf("sign-in = %d, want %d with %q:\n%s", p.status, c.status, c.want, p.body)
			}
			if sessionCookie(p) != "" {
				t.Fatalf("a refused token got a session cookie: %s", sessionCookie(p))
			}
			if strings.Contains(p.body, c.token) {
				t.Fatal("the refused token is echoed in the page")
			}
		})
	}
}

func TestConsoleFormsWithoutTheSessionsCSRFTokenAreRefused(t *testing.T) {
	app, stub := newStub(t)
	b := newBrowser(t, app)
	b.signIn(stub.supervisor)
	good := csrfOf(t, b.do("GET", "/console/logs", nil))

	// A sign-in form's token: made for another purpose and value.
	otherToken := csrfOf(t, newBrowser(t, app).do("GET", "/console/sign-in", nil))

	for _, c := range []struct {
		name string
		csrf string
	}{{"none", ""}, {"forged", "AAAA"}, {"a sign-in form's token", otherToken}} {
		p := b.do("POST", "/console/logs/log-1/sign-off", url.Values{"csrf": {c.csrf}})
		if p.status != 403 || !strings.Contains(p.body, "csrf") {
			t.Errorf("sign-off with %s CSRF token = %d", c.name, p.status)
		}
	}
	if stub.signOffs != 0 {
		t.Fatalf("a refused form reached the API: %d sign-offs", stub.signOffs)
	}
	p := b.do("POST", "/console/logs/log-1/sign-off", url.Values{"csrf": {good}})
	if p.status != 303 || stub.signOffs != 1 {
		t.Fatalf("sign-off with the session's token = %d (%d sign-offs)", p.status, stub.signOffs)
	}
	// A token is bound to its session: after signing in again with another
	// token, the old form's token no longer works.
	b.cookies["fieldsync_console"] = fakeToken("sup-ken-2", time.Now().Add(time.Hour))
	if p := b.do("POST", "/console/logs/log-1/sign-off", url.Values{"csrf": {good}}); p.status != 403 {
		t.Fatalf("a CSRF token of another session = %d, want 403", p.status)
	}
	// Signing in needs the form's token too (no login CSRF), and signing out.
	fresh := newBrowser(t, app)
	if p := fresh.do("POST", "/console/sign-in", url.Values{"token": {stub.supervisor}}); p.status != 403 || sessionCookie(p) != "" {
		t.Fatalf("sign-in without the form's token = %d", p.status)
	}
	b.cookies["fieldsync_console"] = stub.supervisor
	if p := b.do("POST", "/console/sign-out", url.Values{}); p.status != 403 {
		t.Fatalf("sign-out without a CSRF token = %d", p.status)
	}
	p = b.do("POST", "/console/sign-out", url.Values{"csrf": {good}})
	if p.status != 303 || !strings.Contains(sessionCookie(p), "expires=Tue, 10 Nov 2009") {
		t.Fatalf("sign-out = %d, cookie %q", p.status, sessionCookie(p))
	}
}

func TestConsoleAnAPI401SendsTheBrowserBackToSignIn(t *testing.T) {
	app, _ := newStub(t)
	b := newBrowser(t, app)
	// A token that expired or was revoked since sign-in.
	b.cookies["fieldsync_console"] = fakeToken("sup-ken", time.Now().Add(2*time.Hour))
	p := b.do("GET", "/console/logs", nil)
	if p.status != 303 || p.header.Get("Location") != "/console/sign-in?m=ended" {
		t.Fatalf("GET /console/logs with a refused token = %d to %q", p.status, p.header.Get("Location"))
	}
	if line := sessionCookie(p); !strings.Contains(line, "expires=Tue, 10 Nov 2009") {
		t.Fatalf("the session cookie was not cleared: %q", line)
	}
	if p := b.do("GET", "/console/sign-in?m=ended", nil); !strings.Contains(p.body, "session ended") {
		t.Fatalf("the sign-in page does not say why:\n%s", p.body)
	}
	// No cookie at all: straight to sign-in.
	if p := newBrowser(t, app).do("GET", "/console/conflicts", nil); p.status != 303 || p.header.Get("Location") != "/console/sign-in" {
		t.Fatalf("GET without a session = %d to %q", p.status, p.header.Get("Location"))
	}
}

func TestConsoleAPIProblemsAreShownEscapedWithTheirCode(t *testing.T) {
	app, stub := newStub(t)
	b := newBrowser(t, app)
	b.signIn(stub.supervisor)
	p := b.do("GET", "/console/logs?from=yesterday", nil)
	if p.status != 400 || !strings.Contains(p.body, "invalid_parameter") || !strings.Contains(p.body, "from must be a day") {
		t.Fatalf("a refused filter = %d:\n%s", p.status, p.body)
	}
	if strings.Contains(p.body, "<script>") || !strings.Contains(p.body, "&lt;script&gt;") {
		t.Fatal("the API's detail was not escaped")
	}
	// The filter form keeps what was typed.
	if !strings.Contains(p.body, `value="yesterday"`) {
		t.Fatal("the filter form lost its value")
	}
}

func TestConsoleResponsesCarrySecurityHeaders(t *testing.T) {
	app, stub := newStub(t)
	b := newBrowser(t, app)
	b.signIn(stub.supervisor)
	for _, path := range []string{"/console/sign-in", "/console/logs", "/console/no-such-page"} {
		p := b.do("GET", path, nil)
		for k, want := range map[string]string{
			"Content-Security-Policy": "default-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
			"Cache-Control":           "no-store",
		} {
			if got := p.header.Get(k); got != want {
				t.Errorf("GET %s: %s = %q, want %q", path, k, got, want)
			}
		}
		if !strings.HasPrefix(p.header.Get("Content-Type"), "text/html") {
			t.Errorf("GET %s: Content-Type %q", path, p.header.Get("Content-Type"))
		}
	}
	// The one stylesheet, under a hashed name, may be cached.
	css := regexp.MustCompile(`href="(/console/static/console\.[0-9a-f]+\.css)"`).FindStringSubmatch(b.do("GET", "/console/logs", nil).body)
	if css == nil {
		t.Fatal("no stylesheet link")
	}
	p := b.do("GET", css[1], nil)
	if p.status != 200 || !strings.HasPrefix(p.header.Get("Content-Type"), "text/css") || !strings.Contains(p.header.Get("Cache-Control"), "immutable") {
		t.Fatalf("stylesheet = %d %q %q", p.status, p.header.Get("Content-Type"), p.header.Get("Cache-Control"))
	}
}

func TestConsoleDecisionsArePostedToTheAPIAsTheFormSays(t *testing.T) {
	app, stub := newStub(t)
	b := newBrowser(t, app)
	b.signIn(stub.supervisor)
	for _, c := range []struct {
		name     string
		conflict string
		form     url.Values
		want     string // the API request, or "" when none may be sent
		status   int
	}{
		{"keep", "c-log", url.Values{"decision": {"keep"}, "reason": {"A was there first"}},
			`application/json {"choice":"keep","reason":"A was there first"}`, 303},
		{"pick", "c-log", url.Values{"decision": {"pick:0"}, "reason": {"A checked"}},
			`application/json {"choice":"pick","pick":0,"reason":"A checked"}`, 303},
		{"a new text value", "c-log", url.Values{"decision": {"value"}, "kind": {"text"}, "value": {`both: "see radio log"`}, "reason": {"merged by hand"}},
			`application/json {"choice":"value","value":"both: \"see radio log\"","reason":"merged by hand"}`, 303},
		{"a new JSON value", "c-count", url.Values{"decision": {"value"}, "kind": {"json"}, "value": {"6"}, "reason": {"head count"}},
			`application/json {"choice":"value","value":6,"reason":"head count"}`, 303},
		{"no reason", "c-log", url.Values{"decision": {"keep"}, "reason": {"  "}}, "", 422},
		{"JSON that does not parse", "c-count", url.Values{"decision": {"value"}, "kind": {"json"}, "value": {"six"}, "reason": {"x"}}, "", 422},
		{"no decision", "c-log", url.Values{"reason": {"x"}}, "", 422},
	} {
		t.Run(c.name, func(t *testing.T) {
			stub.mu.Lock()
			stub.resolves = nil
			stub.mu.Unlock()
			form := b.do("GET", "/console/conflicts/"+c.conflict, nil)
			c.form.Set("csrf", csrfOf(t, form))
			p := b.do("POST", "/console/conflicts/"+c.conflict+"/resolve", c.form)
			if p.status != c.status {
				t.Fatalf("resolve = %d, want %d\n%s", p.status, c.status, p.body)
			}
			stub.mu.Lock()
			got := stub.resolves
			stub.mu.Unlock()
			switch {
			case c.want == "" && len(got) != 0:
				t.Fatalf("a refused form reached the API: %q", got)
			case c.want != "" && (len(got) != 1 || got[0] != c.want):
				t.Fatalf("API requests %q, want %q", got, c.want)
			}
			if c.status == 303 && p.header.Get("Location") != "/console/conflicts?resolved="+c.conflict {
				t.Fatalf("after the decision the browser goes to %q", p.header.Get("Location"))
			}
			if c.status == 422 && (!strings.Contains(p.body, `id="problem"`) || !strings.Contains(p.body, c.form.Get("reason"))) {
				t.Fatalf("a refused decision does not show the problem and keep the reason:\n%s", p.body)
			}
		})
	}
	// The queue confirms the decision, from the API's answer.
	if p := b.do("GET", "/console/conflicts?resolved=c-log", nil); !strings.Contains(p.body, "Resolved: notes of patrol logs log-1") {
		t.Fatalf("no confirmation:\n%s", p.body)
	}
}

func TestConsoleConflictsOnEntriesCanOnlyBeAcknowledged(t *testing.T) {
	app, stub := newStub(t)
	b := newBrowser(t, app)
	b.signIn(stub.supervisor)
	entry := b.do("GET", "/console/conflicts/c-entry", nil)
	if !strings.Contains(entry.body, `value="keep"`) || strings.Contains(entry.body, `value="pick:`) || strings.Contains(entry.body, `value="value"`) {
		t.Fatalf("a patrol entry conflict offers more than keep:\n%s", entry.body)
	}
	log := b.do("GET", "/console/conflicts/c-log", nil)
	for _, want := range []string{`value="keep"`, `value="pick:0"`, `value="pick:1"`, `value="value"`, "KEPT"} {
		if !strings.Contains(log.body, want) {
			t.Fatalf("a patrol log conflict page lacks %s", want)
		}
	}
	// A new value defaults to text when the values are text, to JSON
	// when they are not.
	if !strings.Contains(log.body, `<option value="text" selected>`) {
		t.Error("a text field's new value does not default to text")
	}
	if count := b.do("GET", "/console/conflicts/c-count", nil); !strings.Contains(count.body, `<option value="json" selected>`) {
		t.Error("a number field's new value does not default to JSON")
	}
}
