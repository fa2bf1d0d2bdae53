package api_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the HTTP layer off the database: it knows the
// syncer through domain.Syncer, never GORM or a driver (STYLE.md, Layout).
func TestDependencies(t *testing.T) {
	const pkg = "github.com/fieldsync/fieldsync/internal/api"
	forbidden := []string{
		"gorm.io/", "github.com/jackc/", "github.com/glebarez/", "modernc.org/",
		"github.com/fieldsync/fieldsync/internal/store",
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("no go command to list dependencies with; CI must run this check")
		}
		t.Skip("no go command to list dependencies with")
	}
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{.ImportPath}}", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	for dep := range strings.FieldsSeq(string(out)) {
		for _, f := range forbidden {
			if strings.HasPrefix(dep, f) {
				t.Errorf("%s depends on %s", pkg, dep)
			}
		}
	}
}
