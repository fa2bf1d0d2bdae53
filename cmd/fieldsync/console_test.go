package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fieldsync/fieldsync/internal/config"
	fsclient "github.com/fieldsync/fieldsync/sync/client"
)

var consoleShots = flag.String("console.screenshots", "", "directory for the console browser test's screenshots (default: a temporary directory)")

// chromiumPath is Debian's chromium, which .ci/run installs.
const chromiumPath = "/usr/bin/chromium"

// consoleBrowser drives one headless Chromium tab over the console and
// saves a screenshot of every page it checks.
type consoleBrowser struct {
	t    *testing.T
	tab  context.Context // the tab, without a deadline
	ctx  context.Context // the tab, with the test's deadline
	base string
	dir  string
	n    int
}

func newConsoleBrowser(t *testing.T, base string) *consoleBrowser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium is missing at %s (.ci/run installs Debian's chromium): %v", chromiumPath, err)
		}
		t.Skipf("chromium is missing at %s; install Debian's chromium to run the console browser test", chromiumPath)
	}
	dir := *consoleShots
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1024, 768),
	)
	tab, cancelTab := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	// Start the browser with a context that has no deadline (its life is
	// bound to the first Run's context), then bound every step.
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(tab, 60*time.Second)
	t.Cleanup(cancel)
	b := &consoleBrowser{t: t, tab: tab, ctx: ctx, base: base, dir: dir}
	b.do(chromedp.EmulateViewport(1024, 768))
	return b
}

func (b *consoleBrowser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v\n%s", err, b.where())
	}
}

// where describes the page the browser is on, for a failure: its address
// and text, and a screenshot.
func (b *consoleBrowser) where() string {
	ctx, cancel := context.WithTimeout(b.tab, 5*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	text, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
	if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
		_ = os.WriteFile(filepath.Join(b.dir, "failure.png"), png, 0o644)
	}
	return "at " + loc + ":\n" + text
}

// open navigates to a console path and waits for sel.
func (b *consoleBrowser) open(path, sel string) {
	b.t.Helper()
	b.do(chromedp.Navigate(b.base+path), chromedp.WaitVisible(chromedp.CSS(sel)))
}

// click clicks sel, which loads a page, and waits until the new page has
// loaded and shows next. The old page is marked first, so an element it
// has too cannot pass for the new page's.
func (b *consoleBrowser) click(sel, next string) {
	b.t.Helper()
	b.do(chromedp.Evaluate[chromedp.Void](`document.documentElement.dataset.old = "1"`), chromedp.Click(chromedp.CSS(sel)))
	expr := fmt.Sprintf(`document.readyState === "complete" && !document.documentElement.dataset.old && document.querySelector(%q) !== null`, next)
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			break
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("after clicking %s, no page with %s (last error %v)\n%s", sel, next, err, b.where())
		}
		time.Sleep(25 * time.Millisecond)
	}
	b.do(chromedp.WaitVisible(chromedp.CSS(next)))
}

func (b *consoleBrowser) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

func (b *consoleBrowser) count(sel string) int {
	b.t.Helper()
	n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
	if err != nil {
		b.t.Fatalf("counting %s: %v", sel, err)
	}
	return n
}

func (b *consoleBrowser) location() string {
	b.t.Helper()
	u, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		b.t.Fatal(err)
	}
	return strings.TrimPrefix(u, b.base)
}

// shot saves the whole page at a tablet's landscape width (1024) and at
// its portrait width (768), then goes back to landscape.
func (b *consoleBrowser) shot(name string) {
	b.t.Helper()
	b.n++
	for _, w := range []int64{1024, 768} {
		h := int64(768)
		if w == 768 {
			h = 1024
		}
		b.do(chromedp.EmulateViewport(w, h))
		png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
		if err != nil {
			b.t.Fatalf("screenshot %s: %v", name, err)
		}
		path := filepath.Join(b.dir, fmt.Sprintf("%02d-%s-%d.png", b.n, name, w))
		if err := os.WriteFile(path, png, 0o644); err != nil {
			b.t.Fatal(err)
		}
		b.t.Logf("screenshot %s", path)
	}
	b.do(chromedp.EmulateViewport(1024, 768))
}

func (b *consoleBrowser) signIn(token string) {
	b.t.Helper()
	b.open("/console/", "#token")
	b.do(chromedp.SetValue(chromedp.CSS("#token"), token))
	b.click("form.stack button[type=submit]", "table.logs")
}

func mustContain(t *testing.T, what, text string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(text, w) {
			t.Fatalf("%s does not show %q:\n%s", what, w, text)
		}
	}
}

func mustMatch(t *testing.T, what, text, pattern string) {
	t.Helper()
	if !regexp.MustCompile(pattern).MatchString(text) {
		t.Fatalf("%s does not match %q:\n%s", what, pattern, text)
	}
}

// A supervisor reviews and decides in the browser console: two devices
// edit one log's notes offline (a conflict); the supervisor signs in,
// finds the log, opens the queue and the conflict, picks one value with a
// reason, sees the queue empty and the resolution in the log's history,
// and the devices converge on the picked value. The corridor board shows a
// fresh report and an UNVERIFIED one; another contingent's supervisor does
// not see the log. Every page is saved as a screenshot at tablet widths.
func TestConsoleSupervisorReviewsInTheBrowser(t *testing.T) {
	start := time.Now()
	db, env := preparedDB(t)
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.DatabaseURL = db
	var logs syncBuffer
	base, stop, done := startMainLogging(t, cfg, &syncBuffer{}, slog.New(slog.NewJSONHandler(&logs, nil)))
	t.Cleanup(func() {
		stop()
		<-done
		if t.Failed() {
			for _, line := range strings.Split(logs.String(), "\n") {
				if strings.Contains(line, `"level":"ERROR"`) {
					t.Log(line)
				}
			}
		}
	})
	w := &reviewWorld{t: t, base: base, spec: loadSpec(t), env: env, devices: map[string]*fsclient.Client{}}

	// The field: two KEN devices on one patrol, a JAM device, a rejected
	// change, two corridor reports (one 8 h old).
	a := w.device("dev-a", "KEN-1", "KEN")
	bdev := w.device("dev-b", "KEN-1", "KEN")
	j := w.device("dev-j", "JAM-1", "JAM")
	w.edit(a, "patrol_logs", kenLog, map[string]string{"unit": "KEN-1", "status": "active", "route": "RN1 north, Croix-des-Bouquets",
		"notes": "start", "started_at": "2026-11-27T08:00:00Z", "leader": "Sgt. Otieno"})
	w.edit(a, "patrol_entries", "e-1", map[string]string{"patrol_id": kenLog, "unit": "KEN-1", "kind": "observation",
		"occurred_at": "2026-11-27T09:00:00Z", "text": "market calm"})
	w.edit(a, "patrol_entries", "e-2", map[string]string{"patrol_id": kenLog, "unit": "KEN-1", "kind": "community_contact",
		"occurred_at": "2026-11-27T09:40:00Z", "text": "shop owner reports a roadblock at km 4",
		"contact_name": "M. Joseph", "contact_phone": "+509 0000 0000"})
	w.sync(a, bdev)
	w.edit(a, "patrol_logs", kenLog, map[string]string{"notes": "road blocked at km 4"})
	w.edit(bdev, "patrol_logs", kenLog, map[string]string{"notes": "road open, checked 10:40"})
	w.sync(a, bdev, a)
	w.edit(j, "patrol_logs", "log-jam-1", map[string]string{"unit": "JAM-1", "status": "planned", "planned_start": "2026-11-28T06:00:00Z"})
	w.sync(j)
	now := time.Now().UTC()
	w.edit(a, "corridors", "rn1-north", map[string]string{"name": "RN1 north", "status": "open",
		"verified_at": now.Add(-20 * time.Minute).Format(time.RFC3339)})
	w.edit(bdev, "corridors", "rn2-south", map[string]string{"name": "RN2 south", "status": "closed", "reason": "barricade at km 12",
		"verified_at": now.Add(-8*time.Hour - 5*time.Minute).Format(time.RFC3339)})
	w.sync(a, bdev)
	dev := &client{t: t, base: base, spec: w.spec, token: w.token("-role", "device", "-sub", "dev-a", "-unit", "KEN-1", "-contingent", "KEN")}
	if status, out := dev.do("POST", "/v1/sync/push", []byte(`{"changes":[{"change_id":"bad-1","collection":"patrol_logs","id":"log-ken-2","vv":{"dev-a":1},"hlc":"1764300000000-0-dev-a","fields":{"unit":"KEN-1","status":"flying"}}]}`), nil); status != 200 {
		t.Fatalf("the bad change: %d %s", status, out)
	}
	kenToken := w.token("-role", "supervisor", "-sub", "sup-ken", "-contingent", "KEN")
	jamToken := w.token("-role", "supervisor", "-sub", "sup-jam", "-contingent", "JAM")
	t.Logf("field set up in %v", time.Since(start).Round(time.Millisecond))

	b := newConsoleBrowser(t, base)

	// Sign in.
	b.open("/console/", "#token")
	if loc := b.location(); loc != "/console/sign-in" {
		t.Fatalf("the console without a session is at %s, want the sign-in page", loc)
	}
	b.shot("sign-in")
	b.do(chromedp.SetValue(chromedp.CSS("#token"), kenToken))
	b.click("form.stack button[type=submit]", "table.logs")

	// The patrol logs list, filtered to the day.
	b.do(chromedp.SetValue(chromedp.CSS("input[name=from]"), "2026-11-27"), chromedp.SetValue(chromedp.CSS("input[name=to]"), "2026-11-27"))
	b.click(".filters button[type=submit]", "table.logs")
	mustContain(t, "the log list", b.text("table.logs"), "2026-11-27", "KEN-1", "active", "3f0c1a52")
	if n := b.count("table.logs tbody tr"); n != 1 {
		t.Fatalf("the log list for 2026-11-27 has %d rows, want 1", n)
	}
	b.shot("logs")

	// The log, with its entries; the contact's identifying fields are shown
	// to the KEN supervisor, marked.
	b.click("a.rowlink", "#history-link")
	mustContain(t, "the log page", b.text("main"), "RN1 north, Croix-des-Bouquets", "Sgt. Otieno", "market calm",
		"community contact", "M. Joseph", "+509 0000 0000", "Identifies a person", "1 open conflict")
	b.shot("log")

	// The queue: one conflict, both values side by side.
	b.click(`nav a[href="/console/conflicts"]`, "article.conflict")
	if n := b.count("article.conflict"); n != 1 {
		t.Fatalf("the queue has %d conflicts, want 1", n)
	}
	mustContain(t, "the queue", b.text("article.conflict"), "notes", "later_hlc", "dev-a", "dev-b",
		"road blocked at km 4", "road open, checked 10:40", "KEPT")
	b.shot("conflicts")

	// The conflict: pick dev-b's value, with a reason.
	b.click("article.conflict a.button", "#reason")
	if n := b.count(".value button.pick"); n != 2 {
		t.Fatalf("the conflict page has %d pick buttons, want 2", n)
	}
	b.shot("conflict")
	// Pick the value the merge did not keep, so the decision changes the
	// record on every device.
	pick, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`[...document.querySelectorAll('.value')].findIndex(v => !v.classList.contains('kept'))`))
	if err != nil || pick < 0 {
		t.Fatalf("finding the value not kept on the page: %d %v", pick, err)
	}
	picked, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelectorAll('.value .v')[%d].textContent`, pick)))
	if err != nil || (picked != "road blocked at km 4" && picked != "road open, checked 10:40") {
		t.Fatalf("the value to pick reads %q (%v)", picked, err)
	}
	b.do(chromedp.SetValue(chromedp.CSS("#reason"), "B checked the road after A"))
	b.click(fmt.Sprintf(`button[value="pick:%d"]`, pick), "#notice")
	if loc := b.location(); !strings.HasPrefix(loc, "/console/conflicts?resolved=") {
		t.Fatalf("after resolving the browser is at %s, want the queue (POST-redirect-GET)", loc)
	}
	mustContain(t, "the confirmation", b.text("#notice"), "Resolved", "notes", "picked", "sup-ken")
	if n := b.count("article.conflict"); n != 0 || b.count("#queue-empty") != 1 {
		t.Fatalf("the queue still shows %d conflicts after the resolution", n)
	}
	b.shot("resolved")

	// The log's history ends with the resolution: a server version by the
	// supervisor.
	b.open("/console/logs/"+kenLog, "#history-link")
	b.click("#history-link", "article.version")
	newest := "article.version:first-of-type"
	if got := b.text(newest + " .node"); got != "srv" {
		t.Fatalf("the newest version's node is %q, want srv", got)
	}
	if got := b.text(newest + " .author"); got != "sup-ken" {
		t.Fatalf("the newest version's author is %q, want sup-ken", got)
	}
	mustContain(t, "the resolution version", b.text(newest), "server version", picked)
	mustContain(t, "the history", b.text("main"), "Conflicts opened", "notes")
	b.shot("history")

	// The devices converge on the picked value.
	w.sync(a, bdev)
	for _, d := range []*fsclient.Client{a, bdev} {
		if got := value(t, d, "patrol_logs", kenLog, "notes"); got != picked {
			t.Fatalf("a device holds notes %q after the resolution", got)
		}
	}

	// Sign the log off; the button goes, the log says so.
	b.open("/console/logs/"+kenLog, "#sign-off")
	b.click("#sign-off", "#notice")
	mustContain(t, "the signed log", b.text("main"), "The patrol log is signed off", "signed off", "sup-ken")
	if n := b.count("#sign-off"); n != 0 {
		t.Fatal("a signed-off log still offers to sign off")
	}
	b.shot("signed-off")

	// The dead-letter list.
	b.click(`nav a[href="/console/rejections"]`, "table.rejections")
	mustContain(t, "the rejections", b.text("table.rejections"), "dev-a", "bad-1", "log-ken-2", "invalid_value")
	b.shot("rejections")

	// The corridor board: a fresh report, and one UNVERIFIED for 8 h.
	b.click(`nav a[href="/console/corridors"]`, ".board")
	fresh, stale := b.text("#corridor-rn1-north"), b.text("#corridor-rn2-south")
	mustContain(t, "the fresh corridor", fresh, "RN1 north", "OPEN", "Hours this week")
	mustMatch(t, "the fresh corridor", fresh, `Verified 2[01] min ago`)
	if strings.Contains(fresh, "UNVERIFIED") {
		t.Fatalf("a corridor verified 20 min ago reads UNVERIFIED:\n%s", fresh)
	}
	mustContain(t, "the stale corridor", stale, "RN2 south", "CLOSED", "UNVERIFIED", "barricade at km 12")
	mustMatch(t, "the stale corridor", stale, `Verified 8 h [56] min ago`)
	mustContain(t, "the board's summary", b.text(".summary"), "2 segments", "1 open", "1 closed", "1 UNVERIFIED")
	b.shot("corridors")

	// Sign out; the JAM supervisor does not see the KEN log.
	b.click(".signout button", "#token")
	mustContain(t, "the sign-in page after signing out", b.text("main"), "You are signed out")
	b.signIn(jamToken)
	logsText := b.text("main")
	mustContain(t, "JAM's log list", logsText, "JAM-1")
	if strings.Contains(logsText, "KEN-1") || strings.Contains(logsText, "3f0c1a52") {
		t.Fatalf("the JAM supervisor's console shows the KEN log:\n%s", logsText)
	}
	b.shot("jam-logs")
	b.open("/console/logs/"+kenLog, "#problem")
	mustContain(t, "JAM opening the KEN log", b.text("#problem"), "not_found")
	b.click(`nav a[href="/console/conflicts"]`, "#queue-empty")

	// No token reached a log line.
	for _, tok := range []string{kenToken, jamToken} {
		if strings.Contains(logs.String(), tok) || strings.Contains(logs.String(), tok[strings.LastIndexByte(tok, '.')+1:]) {
			t.Fatal("a supervisor's token is in the server log")
		}
	}
	t.Logf("browser test done in %v", time.Since(start).Round(time.Millisecond))
}
