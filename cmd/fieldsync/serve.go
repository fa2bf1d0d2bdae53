package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/internal/api"
	"github.com/fieldsync/fieldsync/internal/auth"
	"github.com/fieldsync/fieldsync/internal/config"
	"github.com/fieldsync/fieldsync/internal/console"
	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/internal/metrics"
	"github.com/fieldsync/fieldsync/internal/review"
	"github.com/fieldsync/fieldsync/internal/store"
	"github.com/fieldsync/fieldsync/internal/syncer"
	"github.com/fieldsync/fieldsync/sync/hlc"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// Main is one fieldsync process: its configuration and, once running, the
// things it opened. The end-to-end test builds one with a hand-written
// Config and runs it on :0.
type Main struct {
	Config config.Config
	Stdout io.Writer
	Logger *slog.Logger

	// Started, when not nil, receives the listening address once the
	// server accepts connections.
	Started chan<- string

	store   *store.Store
	keyring *auth.Keyring
}

// parseMain reads flags and the environment into a validated Main.
func parseMain(name string, args []string, getenv func(string) string, stdout, stderr io.Writer) (*Main, error) {
	cfg := config.Default()
	fs := flag.NewFlagSet("fieldsync "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := cfg.Bind(fs, getenv); err != nil {
		return nil, err
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	level, _ := cfg.Level()
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewJSONHandler(stderr, opts)
	if cfg.LogFormat == "text" {
		h = slog.NewTextHandler(stderr, opts)
	}
	return &Main{Config: cfg, Stdout: stdout, Logger: slog.New(h)}, nil
}

func (m *Main) logger() *slog.Logger {
	if m.Logger == nil {
		m.Logger = slog.Default()
	}
	return m.Logger
}

// open connects to the database.
func (m *Main) open(ctx context.Context) error {
	s, err := store.Open(ctx, m.Config.DatabaseURL, store.Options{MaxOpenConns: m.Config.DBMaxConns,
		SQLiteCacheMiB: m.Config.SQLiteCacheMiB, SQLiteMmapMiB: m.Config.SQLiteMmapMiB})
	if err != nil {
		return err
	}
	m.store = s
	return nil
}

// Migrate applies pending migrations and exits.
func (m *Main) Migrate(ctx context.Context) error {
	if err := m.open(ctx); err != nil {
		return err
	}
	defer m.store.Close()
	applied, err := m.store.Migrate(ctx)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(m.Stdout, "schema is current")
		return nil
	}
	fmt.Fprintf(m.Stdout, "applied migrations %v\n", applied)
	return nil
}

// Run serves until ctx is cancelled (SIGINT or SIGTERM), then stops taking
// connections, lets in-flight requests finish within ShutdownTimeout and
// closes the database.
func (m *Main) Run(ctx context.Context) error {
	log := m.logger()
	cfg := m.Config
	log.Info("fieldsync starting", append([]any{slog.String("version", Version)}, cfg.LogAttrs()...)...)
	if err := m.open(ctx); err != nil {
		return err
	}
	defer m.store.Close()
	if cfg.AutoMigrate {
		applied, err := m.store.Migrate(ctx)
		if err != nil {
			return err
		}
		if len(applied) > 0 {
			log.Info("migrations applied", slog.Any("versions", applied))
		}
	}

	keyring, err := auth.NewKeyring(ctx, m.store, auth.Config{
		Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, Leeway: leeway(cfg.TokenLeeway),
	})
	if err != nil {
		return err
	}
	m.keyring = keyring
	// A fresh installation gets its first signing key; rotation later adds
	// more while old ones keep verifying.
	if err := keyring.EnsureSigningKey(ctx); err != nil {
		return err
	}
	if cfg.Dev {
		if err := m.printDevToken(); err != nil {
			return err
		}
	}

	var pool *sql.DB
	if p, err := m.store.DB().DB(); err == nil {
		pool = p
	}
	mets := metrics.New(pool)
	if cfg.PprofAddr != "" {
		stopPprof, err := servePprof(cfg.PprofAddr, log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}

	physMS := func() int64 { return time.Now().UnixMilli() }
	clock := hlc.NewClock(vv.Server, physMS, cfg.MaxClockSkew.Milliseconds())
	svc := syncer.New(m.store, clock, time.Now, syncer.Config{
		MaxVVEntries: cfg.MaxVVEntries, CorridorMaxAge: cfg.CorridorMaxAge, AfterCommit: afterPushCommit,
		Observer: mets,
	})
	var external *auth.External
	if cfg.ExternalIssuers != "" {
		issuers, err := auth.LoadExternalIssuers(cfg.ExternalIssuers)
		if err != nil {
			return err
		}
		external = auth.NewExternal(issuers, leeway(cfg.TokenLeeway), cfg.ExternalJWKSCooldown, nil, fetchJWKS)
		log.Info("external token issuers", slog.Int("count", len(issuers)))
	}
	devices := auth.NewDevices(keyring, m.store, auth.DevicesConfig{
		AccessTTL: cfg.AccessTokenTTL, RefreshTTL: cfg.RefreshTokenTTL, External: external,
	})
	app := api.New(api.Config{
		BodyLimit:        int(cfg.MaxBodyBytes),
		MaxChanges:       cfg.MaxChanges,
		PullDefaultLimit: cfg.PullDefaultLimit,
		PullMaxLimit:     cfg.PullMaxLimit,
		ReadTimeout:      cfg.ReadTimeout,
		WriteTimeout:     cfg.WriteTimeout,
		IdleTimeout:      cfg.IdleTimeout,
		RateLimits: map[domain.Role]int{
			domain.RoleDevice:     cfg.RateLimitDevice,
			domain.RolePartner:    cfg.RateLimitPartner,
			domain.RoleSupervisor: cfg.RateLimitSupervisor,
		},
	}, api.Deps{
		Syncer: svc,
		// Devices verifies access tokens and, for devices, revocation.
		Verifier:    devices,
		Devices:     devices,
		RateCounter: m.store,
		Holder:      svc,
		Review:      review.New(m.store, m.store.Get, time.Now, cfg.CorridorMaxAge),
		Decisions:   svc,
		JWKS:        keyring.JWKS,
		Ready:       m.ready(),
		OpenAPI:     fieldsync.OpenAPI,
		Metrics:     mets,
		Logger:      log,
	})
	// The supervisors' console: HTML over the same API handlers, in process.
	var consoleKey []byte
	if cfg.ConsoleKey != "" {
		consoleKey = []byte(cfg.ConsoleKey)
	}
	console.Mount(app, console.Config{Logger: log, CSRFKey: consoleKey})

	pruneCtx, stopPrune := context.WithCancel(ctx)
	defer stopPrune()
	go m.pruneSeen(pruneCtx, time.Hour)

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- app.Listener(ln) }()
	log.Info("fieldsync serving", slog.String("addr", ln.Addr().String()))
	if m.Started != nil {
		m.Started <- ln.Addr().String()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("fieldsync shutting down: finishing in-flight requests", slog.Duration("timeout", cfg.ShutdownTimeout))
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := app.ShutdownWithContext(sctx); err != nil {
		log.Error("shutdown", slog.String("error", err.Error()))
	}
	// Shutdown closes only the listeners Serve has registered; one that
	// started serving a moment too late would run on, so close ours too.
	_ = ln.Close()
	if err := <-errc; err != nil && !errors.Is(err, net.ErrClosed) {
		log.Error("listener", slog.String("error", err.Error()))
	}
	log.Info("fieldsync stopped")
	return nil
}

// pruneSeen forgets change ids older than the idempotency retention, at
// start and then every interval, until ctx ends. Several instances may all
// prune: the deletes are idempotent.
func (m *Main) pruneSeen(ctx context.Context, every time.Duration) {
	for {
		cutoff := time.Now().Add(-m.Config.IdempotencyRetention)
		if n, err := m.store.PruneSeen(ctx, cutoff); err != nil {
			if ctx.Err() == nil {
				m.logger().Warn("pruning idempotency keys failed; will retry", slog.String("error", err.Error()))
			}
		} else if n > 0 {
			m.logger().Info("idempotency keys pruned", slog.Int64("removed", n), slog.Time("older_than", cutoff))
		}
		// Rate-limit windows older than an hour count for nothing.
		if err := m.store.PruneRateLimits(ctx, time.Now().Add(-time.Hour).Unix()/60); err != nil && ctx.Err() == nil {
			m.logger().Warn("pruning rate-limit windows failed; will retry", slog.String("error", err.Error()))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// ready reports whether the server can serve sync traffic: the database
// answers and its schema is current. Once the schema is seen current it
// stays so for this binary (migrations only move forward), so the check
// costs one ping after that.
func (m *Main) ready() func(ctx context.Context) error {
	var current atomic.Bool
	return func(ctx context.Context) error {
		if err := m.store.Ping(ctx); err != nil {
			return err
		}
		if current.Load() {
			return nil
		}
		ok, err := m.store.SchemaCurrent(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return domain.Errorf(domain.CodeNotReady, "the database schema is behind this binary; run fieldsync migrate")
		}
		current.Store(true)
		return nil
	}
}

// printDevToken prints a device token for local trials (serve --dev). It is
// written to standard output for the person at the terminal, never to the
// log.
func (m *Main) printDevToken() error {
	id := domain.Identity{Subject: "dev-demo", Role: domain.RoleDevice, Unit: "KEN-3", Contingent: "KEN"}
	tok, err := m.keyring.Issue(id, 24*time.Hour)
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "\nDEVELOPMENT MODE: a device token for device %s, unit %s, valid 24 h:\n\n%s\n\n"+
		"export TOKEN=%s\n\n", id.Subject, id.Unit, tok, tok)
	return nil
}

// fetchJWKS fetches an external issuer's key set: bounded in time and size.
func fetchJWKS(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := jwksClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks %s: %s", url, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

var jwksClient = &http.Client{Timeout: 5 * time.Second}
