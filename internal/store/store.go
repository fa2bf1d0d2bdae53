// Package store keeps fieldsync's data with GORM on PostgreSQL (production,
// several server instances) or an embedded SQLite file (one small machine, no
// setup). It owns the SQL: opening and configuring the database, the
// versioned migrations, the push transaction, the no-gap change feed, and
// the translation of database errors into domain errors. GORM and driver
// errors never leave the package.
package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/fieldsync/fieldsync/migrations"
)

// Dialect names a database engine.
type Dialect string

// The supported engines.
const (
	Postgres Dialect = "postgres"
	SQLite   Dialect = "sqlite"
)

// Options tune the connection pool.
type Options struct {
	MaxOpenConns int           // PostgreSQL pool size (default 16)
	BusyTimeout  time.Duration // SQLite busy timeout (default 5 s)
	// SQLite page cache and memory-mapped window in MiB (defaults 16 and
	// 0). A 64 MiB cache and a 256 MiB map held 313 MiB of the server's
	// memory during the push benchmark for no measurable speed once pulls
	// walk the feed index.
	SQLiteCacheMiB int
	SQLiteMmapMiB  int
}

// recordCacheSize bounds the decoded records a process keeps (a few KiB
// each): enough for the hot records it is for (shared logs, corridors)
// without growing the server's memory by tens of MiB.
const recordCacheSize = 2_000

// Store is a fieldsync database.
type Store struct {
	db      *gorm.DB
	dialect Dialect
	cache   *recordCache // decoded records of the push path
}

// DialectOf returns the engine a database URL names: postgres:// and
// postgresql:// URLs are PostgreSQL; anything else is a SQLite file path
// (optionally written sqlite:PATH or file:PATH).
func DialectOf(dsn string) Dialect {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return Postgres
	}
	return SQLite
}

// Open connects to the database; it does not migrate (see Migrate).
func Open(ctx context.Context, dsn string, opt Options) (*Store, error) {
	// Raw queries in this package read their rows with Find, never Scan:
	// GORM's Scan swaps in a recording logger that renders every statement
	// with its values as text (a regular expression per parameter, the
	// stored states included) whatever the configured logger discards,
	// which was 11 % of a push's allocations.
	cfg := &gorm.Config{
		Logger:                 logger.Discard,
		TranslateError:         true,
		SkipDefaultTransaction: true,
		NowFunc:                func() time.Time { return time.Now().UTC() },
	}
	var (
		db  *gorm.DB
		err error
	)
	d := DialectOf(dsn)
	switch d {
	case Postgres:
		db, err = gorm.Open(postgres.New(postgres.Config{DSN: dsn}), cfg)
		if err != nil {
			return nil, fmt.Errorf("store: open postgres: %w", translate(err))
		}
		sqlDB, _ := db.DB()
		n := opt.MaxOpenConns
		if n <= 0 {
			n = 16
		}
		sqlDB.SetMaxOpenConns(n)
		sqlDB.SetMaxIdleConns(n)
		sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	default:
		path, err := sqlitePath(dsn)
		if err != nil {
			return nil, err
		}
		if dir := filepath.Dir(path); dir != "." {
			if err := os.MkdirAll(dir, 0o750); err != nil {
				return nil, fmt.Errorf("store: create %s: %w", dir, err)
			}
		}
		busy := opt.BusyTimeout
		if busy <= 0 {
			busy = 5 * time.Second
		}
		// WAL lets pulls read while a push writes; _txlock=immediate makes
		// every write transaction take the write lock at BEGIN, so two
		// pushes never both read and then fail to upgrade (SQLITE_BUSY).
		// Do not add _time_format: the driver then ignores _txlock.
		q := url.Values{}
		q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
		q.Add("_pragma", "journal_mode(WAL)")
		// FULL: a push answered 200 survives a power cut, not only a
		// killed process (NORMAL may lose the last commits on power loss).
		q.Add("_pragma", "synchronous(FULL)")
		q.Add("_pragma", "foreign_keys(1)")
		cache := opt.SQLiteCacheMiB
		if cache <= 0 {
			cache = 16
		}
		q.Add("_pragma", fmt.Sprintf("cache_size(%d)", -cache*1024))
		q.Add("_pragma", fmt.Sprintf("mmap_size(%d)", int64(max(0, opt.SQLiteMmapMiB))<<20))
		q.Set("_txlock", "immediate")
		// Prepared statements are kept (up to 256, least recently used
		// first out): the driver otherwise parses every statement again,
		// 11 % of a push's CPU.
		cfg.PrepareStmt = true
		cfg.PrepareStmtMaxSize = 256
		db, err = gorm.Open(sqlite.Open("file:"+path+"?"+q.Encode()), cfg)
		if err != nil {
			return nil, fmt.Errorf("store: open sqlite %s: %w", path, err)
		}
		sqlDB, _ := db.DB()
		// One connection: SQLite has one writer anyway, and a single
		// connection makes seq order commit order without relying on
		// lock timing.
		sqlDB.SetMaxOpenConns(1)
	}
	s := &Store{db: db, dialect: d, cache: newRecordCache(recordCacheSize)}
	if err := s.Ping(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

func sqlitePath(dsn string) (string, error) {
	p := strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite:"), "file:")
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if p == "" || p == ":memory:" {
		return "", errors.New("store: SQLite needs a file path (an in-memory database is one per connection)")
	}
	return p, nil
}

// Dialect returns the store's engine.
func (s *Store) Dialect() Dialect { return s.dialect }

// DB returns the underlying GORM handle, for tests and tools in this module.
func (s *Store) DB() *gorm.DB { return s.db }

// Close closes the connection pool.
func (s *Store) Close() error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return translate(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := sqlDB.PingContext(ctx); err != nil {
		return translate(err)
	}
	return nil
}

func (s *Store) provider() (*goose.Provider, error) {
	fsys, err := migrations.FS(string(s.dialect))
	if err != nil {
		return nil, err
	}
	sqlDB, err := s.db.DB()
	if err != nil {
		return nil, err
	}
	dialect := goose.DialectSQLite3
	opts := []goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}
	if s.dialect == Postgres {
		dialect = goose.DialectPostgres
		// Several instances may start at once: a session lock keeps their
		// migrations from racing.
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return nil, err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	return goose.NewProvider(dialect, sqlDB, fsys, opts...)
}

// Migrate applies every pending migration and returns the versions applied.
func (s *Store) Migrate(ctx context.Context) ([]int64, error) {
	p, err := s.provider()
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: migrate: %w", translate(err))
	}
	var applied []int64
	for _, r := range results {
		applied = append(applied, r.Source.Version)
	}
	return applied, nil
}

// SchemaCurrent reports whether every migration the binary carries is
// applied.
func (s *Store) SchemaCurrent(ctx context.Context) (bool, error) {
	p, err := s.provider()
	if err != nil {
		return false, err
	}
	pending, err := p.HasPending(ctx)
	if err != nil {
		return false, translate(err)
	}
	return !pending, nil
}
