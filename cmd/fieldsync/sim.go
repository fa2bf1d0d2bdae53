package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/fieldsync/fieldsync/internal/config"
	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/internal/sim"
)

// simCmd runs "fieldsync sim": a server on loopback (on the configured
// database; a fresh SQLite file by default), a fault-injecting proxy in
// front of it, and simulated devices; it prints a report and exits non-zero
// on any divergence or loss.
func simCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var devices, units, edits *int
	var seed *uint64
	var faults *float64
	fs, cfg, err := adminFlags("fieldsync sim", getenv, stderr, func(fs *flag.FlagSet) {
		devices = fs.Int("devices", 20, "simulated devices")
		units = fs.Int("units", 4, "units they belong to")
		edits = fs.Int("edits", 100, "edits per device")
		seed = fs.Uint64("seed", uint64(time.Now().UnixNano()), "seed of the run (printed, to reproduce it)")
		faults = fs.Float64("faults", 0.1, "share of requests the proxy disturbs (0..1)")
	})
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "fieldsync-sim")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if getenv("FIELDSYNC_DATABASE_URL") == "" {
		cfg.DatabaseURL = filepath.Join(dir, "server.db")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *faults < 0 || *faults > 1 {
		return errors.New("-faults must be between 0 and 1")
	}
	cfg.Addr = "127.0.0.1:0"
	cfg.AutoMigrate = true
	cfg.RateLimitDevice, cfg.RateLimitSupervisor = 0, 0 // a simulation is a flood by design
	return runSim(ctx, *cfg, sim.Config{Devices: *devices, Units: *units, Edits: *edits, Seed: *seed, Faults: *faults, Dir: dir}, stdout)
}

func runSim(ctx context.Context, cfg config.Config, sc sim.Config, stdout io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	started := make(chan string, 1)
	m := &Main{Config: cfg, Stdout: io.Discard, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Started: started}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- m.Run(sctx) }()
	var addr string
	select {
	case addr = <-started:
	case err := <-done:
		return err
	}
	defer func() { stop(); <-done }()
	upstream := "http://" + addr
	proxy := sim.NewProxy(upstream, sc.Faults, sc.Seed)
	front := httptest.NewServer(proxy)
	defer front.Close()
	reader, err := m.keyring.Issue(domain.Identity{Subject: "sim-reader", Role: domain.RoleSupervisor}, 24*time.Hour)
	if err != nil {
		return err
	}
	sc.Upstream, sc.ReaderToken = upstream, reader
	sc.Token = func(device, unit string) (string, error) {
		return m.keyring.Issue(domain.Identity{Subject: device, Role: domain.RoleDevice, Unit: unit, Contingent: "SIM"}, 24*time.Hour)
	}
	fmt.Fprintf(stdout, "fieldsync sim: %d devices, %d units, %d edits each, faults %.0f%%, seed %d\n", sc.Devices, sc.Units, sc.Edits, sc.Faults*100, sc.Seed)
	rep, err := sim.Run(ctx, sc, front.URL, proxy)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, rep)
	if !rep.OK() {
		return fmt.Errorf("sim: divergence or loss: divergent %v, missing %v, pending %d, rejected %d", rep.Divergent, rep.Missing, rep.Pending, rep.Rejected)
	}
	fmt.Fprintln(stdout, "OK: every device holds the server's state for its scope; nothing pending, nothing refused")
	return nil
}
