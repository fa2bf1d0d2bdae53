package client_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/api"
	"github.com/fieldsync/fieldsync/internal/auth"
	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/internal/store/dbtest"
	"github.com/fieldsync/fieldsync/internal/syncer"
	"github.com/fieldsync/fieldsync/sync/client"
	"github.com/fieldsync/fieldsync/sync/hlc"
	"github.com/fieldsync/fieldsync/sync/merge"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// server runs the real fieldsync HTTP server on loopback, on a fresh
// database, and mints device tokens.
type server struct {
	base string
	ring *auth.Keyring
	db   dbtest.DB
}

func newServer(t *testing.T, maxChanges int) *server {
	t.Helper()
	db := dbtest.SQLite(t)
	ctx := context.Background()
	ring, err := auth.NewKeyring(ctx, db.Store, auth.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ring.EnsureSigningKey(ctx); err != nil {
		t.Fatal(err)
	}
	svc := syncer.New(db.Store, hlc.NewClock(vv.Server, func() int64 { return time.Now().UnixMilli() }, 60_000), time.Now, syncer.Config{})
	app := api.New(api.Config{MaxChanges: maxChanges}, api.Deps{
		Syncer: svc, Verifier: ring, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = app.Listener(ln) }()
	t.Cleanup(func() { _ = app.Shutdown(); _ = ln.Close() })
	return &server{base: "http://" + ln.Addr().String(), ring: ring, db: db}
}

func (s *server) device(t *testing.T, id, unit string) *client.Client {
	t.Helper()
	tok, err := s.ring.Issue(domain.Identity{Subject: id, Role: domain.RoleDevice, Unit: unit, Contingent: "KEN"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Open(filepath.Join(t.TempDir(), id+".db"), client.Config{
		BaseURL: s.base, Device: vv.NodeID(id), Backoff: 10 * time.Millisecond,
		Token: func(context.Context) (string, error) { return tok, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func fv(kv ...string) []merge.FieldValue {
	var out []merge.FieldValue
	for i := 0; i < len(kv); i += 2 {
		out = append(out, merge.FieldValue{Name: kv[i], Value: []byte(kv[i+1])})
	}
	return out
}

func mustEdit(t *testing.T, c *client.Client, collection, id string, fields []merge.FieldValue) {
	t.Helper()
	if _, err := c.Edit(context.Background(), collection, id, fields, false); err != nil {
		t.Fatal(err)
	}
}

func mustSync(t *testing.T, c *client.Client) client.Stats {
	t.Helper()
	st, err := c.Sync(context.Background())
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return st
}

func canonical(t *testing.T, c *client.Client, collection, id string) []byte {
	t.Helper()
	r, err := c.Record(collection, id)
	if err != nil || r == nil {
		t.Fatalf("%s/%s: %v %v", collection, id, r, err)
	}
	return r.AppendJSON(nil)
}

// Three officers edit one patrol log and report one corridor while
// offline, then sync in turn: every device ends with the same state, and
// the corridor keeps the most restrictive report.
func TestDevicesEditingOfflineConverge(t *testing.T) {
	s := newServer(t, 0)
	a, b, c := s.device(t, "dev-a", "KEN-3"), s.device(t, "dev-b", "KEN-3"), s.device(t, "dev-c", "KEN-3")
	mustEdit(t, a, "patrol_logs", "log-1", fv("unit", `"KEN-3"`, "status", `"planned"`, "route", `"RN1"`))
	mustSync(t, a)
	mustSync(t, b)
	mustSync(t, c)
	// Offline now: concurrent edits of the same fields.
	mustEdit(t, a, "patrol_logs", "log-1", fv("status", `"completed"`, "notes", `"all quiet"`))
	mustEdit(t, b, "patrol_logs", "log-1", fv("status", `"active"`, "route", `"RN1 via Kafou"`))
	mustEdit(t, c, "patrol_logs", "log-1", fv("notes", `"checkpoint passed"`))
	mustEdit(t, a, "corridors", "rn1", fv("status", `"open"`))
	mustEdit(t, b, "corridors", "rn1", fv("status", `"closed"`, "reason", `"barricade"`))
	for round := 0; round < 2; round++ {
		for _, d := range []*client.Client{a, b, c} {
			mustSync(t, d)
		}
	}
	for _, key := range [][2]string{{"patrol_logs", "log-1"}, {"corridors", "rn1"}} {
		want := canonical(t, a, key[0], key[1])
		for _, d := range []*client.Client{b, c} {
			if got := canonical(t, d, key[0], key[1]); !bytes.Equal(got, want) {
				t.Fatalf("%s diverged:\n%s\n%s", key, got, want)
			}
		}
	}
	log, _ := a.Record("patrol_logs", "log-1")
	if string(log.Value("status")) != `"completed"` {
		t.Fatalf("status %s, want completed (highest of concurrent)", log.Value("status"))
	}
	corr, _ := a.Record("corridors", "rn1")
	if string(corr.Value("status")) != `"closed"` {
		t.Fatalf("corridor %s, want closed (most restrictive)", corr.Value("status"))
	}
	for _, d := range []*client.Client{a, b, c} {
		if n, _ := d.Pending(); n != 0 {
			t.Fatalf("%d edits still pending after sync", n)
		}
	}
}

// An edit the server refuses (another unit's log) leaves the device: the
// local state is rebuilt without it.
func TestARejectedEditIsDroppedLocally(t *testing.T) {
	s := newServer(t, 0)
	d := s.device(t, "dev-a", "KEN-3")
	mustEdit(t, d, "patrol_logs", "log-other", fv("unit", `"KEN-9"`, "status", `"active"`))
	mustEdit(t, d, "patrol_logs", "log-own", fv("unit", `"KEN-3"`, "status", `"active"`))
	st := mustSync(t, d)
	if st.Pushed != 2 || st.Rejected != 1 {
		t.Fatalf("stats %+v, want 2 pushed, 1 rejected", st)
	}
	if r, _ := d.Record("patrol_logs", "log-other"); r != nil {
		t.Fatalf("the refused record stays locally: %s", r.AppendJSON(nil))
	}
	if r, _ := d.Record("patrol_logs", "log-own"); r == nil {
		t.Fatal("the accepted record is gone")
	}
}

// A server that takes fewer changes per push than the client sends answers
// 413; the client halves its batches and gets everything through.
func TestBatchesShrinkOn413(t *testing.T) {
	s := newServer(t, 5)
	d := s.device(t, "dev-a", "KEN-3")
	for i := 0; i < 23; i++ {
		mustEdit(t, d, "patrol_logs", "log-"+strconv.Itoa(i), fv("unit", `"KEN-3"`, "status", `"planned"`))
	}
	st := mustSync(t, d)
	if st.Pushed != 23 || st.Rejected != 0 {
		t.Fatalf("stats %+v, want 23 pushed", st)
	}
	if n, _ := d.Pending(); n != 0 {
		t.Fatalf("%d still pending", n)
	}
	other := s.device(t, "dev-b", "KEN-3")
	if st := mustSync(t, other); st.Pulled != 23 {
		t.Fatalf("another device pulled %d, want 23", st.Pulled)
	}
}

// A client reopened from its file resumes: pending edits are still there,
// the clock never goes back, and the next sync pushes them once.
func TestAReopenedClientResumes(t *testing.T) {
	s := newServer(t, 0)
	tok, err := s.ring.Issue(domain.Identity{Subject: "dev-a", Role: domain.RoleDevice, Unit: "KEN-3", Contingent: "KEN"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dev-a.db")
	cfg := client.Config{BaseURL: s.base, Device: "dev-a", Token: func(context.Context) (string, error) { return tok, nil }}
	c1, err := client.Open(path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustEdit(t, c1, "patrol_logs", "log-1", fv("unit", `"KEN-3"`, "status", `"planned"`))
	r1, _ := c1.Record("patrol_logs", "log-1")
	f, _ := r1.Field("status")
	stamp := f.Writes[f.Kept].HLC
	_ = c1.Close()
	c2, err := client.Open(path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if n, _ := c2.Pending(); n != 1 {
		t.Fatalf("%d pending after reopening, want 1", n)
	}
	r2, err := c2.Edit(context.Background(), "patrol_logs", "log-1", fv("status", `"active"`), false)
	if err != nil {
		t.Fatal(err)
	}
	f2, _ := r2.Field("status")
	if !stamp.Less(f2.Writes[f2.Kept].HLC) {
		t.Fatalf("the clock went back after a restart: %s then %s", stamp, f2.Writes[f2.Kept].HLC)
	}
	if st := mustSync(t, c2); st.Pushed != 2 || st.Rejected != 0 {
		t.Fatalf("stats %+v", st)
	}
	var versions int64
	if err := s.db.Store.DB().Raw("SELECT count(*) FROM record_versions").Scan(&versions).Error; err != nil {
		t.Fatal(err)
	}
	if versions != 2 {
		t.Fatalf("%d versions on the server, want 2 (each edit once)", versions)
	}

}
