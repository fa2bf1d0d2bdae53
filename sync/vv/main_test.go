package vv_test

import (
	"flag"
	"os"
	"testing"
)

// TestMain runs the properties at 1,000 cases unless -rapid.checks says
// otherwise: rapid's default of 100 is too few to trust a merge engine.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "rapid.checks" })
	if !set {
		_ = flag.Set("rapid.checks", "1000")
	}
	os.Exit(m.Run())
}
