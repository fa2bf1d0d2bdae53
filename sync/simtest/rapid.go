package simtest

import (
	"flag"
	"strconv"
	"testing"
)

// RunWithChecks runs a test binary with rapid's property checks at n cases
// unless -rapid.checks was given: rapid's default of 100 is too few to trust
// a merge engine. Call it from TestMain.
func RunWithChecks(m *testing.M, n int) int {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "rapid.checks" })
	if !set && flag.Lookup("rapid.checks") != nil {
		_ = flag.Set("rapid.checks", strconv.Itoa(n))
	}
	return m.Run()
}
