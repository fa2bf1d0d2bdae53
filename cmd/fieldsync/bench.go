package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"

	"github.com/fieldsync/fieldsync/internal/auth"
	"github.com/fieldsync/fieldsync/internal/bench"
	"github.com/fieldsync/fieldsync/internal/config"
	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/internal/store"
)

// benchCmd runs "fieldsync bench": the whole-server benchmark (pushes,
// the initial sync, latencies, peak memory) against the raw limits of the
// same database, or with -load the load test. By default it starts its own
// server processes on FIELDSYNC_DATABASE_URL (a fresh SQLite file when
// unset); -url measures a server already running, which must use the
// database the command is given (it mints device tokens there and
// measures the raw limits on it).
func benchCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var (
		target, cpuprofile                    *string
		servers, devices, batch, pushBatches  *int
		records, page, shared                 *int
		asJSON, load                          *bool
		timeout, loadDuration, loadInterval   *time.Duration
		loadDevices, loadPerUnit, loadChanges *int
		loadSeed                              *uint64
	)
	fs, cfg, err := adminFlags("fieldsync bench", getenv, stderr, func(fs *flag.FlagSet) {
		target = fs.String("url", "", "measure the server at this base URL instead of starting one; it must use this command's database (-database-url), where tokens are minted and the raw limits measured")
		servers = fs.Int("servers", 1, "server processes to start, devices spread over them (more than one needs PostgreSQL; -load defaults to 3)")
		devices = fs.Int("devices", 8, "devices pushing at once in each push workload")
		batch = fs.Int("batch", 100, "changes per push")
		pushBatches = fs.Int("push-batches", 125, "pushes per device in each push workload (the new records also make the initial sync's data set)")
		records = fs.Int("records", 100_000, "records of the initial sync (topped up after the push workload when it wrote fewer)")
		page = fs.Int("page", 500, "records per pull page")
		shared = fs.Int("shared", 0, "records the devices edit concurrently (default 2 × -batch: each is edited by half the devices in every round)")
		asJSON = fs.Bool("json", false, "print the report as JSON")
		timeout = fs.Duration("timeout", 20*time.Minute, "time allowed for the whole run")
		cpuprofile = fs.String("cpuprofile", "", "run the server inside this process (not a separate one) and write a CPU profile of the whole run, server and benchmark, to this file")
		load = fs.Bool("load", false, "run the load test instead: -load-devices devices each syncing every -load-interval for -load-duration")
		loadDevices = fs.Int("load-devices", 1000, "load test: devices")
		loadPerUnit = fs.Int("load-per-unit", 10, "load test: devices per unit")
		loadChanges = fs.Int("load-changes", 20, "load test: changes per push")
		loadDuration = fs.Duration("load-duration", 2*time.Minute, "load test: how long devices keep starting syncs")
		loadInterval = fs.Duration("load-interval", 30*time.Second, "load test: time between one device's syncs")
		loadSeed = fs.Uint64("seed", 0, "load test: seed of start offsets and edits (0: random)")
	})
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "fieldsync-bench")
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
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *target != "" && !set["database-url"] && getenv("FIELDSYNC_DATABASE_URL") == "" {
		return errors.New("-url needs the server's database (-database-url or FIELDSYNC_DATABASE_URL): tokens are minted and raw limits measured there")
	}
	if *load && !set["servers"] {
		*servers = 3
	}
	if *servers < 1 || *servers > 8 {
		return errors.New("-servers must be 1 to 8")
	}
	if *cpuprofile != "" && (*target != "" || *servers != 1) {
		return errors.New("-cpuprofile runs one server in this process: drop -url and -servers")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	if *load {
		lc := bench.LoadConfig{Devices: *loadDevices, PerUnit: *loadPerUnit, Changes: *loadChanges,
			Duration: *loadDuration, Interval: *loadInterval, Seed: *loadSeed, Page: *page, Progress: stderr}
		rep, err := runLoad(ctx, *cfg, *servers, *target, lc)
		_ = os.RemoveAll(dir)
		if err != nil {
			return err
		}
		if *asJSON {
			if err := writeJSON(stdout, rep); err != nil {
				return err
			}
		} else {
			rep.Print(stdout)
		}
		return rep.Check()
	}

	t, err := openBenchTarget(ctx, *cfg, *servers, *target, *cpuprofile != "")
	if err != nil {
		return err
	}
	defer t.close()
	bc := bench.Config{URLs: t.urls, DatabaseURL: cfg.DatabaseURL, Token: t.token, PIDs: t.pids,
		Devices: *devices, Batch: *batch, PushBatches: *pushBatches, Records: *records, Page: *page, Shared: *shared,
		Progress: stderr}
	stopProfile := func() {}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		stopProfile = pprof.StopCPUProfile
		defer stopProfile()
	}
	rep, err := bench.Run(ctx, bc)
	// Stop the profile and the servers before printing: a reader that
	// closes the pipe early (| head) must neither lose the profile nor
	// leave servers running.
	stopProfile()
	t.close()
	_ = os.RemoveAll(dir)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, rep)
	}
	rep.Print(stdout)
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// benchTarget is what a benchmark runs against: the database (opened here
// to mint tokens and count versions), and the servers on it.
type benchTarget struct {
	store *store.Store
	ring  *auth.Keyring
	urls  []string
	pids  []int
	stops []func()
	once  sync.Once
}

// close stops the servers and closes the database; later calls do nothing.
func (t *benchTarget) close() {
	t.once.Do(func() {
		for i := len(t.stops) - 1; i >= 0; i-- {
			t.stops[i]()
		}
	})
}

func (t *benchTarget) token(device, unit string) (string, error) {
	return t.ring.Issue(domain.Identity{Subject: device, Role: domain.RoleDevice, Unit: unit, Contingent: "BENCH"}, 24*time.Hour)
}

// versions counts the versions the server holds.
func (t *benchTarget) versions(ctx context.Context) (int64, error) {
	var n int64
	if err := t.store.DB().WithContext(ctx).Raw(`SELECT count(*) FROM record_versions`).Find(&n).Error; err != nil {
		return 0, fmt.Errorf("counting record_versions: %w", err)
	}
	return n, nil
}

// openBenchTarget migrates the database and makes sure it has a signing
// key, then starts servers server processes on it (rate limits off, the
// way runSimProcesses does), or one server in this process (inProcess),
// or none when external names a running server.
func openBenchTarget(ctx context.Context, cfg config.Config, servers int, external string, inProcess bool) (*benchTarget, error) {
	cfg.Addr = "127.0.0.1:0"
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	if servers > 1 && store.DialectOf(cfg.DatabaseURL) != store.Postgres {
		return nil, errors.New("several server processes share a PostgreSQL database: set FIELDSYNC_DATABASE_URL to a postgres:// URL")
	}
	st, ring, err := prepareDatabase(ctx, cfg)
	if err != nil {
		return nil, err
	}
	t := &benchTarget{store: st, ring: ring, stops: []func(){func() { _ = st.Close() }}}
	fail := func(err error) (*benchTarget, error) { t.close(); return nil, err }
	switch {
	case external != "":
		t.urls = []string{external}
	case inProcess:
		cfg.RateLimitDevice, cfg.RateLimitSupervisor, cfg.RateLimitPartner = 0, 0, 0
		started := make(chan string, 1)
		m := &Main{Config: cfg, Stdout: io.Discard, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Started: started}
		sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan error, 1)
		go func() { done <- m.Run(sctx) }()
		select {
		case addr := <-started:
			t.urls, t.pids = []string{"http://" + addr}, []int{os.Getpid()}
			t.stops = append(t.stops, func() { stop(); <-done })
		case err := <-done:
			stop()
			return fail(fmt.Errorf("in-process server: %w", err))
		}
	default:
		procs, err := startServers(ctx, servers, floodEnv(cfg, "FIELDSYNC_DB_MAX_CONNS="+strconv.Itoa(cfg.DBMaxConns)))
		if err != nil {
			return fail(err)
		}
		t.stops = append(t.stops, procs.stop)
		for i := range servers {
			t.urls = append(t.urls, procs.url(i))
			t.pids = append(t.pids, procs.cmds[i].Process.Pid)
		}
	}
	return t, nil
}

// runLoad runs the load test against servers server processes on cfg's
// database (or the running server at external).
func runLoad(ctx context.Context, cfg config.Config, servers int, external string, lc bench.LoadConfig) (*bench.LoadReport, error) {
	t, err := openBenchTarget(ctx, cfg, servers, external, false)
	if err != nil {
		return nil, err
	}
	defer t.close()
	lc.URLs, lc.Token, lc.Versions = t.urls, t.token, t.versions
	rep, err := bench.Load(ctx, lc)
	t.close()
	return rep, err
}
