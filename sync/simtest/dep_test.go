package simtest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The merge engine is pure: the same code runs on the server and on devices,
// and every replica must compute the same bytes from the same changes. These
// tests keep it that way, as cockroachdb's pkg/util/hlc/dep_test.go does for
// its clock: they walk the imports of each pure package with `go list` and
// scan their sources.

const module = "github.com/fieldsync/fieldsync"

// purePackages are the engine's packages. sync/client, the one sync/ package
// with I/O, is not among them and none of them may import it.
var purePackages = []string{
	module + "/sync/vv",
	module + "/sync/hlc",
	module + "/sync/merge",
	module + "/sync/simtest",
}

// forbiddenImports are standard-library packages a pure package may not
// import directly: I/O, logging, and global randomness. (The standard library
// itself uses some of them, fmt imports os, so the rule is on what the
// engine's own packages import.)
var forbiddenImports = []string{
	"database/sql",
	"io/fs",
	"log",
	"log/slog",
	"math/rand",
	"math/rand/v2",
	"net",
	"net/http",
	"os",
	"os/exec",
}

// clockReaders are the functions of package time that read or wait on the
// real clock; the engine is given its clock as a parameter instead.
var clockReaders = []string{"After", "AfterFunc", "NewTicker", "NewTimer", "Now", "Since", "Sleep", "Tick", "Until"}

// listedPackage is the part of `go list -json` output the checks use.
type listedPackage struct {
	ImportPath string
	Dir        string
	Standard   bool
	GoFiles    []string
	CgoFiles   []string
	Imports    []string
	Error      *struct{ Err string }
	DepsErrors []*struct{ Err string }
}

// goList runs `go list -deps -json` on the pure packages and returns every
// package in their non-test import graph, the pure packages included.
func goList(t *testing.T) []listedPackage {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("cannot find the go command (go test puts it on PATH): %v", err)
	}
	cmd := exec.Command(goTool, append([]string{"list", "-deps", "-json"}, purePackages...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// importViolations returns, for a dependency graph from go list, every way
// it breaks the engine's import rules; an empty result means it is pure.
func importViolations(pkgs []listedPackage) []string {
	var bad []string
	for _, p := range pkgs {
		if p.Error != nil {
			bad = append(bad, fmt.Sprintf("%s: %s", p.ImportPath, p.Error.Err))
		}
		for _, e := range p.DepsErrors {
			bad = append(bad, fmt.Sprintf("%s: %s", p.ImportPath, e.Err))
		}
		switch {
		case p.Standard:
			continue // standard library internals may use anything
		case !isEnginePackage(p.ImportPath):
			bad = append(bad, fmt.Sprintf("%s is in the engine's import graph but is neither standard library nor %s/sync/...", p.ImportPath, module))
			continue
		}
		if len(p.CgoFiles) > 0 {
			bad = append(bad, fmt.Sprintf("%s uses cgo", p.ImportPath))
		}
		for _, imp := range p.Imports {
			if slices.Contains(forbiddenImports, imp) {
				bad = append(bad, fmt.Sprintf("%s imports %s", p.ImportPath, imp))
			}
		}
	}
	return bad
}

// isEnginePackage reports whether path is a sync/ package a pure package may
// import: anything under sync/ except the client and its subpackages.
func isEnginePackage(path string) bool {
	rest, ok := strings.CutPrefix(path, module+"/sync/")
	if !ok {
		return false
	}
	return rest != "client" && !strings.HasPrefix(rest, "client/")
}

func TestPurePackagesImportNoIO(t *testing.T) {
	pkgs := goList(t)
	found := map[string]bool{}
	for _, p := range pkgs {
		found[p.ImportPath] = true
	}
	for _, want := range purePackages {
		if !found[want] {
			t.Fatalf("go list did not report %s; is the list of pure packages out of date?", want)
		}
	}
	for _, v := range importViolations(pkgs) {
		t.Error(v)
	}
}

// TestImportViolations checks the checker: each rule fires on a graph that
// breaks it, and a pure graph passes.
func TestImportViolations(t *testing.T) {
	pure := []listedPackage{
		{ImportPath: module + "/sync/merge", Imports: []string{"bytes", "time", module + "/sync/vv"}},
		{ImportPath: module + "/sync/vv", Imports: []string{"fmt"}},
		{ImportPath: "fmt", Standard: true, Imports: []string{"os"}},
		{ImportPath: "os", Standard: true},
	}
	tests := []struct {
		name string
		pkgs []listedPackage
		want string // a substring of the one violation expected; "" for none
	}{
		{"pure graph passes, though fmt imports os", pure, ""},
		{"direct os import", append(slices.Clone(pure), listedPackage{ImportPath: module + "/sync/hlc", Imports: []string{"os"}}), "imports os"},
		{"direct log/slog import", append(slices.Clone(pure), listedPackage{ImportPath: module + "/sync/vv", Imports: []string{"log/slog"}}), "imports log/slog"},
		{"global math/rand", append(slices.Clone(pure), listedPackage{ImportPath: module + "/sync/merge", Imports: []string{"math/rand/v2"}}), "imports math/rand/v2"},
		{"third-party dependency", append(slices.Clone(pure), listedPackage{ImportPath: "gorm.io/gorm"}), "gorm.io/gorm is in the engine's import graph"},
		{"project package outside sync", append(slices.Clone(pure), listedPackage{ImportPath: module + "/internal/domain"}), "internal/domain is in the engine's import graph"},
		{"the client", append(slices.Clone(pure), listedPackage{ImportPath: module + "/sync/client"}), "sync/client is in the engine's import graph"},
		{"a client subpackage", append(slices.Clone(pure), listedPackage{ImportPath: module + "/sync/client/store"}), "sync/client/store is in the engine's import graph"},
		{"go list error", append(slices.Clone(pure), listedPackage{ImportPath: module + "/sync/vv", Error: &struct{ Err string }{"no Go files"}}), "no Go files"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := importViolations(tt.pkgs)
			switch {
			case tt.want == "" && len(got) > 0:
				t.Errorf("violations = %q, want none", got)
			case tt.want != "" && (len(got) != 1 || !strings.Contains(got[0], tt.want)):
				t.Errorf("violations = %q, want one containing %q", got, tt.want)
			}
		})
	}
}

// clockViolations parses one Go source file and returns every use of a
// clock-reading function of package time (under any import name) and every
// go statement: the engine takes its clock as a parameter and starts no
// goroutines.
func clockViolations(fset *token.FileSet, name string, src any) ([]string, error) {
	f, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	timeName := ""
	for _, imp := range f.Imports {
		if path, _ := strconv.Unquote(imp.Path.Value); path == "time" {
			timeName = "time"
			if imp.Name != nil {
				timeName = imp.Name.Name
			}
		}
	}
	var bad []string
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.SelectorExpr:
			if id, ok := n.X.(*ast.Ident); ok && timeName != "" && id.Name == timeName && slices.Contains(clockReaders, n.Sel.Name) {
				bad = append(bad, fmt.Sprintf("%s: uses time.%s", fset.Position(n.Pos()), n.Sel.Name))
			}
		case *ast.GoStmt:
			bad = append(bad, fmt.Sprintf("%s: starts a goroutine", fset.Position(n.Pos())))
		}
		return true
	})
	if timeName == "." {
		bad = append(bad, fmt.Sprintf("%s: dot-imports time", name))
	}
	return bad, nil
}

func TestPurePackagesReadNoClock(t *testing.T) {
	fset := token.NewFileSet()
	files := 0
	for _, p := range goList(t) {
		if p.Standard || !slices.Contains(purePackages, p.ImportPath) && !isEnginePackage(p.ImportPath) {
			continue
		}
		// GoFiles excludes _test.go files: tests may read the real clock.
		for _, name := range p.GoFiles {
			bad, err := clockViolations(fset, filepath.Join(p.Dir, name), nil)
			if err != nil {
				t.Fatalf("parsing %s: %v", name, err)
			}
			for _, b := range bad {
				t.Error(b)
			}
			files++
		}
	}
	if files < len(purePackages) {
		t.Fatalf("scanned %d files; expected at least one per pure package", files)
	}
}

func TestClockViolations(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want int
	}{
		{"parsing and comparing times is fine", `package p
import "time"
func f(s string) (time.Time, error) { return time.Parse(time.RFC3339, s) }
var d = time.Second`, 0},
		{"time.Now", `package p
import "time"
func f() int64 { return time.Now().UnixMilli() }`, 1},
		{"time.Now as a value", `package p
import "time"
var now = time.Now`, 1},
		{"renamed import", `package p
import t0 "time"
func f() { _ = t0.Since(t0.Time{}) }`, 1},
		{"another package's Now", `package p
import "example.com/clock"
func f() { clock.Now() }`, 0},
		{"a local variable named time", `package p
func f() { time := struct{ Now func() }{}; time.Now() }`, 0},
		{"goroutine", `package p
func f() { go func() {}() }`, 1},
		{"sleep and timers", `package p
import "time"
func f() { time.Sleep(1); <-time.After(1) }`, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := clockViolations(token.NewFileSet(), "x.go", tt.src)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.want {
				t.Errorf("violations = %q, want %d", got, tt.want)
			}
		})
	}
}
