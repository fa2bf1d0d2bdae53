package console_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestConsoleDependencies keeps the console on the API's side of the wire:
// it imports no fieldsync package at all (so it cannot reach the store,
// the syncer, the review service or the auth key ring around the API), and
// no database driver.
func TestConsoleDependencies(t *testing.T) {
	const pkg = "github.com/fieldsync/fieldsync/internal/console"
	forbidden := []string{
		"github.com/fieldsync/fieldsync/", "gorm.io/", "github.com/jackc/", "github.com/glebarez/", "modernc.org/",
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
		if dep == pkg {
			continue
		}
		for _, f := range forbidden {
			if strings.HasPrefix(dep, f) {
				t.Errorf("%s depends on %s", pkg, dep)
			}
		}
	}
}
