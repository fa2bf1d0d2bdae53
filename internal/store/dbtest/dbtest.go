// Package dbtest gives each test a fresh, migrated fieldsync database on
// every engine the run can reach: an SQLite file in t.TempDir() always, and
// a new PostgreSQL database when FIELDSYNC_TEST_DATABASE_URL is set. With
// CI=true the PostgreSQL suite is mandatory: an unset or unreachable URL
// fails the test instead of skipping it.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/fieldsync/fieldsync/internal/store"
)

// EnvURL names the variable holding the PostgreSQL URL tests create their
// databases with (its user must be allowed to CREATE DATABASE).
const EnvURL = "FIELDSYNC_TEST_DATABASE_URL"

// DB is one fresh database.
type DB struct {
	Dialect store.Dialect
	URL     string // what store.Open takes
	Store   *store.Store
}

// Each runs fn as a subtest on every engine available, each with a fresh
// migrated database.
func Each(t *testing.T, fn func(t *testing.T, db DB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, SQLite(t)) })
	t.Run("postgres", func(t *testing.T) {
		db, ok := Postgres(t)
		if !ok {
			t.Skip(EnvURL + " is not set: the PostgreSQL suite runs in CI (CI=true makes it mandatory)")
		}
		fn(t, db)
	})
}

// SQLite returns a fresh migrated SQLite database in t.TempDir().
func SQLite(t testing.TB) DB {
	t.Helper()
	u := filepath.Join(t.TempDir(), "fieldsync.db")
	return open(t, store.SQLite, u)
}

// PostgresURL returns a URL of a new, empty PostgreSQL database dropped when
// the test ends; ok is false when no server is configured (and the run is
// not CI).
func PostgresURL(t testing.TB) (string, bool) {
	t.Helper()
	admin := os.Getenv(EnvURL)
	if admin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but %s is not set: the PostgreSQL suite must run", EnvURL)
		}
		return "", false
	}
	adminDB, err := gorm.Open(postgres.Open(admin), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatalf("dbtest: connect %s: %v", EnvURL, err)
	}
	sqlAdmin, _ := adminDB.DB()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sqlAdmin.PingContext(ctx); err != nil {
		t.Fatalf("dbtest: PostgreSQL at %s is unreachable: %v", EnvURL, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "fieldsync_test_" + hex.EncodeToString(b[:])
	if err := adminDB.Exec("CREATE DATABASE " + name).Error; err != nil {
		t.Fatalf("dbtest: create database: %v", err)
	}
	t.Cleanup(func() {
		_ = adminDB.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)").Error
		_ = sqlAdmin.Close()
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("dbtest: %s: %v", EnvURL, err)
	}
	u.Path = "/" + name
	return u.String(), true
}

// Postgres returns a fresh migrated PostgreSQL database.
func Postgres(t testing.TB) (DB, bool) {
	t.Helper()
	u, ok := PostgresURL(t)
	if !ok {
		return DB{}, false
	}
	return open(t, store.Postgres, u), true
}

func open(t testing.TB, d store.Dialect, u string) DB {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(ctx, u, store.Options{})
	if err != nil {
		t.Fatalf("dbtest: open %s: %v", d, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatalf("dbtest: migrate %s: %v", d, err)
	}
	return DB{Dialect: d, URL: u, Store: s}
}
