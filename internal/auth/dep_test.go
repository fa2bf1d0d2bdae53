package auth_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps auth free of HTTP and of the database: it is
// claims in, identity out (STYLE.md, Layout).
func TestDependencies(t *testing.T) {
	forbidden := []string{
		"github.com/gofiber/", "github.com/valyala/", "net/http",
		"gorm.io/", "github.com/jackc/", "github.com/glebarez/", "modernc.org/",
		"github.com/fieldsync/fieldsync/internal/api", "github.com/fieldsync/fieldsync/internal/store",
		"github.com/fieldsync/fieldsync/internal/syncer",
	}
	checkDeps(t, "github.com/fieldsync/fieldsync/internal/auth", forbidden)
}

func checkDeps(t *testing.T, pkg string, forbidden []string) {
	t.Helper()
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
