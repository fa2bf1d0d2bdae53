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
	"github.com/fieldsync/fieldsync/internal/store"
)

// simCmd runs "fieldsync sim": a server on loopback (on the configured
// database; a fresh SQLite file by default), a fault-injecting proxy in
// front of it, and simulated devices; it prints a report and exits non-zero
// on any divergence or loss.
func simCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var devices, units, edits *int
	var seed *uint64
	var faults *float64
	var scenario *string
	var servers, restarts *int
	fs, cfg, err := adminFlags("fieldsync sim", getenv, stderr, func(fs *flag.FlagSet) {
		devices = fs.Int("devices", 20, "simulated devices")
		units = fs.Int("units", 4, "units they belong to")
		edits = fs.Int("edits", 100, "edits per device")
		seed = fs.Uint64("seed", uint64(time.Now().UnixNano()), "seed of the run (printed, to reproduce it)")
		faults = fs.Float64("faults", 0.1, "share of requests the proxy disturbs (0..1)")
		servers = fs.Int("servers", 1, "server processes on the database (2 or 3 need PostgreSQL); with -restarts, separate processes")
		restarts = fs.Int("restarts", 0, "times a server process is killed (SIGKILL) and started again during the run")
		scenario = fs.String("scenario", "", `"week-offline": one device back after 7 days with 2,000 edits over 64 kbit/s, 800 ms round trips, cut every 64 KiB`)
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
	if *servers < 1 || *servers > 3 || *restarts < 0 {
		return errors.New("-servers must be 1 to 3 and -restarts at least 0")
	}
	cfg.Addr = "127.0.0.1:0"
	cfg.AutoMigrate = true
	cfg.RateLimitDevice, cfg.RateLimitSupervisor = 0, 0 // a simulation is a flood by design
	sc := sim.Config{Devices: *devices, Units: *units, Edits: *edits, Seed: *seed, Faults: *faults, Dir: dir, Restarts: *restarts}
	switch *scenario {
	case "":
	case "week-offline":
		sc.Scenario = *scenario
	default:
		return fmt.Errorf("unknown -scenario %q", *scenario)
	}
	if *servers > 1 || *restarts > 0 {
		if sc.Scenario != "" {
			return errors.New("-scenario runs with one in-process server; drop -servers and -restarts")
		}
		return runSimProcesses(ctx, *cfg, sc, *servers, stdout)
	}
	return runSim(ctx, *cfg, sc, stdout)
}

// runSimProcesses runs the simulation against server processes on one
// database, killing and restarting them during the run.
func runSimProcesses(ctx context.Context, cfg config.Config, sc sim.Config, servers int, stdout io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if servers > 1 && store.DialectOf(cfg.DatabaseURL) != store.Postgres {
		return errors.New("several server processes share a PostgreSQL database: set FIELDSYNC_DATABASE_URL to a postgres:// URL")
	}
	st, ring, err := prepareDatabase(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	procs, err := startServers(ctx, servers, floodEnv(cfg))
	if err != nil {
		return err
	}
	defer procs.stop()
	urls := make([]string, servers)
	for i := range urls {
		urls[i] = procs.url(i)
	}
	proxy := sim.NewProxy(urls[0], sc.Faults, sc.Seed)
	proxy.Upstreams = urls
	front := httptest.NewServer(proxy)
	defer front.Close()
	reader, err := ring.Issue(domain.Identity{Subject: "sim-reader", Role: domain.RoleSupervisor}, 24*time.Hour)
	if err != nil {
		return err
	}
	sc.Upstream, sc.ReaderToken = urls[0], reader
	sc.Token = func(device, unit string) (string, error) {
		return ring.Issue(domain.Identity{Subject: device, Role: domain.RoleDevice, Unit: unit, Contingent: sim.ContingentOf(unit)}, 24*time.Hour)
	}
	sc.Restart = func(ctx context.Context, n int) error { return procs.restart(ctx, n%servers) }
	fmt.Fprintf(stdout, "fieldsync sim: %d devices, %d units, %d edits each, faults %.0f%%, %d server processes (%s), %d restarts, seed %d\n",
		sc.Devices, sc.Units, sc.Edits, sc.Faults*100, servers, store.DialectOf(cfg.DatabaseURL), sc.Restarts, sc.Seed)
	rep, err := sim.Run(ctx, sc, front.URL, proxy)
	if err != nil {
		return err
	}
	return simVerdict(rep, stdout)
}

func simVerdict(rep *sim.Report, stdout io.Writer) error {
	fmt.Fprintln(stdout, rep)
	if !rep.OK() {
		return fmt.Errorf("sim: divergence or loss: divergent %v, missing %v, pending %d, rejected %d", rep.Divergent, rep.Missing, rep.Pending, rep.Rejected)
	}
	fmt.Fprintln(stdout, "OK: every device holds the server's state for its scope; nothing pending, nothing refused; every acknowledged change is held once, every device read every change in its scope, every value is in the state or was knowingly replaced, every disputed field is in the conflict queue")
	return nil
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
		return m.keyring.Issue(domain.Identity{Subject: device, Role: domain.RoleDevice, Unit: unit, Contingent: sim.ContingentOf(unit)}, 24*time.Hour)
	}
	if sc.Scenario == "week-offline" {
		shaped := sim.NewProxy(upstream, 0, sc.Seed)
		shaped.Bandwidth, shaped.Latency, shaped.CutEvery = 8000, 800*time.Millisecond, 64<<10
		front := httptest.NewServer(shaped)
		defer front.Close()
		fmt.Fprintf(stdout, "fieldsync sim -scenario week-offline: one device back after 7 days with 2,000 edits; 64 kbit/s, 800 ms round trip, cut every 64 KiB; %d peers; seed %d\n", max(sc.Devices, 2)-1, sc.Seed)
		rep, err := sim.WeekOffline(ctx, sc, front.URL, shaped, 2000)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "returning device: %d edits synced in %s, %d bytes on the wire (%d sent: %.0f%% of %d uncompressed; %d received), %.0f bytes per change, %d transfers cut\n",
			rep.OfflineEdits, rep.SyncTime.Round(time.Millisecond), rep.Bytes, rep.BytesSent, 100*float64(rep.BytesSent)/float64(max(rep.BytesRaw, 1)), rep.BytesRaw, rep.BytesRecv,
			float64(rep.Bytes)/float64(max(rep.OfflineEdits, 1)), rep.CutBefore+rep.CutAfter)
		fmt.Fprintln(stdout, &rep.Report)
		if !rep.OK() {
			return fmt.Errorf("sim: divergence or loss: divergent %v, missing %v, pending %d, rejected %d", rep.Divergent, rep.Missing, rep.Pending, rep.Rejected)
		}
		fmt.Fprintln(stdout, "OK: every device holds the server's state for its scope; nothing pending, nothing refused")
		return nil
	}
	fmt.Fprintf(stdout, "fieldsync sim: %d devices, %d units, %d edits each, faults %.0f%%, seed %d\n", sc.Devices, sc.Units, sc.Edits, sc.Faults*100, sc.Seed)
	rep, err := sim.Run(ctx, sc, front.URL, proxy)
	if err != nil {
		return err
	}
	return simVerdict(rep, stdout)
}
