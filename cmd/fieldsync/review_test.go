package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/internal/config"
	fsclient "github.com/fieldsync/fieldsync/sync/client"
	"github.com/fieldsync/fieldsync/sync/merge"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// reviewWorld is a server with devices of two contingents and their
// supervisors.
type reviewWorld struct {
	t       *testing.T
	base    string
	spec    *spec
	env     map[string]string
	devices map[string]*fsclient.Client
}

// kenLog is a patrol log id (entries point at logs by UUID).
const kenLog = "3f0c1a52-0000-4000-8000-000000000001"

func newReviewWorld(t *testing.T) *reviewWorld {
	t.Helper()
	db, env := preparedDB(t)
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.DatabaseURL = db
	base, stop, done := startMain(t, cfg, &syncBuffer{})
	t.Cleanup(func() { stop(); <-done })
	return &reviewWorld{t: t, base: base, spec: loadSpec(t), env: env, devices: map[string]*fsclient.Client{}}
}

func (w *reviewWorld) token(args ...string) string {
	w.t.Helper()
	out, err := runCLI(w.t, w.env, append([]string{"token"}, args...)...)
	if err != nil {
		w.t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func (w *reviewWorld) as(args ...string) *client {
	return &client{t: w.t, base: w.base, spec: w.spec, token: w.token(args...)}
}

func (w *reviewWorld) device(id, unit, contingent string) *fsclient.Client {
	w.t.Helper()
	tok := w.token("-role", "device", "-sub", id, "-unit", unit, "-contingent", contingent)
	c, err := fsclient.Open(filepath.Join(w.t.TempDir(), id+".db"), fsclient.Config{
		BaseURL: w.base, Device: vv.NodeID(id), Token: func(context.Context) (string, error) { return tok, nil },
	})
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { c.Close() })
	w.devices[id] = c
	return c
}

func (w *reviewWorld) edit(c *fsclient.Client, collection, id string, fields map[string]string) {
	w.t.Helper()
	var fs []merge.FieldValue
	for k, v := range fields {
		b, _ := json.Marshal(v)
		fs = append(fs, merge.FieldValue{Name: k, Value: b})
	}
	if _, err := c.Edit(context.Background(), collection, id, fs, false); err != nil {
		w.t.Fatal(err)
	}
}

func (w *reviewWorld) sync(cs ...*fsclient.Client) {
	w.t.Helper()
	for _, c := range cs {
		if st, err := c.Sync(context.Background()); err != nil || st.Rejected > 0 {
			w.t.Fatalf("sync: %v (%+v)", err, st)
		}
	}
}

func getJSON[T any](t *testing.T, c *client, path string) T {
	t.Helper()
	status, body := c.do("GET", path, nil, nil)
	if status != 200 {
		t.Fatalf("GET %s = %d %s", path, status, body)
	}
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("GET %s: %v\n%s", path, err, body)
	}
	return v
}

type conflictOut struct {
	ID         string `json:"id"`
	Collection string `json:"collection"`
	RecordID   string `json:"record_id"`
	Field      string `json:"field"`
	Rule       string `json:"rule"`
	Status     string `json:"status"`
	Kept       *int   `json:"kept"`
	Resolution string `json:"resolution"`
	Values     []struct {
		Value json.RawMessage `json:"value"`
		Node  string          `json:"node"`
	} `json:"values"`
}

type conflictsOut struct {
	Conflicts []conflictOut `json:"conflicts"`
	HasMore   bool          `json:"has_more"`
}

type logsOut struct {
	PatrolLogs []struct {
		ID            string `json:"id"`
		Unit          string `json:"unit"`
		Day           string `json:"day"`
		SignedOff     bool   `json:"signed_off"`
		Entries       int    `json:"entries"`
		OpenConflicts int    `json:"open_conflicts"`
	} `json:"patrol_logs"`
}

type historyOut struct {
	Cursor   string `json:"cursor"`
	HasMore  bool   `json:"has_more"`
	Versions []struct {
		ChangeID        string `json:"change_id"`
		Node            string `json:"node"`
		Author          string `json:"author"`
		Outcome         string `json:"outcome"`
		ConflictsOpened []struct {
			Field, Rule string
		} `json:"conflicts_opened"`
		Changed []struct {
			Field, Rule string
		} `json:"changed"`
		State json.RawMessage `json:"state"`
	} `json:"versions"`
}

func pickOf(t *testing.T, c conflictOut, value string) int {
	t.Helper()
	want, _ := json.Marshal(value)
	for i, v := range c.Values {
		if bytes.Equal(v.Value, want) {
			return i
		}
	}
	t.Fatalf("conflict %s has no value %s: %+v", c.ID, want, c.Values)
	return -1
}

func value(t *testing.T, c *fsclient.Client, collection, id, field string) string {
	t.Helper()
	rec, err := c.Record(collection, id)
	if err != nil || rec == nil {
		t.Fatalf("record %s/%s on the device: %v", collection, id, err)
	}
	var s string
	_ = json.Unmarshal(rec.Value(field), &s)
	return s
}

// Two devices edit one log's notes offline; a supervisor resolves the
// conflict by picking one side; both devices pull the resolution and
// converge on it, the queue empties, and the history shows the server
// version. A sign-off then freezes the log: a device edit made without
// having seen it lands as a pending amendment, not in the log, until the
// supervisor accepts it.
func TestSupervisorResolvesAndSignsOffAndDevicesConverge(t *testing.T) {
	w := newReviewWorld(t)
	a := w.device("dev-a", "KEN-1", "KEN")
	b := w.device("dev-b", "KEN-1", "KEN")
	sup := w.as("-role", "supervisor", "-sub", "sup-ken", "-contingent", "KEN")

	w.edit(a, "patrol_logs", kenLog, map[string]string{"unit": "KEN-1", "status": "active", "notes": "start", "started_at": "2026-11-27T08:00:00Z"})
	w.edit(a, "patrol_entries", "e-1", map[string]string{"patrol_id": kenLog, "unit": "KEN-1", "kind": "observation", "occurred_at": "2026-11-27T09:00:00Z", "text": "market calm"})
	w.sync(a, b)
	// Both edit the notes without seeing each other.
	w.edit(a, "patrol_logs", kenLog, map[string]string{"notes": "road blocked at km 4"})
	w.edit(b, "patrol_logs", kenLog, map[string]string{"notes": "road open, checked 10:40"})
	w.sync(a, b, a)

	logs := getJSON[logsOut](t, sup, "/v1/patrol-logs?has_conflicts=true&from=2026-11-27&to=2026-11-27")
	if len(logs.PatrolLogs) != 1 || logs.PatrolLogs[0].ID != kenLog || logs.PatrolLogs[0].OpenConflicts != 1 || logs.PatrolLogs[0].Day != "2026-11-27" {
		t.Fatalf("patrol logs with conflicts: %+v", logs)
	}
	if logs := getJSON[logsOut](t, sup, "/v1/patrol-logs?from=2026-11-28"); len(logs.PatrolLogs) != 0 {
		t.Fatalf("a log of the 27th listed from the 28th: %+v", logs)
	}
	open := getJSON[conflictsOut](t, sup, "/v1/conflicts?status=open")
	if len(open.Conflicts) != 1 || open.Conflicts[0].Field != "notes" || len(open.Conflicts[0].Values) != 2 {
		t.Fatalf("open conflicts: %+v", open)
	}
	cf := open.Conflicts[0]
	pick := pickOf(t, cf, "road open, checked 10:40")

	// Bad decisions are refused with a problem and change nothing.
	for _, bad := range []string{
		`{"choice":"pick","pick":7,"reason":"x"}`,
		`{"choice":"pick","reason":"x"}`,
		`{"choice":"keep"}`,
		`{"choice":"coin-toss","reason":"x"}`,
		`{"choice":"value","value":12,"reason":"notes are text"}`,
	} {
		if status, body := sup.do("POST", "/v1/conflicts/"+cf.ID+"/resolve", []byte(bad), nil); status != 422 {
			t.Fatalf("resolve %s = %d %s, want 422", bad, status, body)
		}
	}
	if n := len(getJSON[conflictsOut](t, sup, "/v1/conflicts?status=open").Conflicts); n != 1 {
		t.Fatalf("a refused decision changed the queue: %d open", n)
	}

	body := []byte(`{"choice":"pick","pick":` + strconv.Itoa(pick) + `,"reason":"B checked the road after A"}`)
	status, out := sup.do("POST", "/v1/conflicts/"+cf.ID+"/resolve", body, nil)
	if status != 200 || !bytes.Contains(out, []byte(`"status":"resolved"`)) || !bytes.Contains(out, []byte(`"resolution":"picked"`)) {
		t.Fatalf("resolve = %d %s", status, out)
	}
	// The same decision again (a lost answer) is answered the same; another is refused.
	if status, _ := sup.do("POST", "/v1/conflicts/"+cf.ID+"/resolve", body, nil); status != 200 {
		t.Fatalf("repeating the decision = %d", status)
	}
	if status, _ := sup.do("POST", "/v1/conflicts/"+cf.ID+"/resolve", []byte(`{"choice":"keep","reason":"changed my mind"}`), nil); status != 409 {
		t.Fatalf("a second, different decision = %d, want 409", status)
	}
	if n := len(getJSON[conflictsOut](t, sup, "/v1/conflicts?status=open").Conflicts); n != 0 {
		t.Fatalf("the queue did not shrink: %d open", n)
	}
	w.sync(a, b)
	for _, d := range []*fsclient.Client{a, b} {
		if got := value(t, d, "patrol_logs", kenLog, "notes"); got != "road open, checked 10:40" {
			t.Fatalf("a device holds notes %q after the resolution", got)
		}
	}
	ra, _ := a.Record("patrol_logs", kenLog)
	rb, _ := b.Record("patrol_logs", kenLog)
	if !bytes.Equal(ra.AppendJSON(nil), rb.AppendJSON(nil)) {
		t.Fatalf("devices differ after the resolution:\n%s\n%s", ra.AppendJSON(nil), rb.AppendJSON(nil))
	}
	hist := getJSON[historyOut](t, sup, "/v1/records/patrol_logs/"+kenLog+"/history")
	last := hist.Versions[len(hist.Versions)-1]
	if last.Node != "srv" || last.Author != "sup-ken" || !bytes.Equal(last.State, ra.AppendJSON(nil)) {
		t.Fatalf("the history's last version is not the resolution as the devices hold it: %+v", last)
	}
	// Paged one version at a time, the history is the same list.
	var paged []string
	for cursor := ""; ; {
		page := getJSON[historyOut](t, sup, "/v1/records/patrol_logs/"+kenLog+"/history?limit=1&cursor="+cursor)
		for _, v := range page.Versions {
			paged = append(paged, v.ChangeID)
		}
		if !page.HasMore {
			break
		}
		cursor = page.Cursor
	}
	if len(paged) != len(hist.Versions) || paged[0] != hist.Versions[0].ChangeID || paged[len(paged)-1] != last.ChangeID {
		t.Fatalf("the paged history differs: %v", paged)
	}
	opened := false
	for _, v := range hist.Versions {
		for _, o := range v.ConflictsOpened {
			opened = opened || o.Field == "notes"
		}
	}
	if !opened {
		t.Fatalf("no version of the history opened the notes conflict: %+v", hist)
	}

	// Sign-off, then a late edit from a device that had not seen it.
	w.edit(a, "patrol_logs", kenLog, map[string]string{"summary": "written after the fact"})
	status, out = sup.do("POST", "/v1/patrol-logs/"+kenLog+"/sign-off", nil, nil)
	if status != 200 || !bytes.Contains(out, []byte(`"signed_off":true`)) {
		t.Fatalf("sign-off = %d %s", status, out)
	}
	if status, _ := sup.do("POST", "/v1/patrol-logs/"+kenLog+"/sign-off", nil, nil); status != 409 {
		t.Fatalf("signing twice = %d, want 409", status)
	}
	w.sync(a, b)
	for _, d := range []*fsclient.Client{a, b} {
		if got := value(t, d, "patrol_logs", kenLog, "summary"); got != "" {
			t.Fatalf("the late edit changed the signed log on a device: summary %q", got)
		}
	}
	amend := getJSON[conflictsOut](t, sup, "/v1/conflicts?status=open&rule=sign_off_freeze")
	if len(amend.Conflicts) != 1 || amend.Conflicts[0].Field != "summary" {
		t.Fatalf("the late edit is not a pending amendment: %+v", amend)
	}
	am := amend.Conflicts[0]
	body = []byte(`{"choice":"pick","pick":` + strconv.Itoa(pickOf(t, am, "written after the fact")) + `,"reason":"accepted amendment"}`)
	if status, out := sup.do("POST", "/v1/conflicts/"+am.ID+"/resolve", body, nil); status != 200 {
		t.Fatalf("accepting the amendment = %d %s", status, out)
	}
	w.sync(a, b)
	for _, d := range []*fsclient.Client{a, b} {
		if got := value(t, d, "patrol_logs", kenLog, "summary"); got != "written after the fact" {
			t.Fatalf("the accepted amendment is not on the device: %q", got)
		}
		if got, _ := d.Record("patrol_logs", kenLog); string(got.Value("signed_off")) != "true" {
			t.Fatal("accepting an amendment unsigned the log")
		}
	}
	logs = getJSON[logsOut](t, sup, "/v1/patrol-logs?signed_off=true")
	if len(logs.PatrolLogs) != 1 || logs.PatrolLogs[0].Entries != 1 || logs.PatrolLogs[0].OpenConflicts != 0 {
		t.Fatalf("signed logs: %+v", logs)
	}
}

// A supervisor of one contingent sees and decides nothing of another's:
// lists are empty, single reads and decisions answer 404 as for a missing
// record; devices and partners are refused the review routes.
func TestReviewIsScopedToTheSupervisorsContingent(t *testing.T) {
	w := newReviewWorld(t)
	a := w.device("dev-a", "KEN-1", "KEN")
	b := w.device("dev-b", "KEN-1", "KEN")
	j := w.device("dev-j", "JAM-1", "JAM")
	w.edit(a, "patrol_logs", kenLog, map[string]string{"unit": "KEN-1", "status": "active"})
	w.sync(a, b)
	w.edit(a, "patrol_logs", kenLog, map[string]string{"route": "RN1 north"})
	w.edit(b, "patrol_logs", kenLog, map[string]string{"route": "RN1 south"})
	w.sync(a, b)
	w.edit(j, "patrol_logs", "log-jam-1", map[string]string{"unit": "JAM-1", "status": "planned"})
	w.sync(j)
	// A change the server refuses, for the dead-letter list.
	tok := w.token("-role", "device", "-sub", "dev-a", "-unit", "KEN-1", "-contingent", "KEN")
	dev := &client{t: t, base: w.base, spec: w.spec, token: tok}
	if status, out := dev.do("POST", "/v1/sync/push", []byte(`{"changes":[{"change_id":"bad-1","collection":"patrol_logs","id":"log-ken-2","vv":{"dev-a":1},"hlc":"1764300000000-0-dev-a","fields":{"unit":"KEN-1","status":"flying"}}]}`), nil); status != 200 || !bytes.Contains(out, []byte(`"rejected"`)) {
		t.Fatalf("the bad change: %d %s", status, out)
	}

	ken := w.as("-role", "supervisor", "-sub", "sup-ken", "-contingent", "KEN")
	jam := w.as("-role", "supervisor", "-sub", "sup-jam", "-contingent", "JAM")
	all := w.as("-role", "supervisor", "-sub", "sup-all")

	kenConf := getJSON[conflictsOut](t, ken, "/v1/conflicts")
	if len(kenConf.Conflicts) != 1 || kenConf.Conflicts[0].RecordID != kenLog {
		t.Fatalf("KEN's conflicts: %+v", kenConf)
	}
	id := kenConf.Conflicts[0].ID
	if got := getJSON[conflictsOut](t, jam, "/v1/conflicts"); len(got.Conflicts) != 0 {
		t.Fatalf("JAM sees KEN's conflicts: %+v", got)
	}
	if got := getJSON[conflictsOut](t, all, "/v1/conflicts"); len(got.Conflicts) != 1 {
		t.Fatalf("a supervisor of all sees %d conflicts, want 1", len(got.Conflicts))
	}
	logs := getJSON[logsOut](t, jam, "/v1/patrol-logs")
	if len(logs.PatrolLogs) != 1 || logs.PatrolLogs[0].ID != "log-jam-1" {
		t.Fatalf("JAM's logs: %+v", logs)
	}
	var rej struct {
		Rejections []struct {
			ChangeID string `json:"change_id"`
			Code     string `json:"code"`
		} `json:"rejections"`
	}
	rej = getJSON[struct {
		Rejections []struct {
			ChangeID string `json:"change_id"`
			Code     string `json:"code"`
		} `json:"rejections"`
	}](t, ken, "/v1/rejections")
	if len(rej.Rejections) != 1 || rej.Rejections[0].ChangeID != "bad-1" {
		t.Fatalf("KEN's rejections: %+v", rej)
	}
	if status, body := jam.do("GET", "/v1/rejections", nil, nil); status != 200 || bytes.Contains(body, []byte("bad-1")) {
		t.Fatalf("JAM's rejections: %d %s", status, body)
	}
	for _, c := range []struct {
		method, path, body string
	}{
		{"GET", "/v1/records/patrol_logs/" + kenLog + "/history", ""},
		{"GET", "/v1/conflicts/" + id, ""},
		{"POST", "/v1/conflicts/" + id + "/resolve", `{"choice":"keep","reason":"x"}`},
		{"POST", "/v1/patrol-logs/" + kenLog + "/sign-off", ""},
	} {
		var body []byte
		if c.body != "" {
			body = []byte(c.body)
		}
		if status, out := jam.do(c.method, c.path, body, nil); status != 404 {
			t.Fatalf("JAM %s %s = %d %s, want 404", c.method, c.path, status, out)
		}
	}
	if status, _ := ken.do("GET", "/v1/records/patrol_logs/"+kenLog+"/history", nil, nil); status != 200 {
		t.Fatalf("KEN reading its own log's history = %d", status)
	}
	partner := w.as("-role", "partner", "-sub", "agency-1")
	for _, path := range []string{"/v1/conflicts", "/v1/patrol-logs", "/v1/rejections", "/v1/records/corridors/c1/history", "/v1/reports/corridors?from=2026-11-01&to=2026-11-02"} {
		if status, _ := partner.do("GET", path, nil, nil); status != 403 {
			t.Fatalf("a partner GET %s = %d, want 403", path, status)
		}
		if status, _ := dev.do("GET", path, nil, nil); status != 403 {
			t.Fatalf("a device GET %s = %d, want 403", path, status)
		}
	}
	for _, path := range []string{"/v1/conflicts?colection=corridors", "/v1/conflicts?status=maybe", "/v1/patrol-logs?from=yesterday", "/v1/patrol-logs?limit=0", "/v1/reports/corridors?from=2026-11-02&to=2026-11-01"} {
		if status, _ := ken.do("GET", path, nil, nil); status != 400 {
			t.Fatalf("GET %s = %d, want 400", path, status)
		}
	}
	// Admins read everything but decide nothing.
	admin := w.as("-role", "admin", "-sub", "ops-1")
	if got := getJSON[conflictsOut](t, admin, "/v1/conflicts"); len(got.Conflicts) != 1 {
		t.Fatalf("admin conflicts: %+v", got)
	}
	if status, _ := admin.do("POST", "/v1/conflicts/"+id+"/resolve", []byte(`{"choice":"keep","reason":"x"}`), nil); status != 403 {
		t.Fatalf("an admin resolving = %d, want 403", status)
	}
	if status, out := ken.do("GET", "/v1/reports/corridors?from=2026-11-01&to=2026-11-02&format=csv", nil, nil); status != 200 || !bytes.HasPrefix(out, []byte("corridor,from,to,hours_open")) {
		t.Fatalf("CSV report: %d %s", status, out)
	}
}
