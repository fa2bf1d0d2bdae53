package merge_test

import (
	"os"
	"testing"

	"github.com/fieldsync/fieldsync/sync/simtest"
)

// TestMain runs the properties at 1,000 cases unless -rapid.checks says
// otherwise.
func TestMain(m *testing.M) { os.Exit(simtest.RunWithChecks(m, 1000)) }
