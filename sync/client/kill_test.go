package client_test

import (
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/sync/client"
)

// childEnv marks the re-executed test binary that plays the device.
const childEnv = "FIELDSYNC_CLIENT_CHILD"

// TestChildSync is the device process of TestKilledMidSyncLosesAndDuplicatesNothing:
// it syncs until killed. It does nothing in a normal run.
func TestChildSync(t *testing.T) {
	if os.Getenv(childEnv) != "1" {
		return
	}
	tok := os.Getenv("CHILD_TOKEN")
	c, err := client.Open(os.Getenv("CHILD_DB"), client.Config{
		BaseURL: os.Getenv("CHILD_BASE"), Device: "dev-k", MaxBatch: 5,
		Token: func(context.Context) (string, error) { return tok, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := c.Sync(context.Background()); err != nil {
			t.Log(err)
		}
	}
}

// A device process killed (SIGKILL) in the middle of a sync, at whatever
// point it reached, restarts and finishes: every edit reaches the server
// exactly once.
func TestKilledMidSyncLosesAndDuplicatesNothing(t *testing.T) {
	s := newServer(t, 0)
	tok, err := s.ring.Issue(domain.Identity{Subject: "dev-k", Role: domain.RoleDevice, Unit: "KEN-3", Contingent: "KEN"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dev-k.db")
	cfg := client.Config{BaseURL: s.base, Device: "dev-k", Token: func(context.Context) (string, error) { return tok, nil }}
	c, err := client.Open(path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	const edits = 300
	for i := 0; i < edits; i++ {
		mustEdit(t, c, "patrol_logs", "log-"+strconv.Itoa(i), fv("unit", `"KEN-3"`, "status", `"planned"`))
	}
	_ = c.Close()

	count := func(q string) int64 {
		var n int64
		if err := s.db.Store.DB().Raw(q).Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
		return n
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildSync$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "CHILD_DB="+path, "CHILD_BASE="+s.base, "CHILD_TOKEN="+tok)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once the server holds a random share of the edits, so runs
	// catch it at different points (mid-request, between commit and
	// response, between batches).
	threshold := int64(1 + rand.IntN(edits-50))
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := count("SELECT count(*) FROM record_versions")
		if n >= threshold && n < edits {
			break
		}
		if n >= edits || time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("could not catch the device mid-sync (%d of %d delivered)", n, edits)
		}
		time.Sleep(time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	delivered := count("SELECT count(*) FROM record_versions")

	c, err = client.Open(path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.Pending(); n != 0 {
		t.Fatalf("%d edits pending after the restarted sync", n)
	}
	if v, r, seen := count("SELECT count(*) FROM record_versions"), count("SELECT count(*) FROM records"), count("SELECT count(*) FROM seen_changes"); v != edits || r != edits || seen != edits {
		t.Fatalf("server holds %d versions, %d records, %d change ids; want %d each (nothing lost, nothing twice)", v, r, seen, edits)
	}
	for i := 0; i < edits; i += 37 {
		if r, _ := c.Record("patrol_logs", "log-"+strconv.Itoa(i)); r == nil {
			t.Fatalf("log-%d missing locally", i)
		}
	}
	t.Logf("killed after %d of %d edits reached the server; the restart delivered the rest once", delivered, edits)
}
