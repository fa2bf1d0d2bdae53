package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/internal/auth"
	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/internal/store"
)

func runCLI(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, &out, &errb)
	return out.String(), err
}

// preparedDB returns a migrated SQLite database with a signing key, as an
// administrator leaves it before the first serve, and its environment.
func preparedDB(t *testing.T) (string, map[string]string) {
	t.Helper()
	db := filepath.Join(t.TempDir(), "fieldsync.db")
	env := map[string]string{"FIELDSYNC_DATABASE_URL": db}
	for _, args := range [][]string{{"migrate"}, {"keys", "rotate"}} {
		if _, err := runCLI(t, env, args...); err != nil {
			t.Fatal(err)
		}
	}
	return db, env
}

func TestTokenMintsAVerifiableTokenAfterKeyRotation(t *testing.T) {
	env := map[string]string{"FIELDSYNC_DATABASE_URL": filepath.Join(t.TempDir(), "fieldsync.db")}
	if _, err := runCLI(t, env, "token", "-role", "supervisor", "-sub", "sup-1"); err == nil {
		t.Fatal("token on an unmigrated database succeeded")
	}
	if _, err := runCLI(t, env, "migrate"); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, env, "token", "-role", "supervisor", "-sub", "sup-1"); err == nil || !strings.Contains(err.Error(), "keys rotate") {
		t.Fatalf("token without a signing key: %v, want a hint to rotate keys", err)
	}
	if out, err := runCLI(t, env, "keys", "rotate"); err != nil || !strings.Contains(out, "new signing key") {
		t.Fatalf("keys rotate: %q %v", out, err)
	}
	for _, bad := range [][]string{
		{"token", "-role", "king", "-sub", "x"},
		{"token", "-role", "supervisor"},
		{"token", "-role", "supervisor", "-sub", "sup-1", "-ttl", "10000h"},
		{"token", "-role", "device", "-sub", "dev-1"}, // a device needs its unit
	} {
		if _, err := runCLI(t, env, bad...); err == nil {
			t.Fatalf("%v was accepted", bad)
		}
	}
	out, err := runCLI(t, env, "token", "-role", "supervisor", "-sub", "sup-1", "-contingent", "KEN", "-ttl", "2h")
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(context.Background(), env["FIELDSYNC_DATABASE_URL"], store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ring, err := auth.NewKeyring(context.Background(), s, auth.Config{Issuer: "fieldsync", Audience: "fieldsync"})
	if err != nil {
		t.Fatal(err)
	}
	id, err := ring.Verify(strings.TrimSpace(out))
	if err != nil || id.Role != domain.RoleSupervisor || id.Subject != "sup-1" || id.Contingent != "KEN" {
		t.Fatalf("minted token verifies as %+v, %v", id, err)
	}
}

func TestSimCommandReportsConvergence(t *testing.T) {
	out, err := runCLI(t, map[string]string{}, "sim", "-devices", "4", "-units", "2", "-edits", "25", "-seed", "3", "-faults", "0.2")
	if err != nil {
		t.Fatalf("sim: %v\n%s", err, out)
	}
	if !strings.Contains(out, "seed 3") || !strings.Contains(out, "divergent 0, missing 0, pending 0") || !strings.Contains(out, "OK:") {
		t.Fatalf("sim report:\n%s", out)
	}
}
