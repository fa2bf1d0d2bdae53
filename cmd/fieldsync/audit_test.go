package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/internal/store"
)

// The audit commands as an administrator runs them: a checkpoint printed
// and kept off the server, verify passing, then failing with the entry's
// number once a row of the trail is changed, and failing on a truncated
// tail only against the checkpoint.
func TestAuditCheckpointAndVerifyCommands(t *testing.T) {
	w := newReviewWorld(t)
	a := w.device("dev-a", "KEN-1", "KEN")
	w.edit(a, "patrol_logs", kenLog, map[string]string{"unit": "KEN-1", "status": "active"})
	w.sync(a)
	w.edit(a, "patrol_logs", kenLog, map[string]string{"summary": "quiet"})
	w.sync(a)
	note, err := runCLI(t, w.env, "audit", "checkpoint")
	if err != nil || !strings.HasPrefix(note, "fieldsync audit checkpoint\n") {
		t.Fatalf("checkpoint: %v\n%s", err, note)
	}
	cpFile := filepath.Join(t.TempDir(), "head.note")
	if err := os.WriteFile(cpFile, []byte(note), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, w.env, "audit", "verify", "-checkpoint", cpFile)
	if err != nil || !strings.Contains(out, "audit trail verified") {
		t.Fatalf("verify: %v %s", err, out)
	}
	// A forged checkpoint (its body edited) is refused.
	forged := filepath.Join(t.TempDir(), "forged.note")
	os.WriteFile(forged, []byte(strings.Replace(note, "\nfieldsync\n", "\nfieldsynk\n", 1)), 0o600)
	if _, err := runCLI(t, w.env, "audit", "verify", "-checkpoint", forged); err == nil {
		t.Fatal("a forged checkpoint verified")
	}

	s, err := store.Open(context.Background(), w.env["FIELDSYNC_DATABASE_URL"], store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var n int64
	s.DB().Raw(`SELECT MAX(seq) FROM audit_log`).Scan(&n)
	// Deleting the newest entry leaves a consistent chain: only the
	// checkpoint catches it.
	if err := s.DB().Exec(`DELETE FROM audit_log WHERE seq = ?`, n).Error; err != nil {
		t.Fatal(err)
	}
	if out, err := runCLI(t, w.env, "audit", "verify"); err == nil || !strings.Contains(err.Error(), "record history") {
		// The versions the deleted entry committed to are now in no entry.
		t.Fatalf("verify without checkpoint after truncation: %v %s", err, out)
	}
	if _, err := runCLI(t, w.env, "audit", "verify", "-checkpoint", cpFile); err == nil || !strings.Contains(err.Error(), "entry") {
		t.Fatalf("verify with checkpoint after truncation: %v", err)
	}
	if err := s.DB().Exec(`UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2`).Error; err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, w.env, "audit", "verify"); err == nil || !strings.Contains(err.Error(), "entry 2") {
		t.Fatalf("verify after an edited entry 2: %v", err)
	}
}
