package audit_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// audit is pure, as the engine is (STYLE.md, The engine stays pure): the
// store does the I/O and passes times in, so the same rows verify to the
// same result anywhere. These tests keep it that way.

const pkg = "github.com/fieldsync/fieldsync/internal/audit"

// allowedDeps are the only packages outside the standard library that
// audit may depend on, directly or not.
var allowedDeps = []string{pkg, "golang.org/x/mod/sumdb/note"}

// forbiddenImports are standard-library packages audit may not import:
// I/O, logging, and randomness (signing keys come in as values).
var forbiddenImports = []string{"crypto/rand", "database/sql", "io/fs", "log", "log/slog", "math/rand", "math/rand/v2", "net", "net/http", "os", "os/exec"}

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("cannot find the go command (go test puts it on PATH): %v", err)
	}
	out, err := exec.Command(goBin, append([]string{"list"}, args...)...).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", strings.Join(args, " "), err)
	}
	return strings.Fields(string(out))
}

func TestDependencies(t *testing.T) {
	deps := goList(t, "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg)
	if !slices.Contains(deps, pkg) {
		t.Fatalf("go list -deps did not report %s itself: %q", pkg, deps)
	}
	for _, d := range deps {
		if !slices.Contains(allowedDeps, d) {
			t.Errorf("%s depends on %s", pkg, d)
		}
	}
	for _, imp := range goList(t, "-f", `{{join .Imports "\n"}}`, pkg) {
		if slices.Contains(forbiddenImports, imp) {
			t.Errorf("%s imports %s", pkg, imp)
		}
	}
}

// TestReadsNoClock scans the package's sources (not its tests) for the
// functions of package time that read or wait on the real clock.
func TestReadsNoClock(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	scanned := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"Now", "Since", "Until", "Sleep", "After", "AfterFunc", "Tick", "NewTicker", "NewTimer"} {
			if strings.Contains(string(src), "time."+f+"(") {
				t.Errorf("%s calls time.%s; times come in as values", name, f)
			}
		}
		if strings.Contains(string(src), "go func") {
			t.Errorf("%s starts a goroutine", name)
		}
		scanned++
	}
	if scanned == 0 {
		t.Fatal("no source files scanned")
	}
}
