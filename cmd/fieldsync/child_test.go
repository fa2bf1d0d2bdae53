package main

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
)

// Environment of the test binary re-executed as a server process.
const (
	childRunMain = "FIELDSYNC_TEST_RUN_MAIN"           // "1": run main, not the tests
	childCrash   = "FIELDSYNC_TEST_CRASH_AFTER_COMMIT" // probability of SIGKILL between a push's commit and its answer
)

// TestMain lets the test binary play the fieldsync binary: server processes
// that tests start, kill and start again.
func TestMain(m *testing.M) {
	if os.Getenv(childRunMain) == "1" {
		if p, err := strconv.ParseFloat(os.Getenv(childCrash), 64); err == nil && p > 0 {
			afterPushCommit = func() {
				if rand.Float64() < p {
					_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
					select {} // the signal arrives; nothing more is written
				}
			}
		}
		main()
		os.Exit(0)
	}
	selfCommand = func(args ...string) (*exec.Cmd, error) {
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), childRunMain+"=1")
		return cmd, nil
	}
	os.Exit(m.Run())
}
