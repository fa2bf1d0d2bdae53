package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/internal/store"
	"github.com/fieldsync/fieldsync/internal/store/dbtest"
)

var _ domain.Store = (*store.Store)(nil)
var _ domain.KeyStore = (*store.Store)(nil)

func TestAFreshDatabaseIsBehindUntilMigrated(t *testing.T) {
	ctx := context.Background()
	check := func(t *testing.T, u string) {
		s, err := store.Open(ctx, u, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if ok, err := s.SchemaCurrent(ctx); err != nil || ok {
			t.Fatalf("fresh database: current=%v err=%v, want behind", ok, err)
		}
		applied, err := s.Migrate(ctx)
		if err != nil || len(applied) == 0 {
			t.Fatalf("migrate: %v %v", applied, err)
		}
		if ok, err := s.SchemaCurrent(ctx); err != nil || !ok {
			t.Fatalf("after migrate: current=%v err=%v", ok, err)
		}
		if again, err := s.Migrate(ctx); err != nil || len(again) != 0 {
			t.Fatalf("second migrate applied %v (%v), want nothing", again, err)
		}
	}
	t.Run("sqlite", func(t *testing.T) { check(t, t.TempDir()+"/fresh.db") })
	t.Run("postgres", func(t *testing.T) {
		u, ok := dbtest.PostgresURL(t)
		if !ok {
			t.Skip(dbtest.EnvURL + " is not set: the PostgreSQL suite runs in CI")
		}
		check(t, u)
	})
}

func TestSigningKeysRoundTrip(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db dbtest.DB) {
		ctx := context.Background()
		k := domain.SigningKey{KID: "k1", Alg: "EdDSA", Public: make([]byte, 32), Private: make([]byte, 64), CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
		if err := db.Store.AddSigningKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		if err := db.Store.AddSigningKey(ctx, k); err == nil {
			t.Fatal("a second key with the same kid was stored")
		}
		keys, err := db.Store.SigningKeys(ctx)
		if err != nil || len(keys) != 1 || keys[0].KID != "k1" || len(keys[0].Public) != 32 || len(keys[0].Private) != 64 || !keys[0].CreatedAt.Equal(k.CreatedAt) {
			t.Fatalf("keys = %+v, %v", keys, err)
		}
	})
}

func TestAnUnreachableDatabaseIsUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Nothing listens on port 1.
	_, err := store.Open(ctx, "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2", store.Options{})
	if domain.ErrorCode(err) != domain.CodeUnavailable {
		t.Fatalf("err = %v, want unavailable", err)
	}
}

func TestPruneSeenForgetsOnlyOldChangeIDs(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db dbtest.DB) {
		ctx := context.Background()
		now := time.Now().UTC()
		for i, age := range []time.Duration{100 * 24 * time.Hour, 91 * 24 * time.Hour, 89 * 24 * time.Hour, time.Hour} {
			if err := db.Store.DB().Exec(`INSERT INTO seen_changes (subject, change_id, collection, record_id, status, seen_at)
				VALUES ('dev-1', ?, 'corridors', 'rn1', 'applied', ?)`, fmt.Sprintf("c%d", i), now.Add(-age)).Error; err != nil {
				t.Fatal(err)
			}
		}
		n, err := db.Store.PruneSeen(ctx, now.Add(-90*24*time.Hour))
		if err != nil || n != 2 {
			t.Fatalf("pruned %d (%v), want the 2 older than 90 days", n, err)
		}
		var left []string
		if err := db.Store.DB().Raw(`SELECT change_id FROM seen_changes ORDER BY change_id`).Scan(&left).Error; err != nil {
			t.Fatal(err)
		}
		if len(left) != 2 || left[0] != "c2" || left[1] != "c3" {
			t.Fatalf("kept %v, want [c2 c3]", left)
		}
	})
}

func TestRefreshRotationRetryAndReuse(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db dbtest.DB) {
		ctx := context.Background()
		s := db.Store
		now := time.Now().UTC().Truncate(time.Second)
		if err := s.AddEnrollmentCode(ctx, domain.EnrollmentCode{Hash: "h1", Unit: "KEN-3", Contingent: "KEN", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		tok := func(jti string) domain.RefreshToken {
			return domain.RefreshToken{JTI: jti, Family: "fam", DeviceID: "dev-1", IssuedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
		}
		if _, err := s.Enroll(ctx, "h1", domain.Device{ID: "dev-1"}, tok("r1"), now); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Enroll(ctx, "h1", domain.Device{ID: "dev-2"}, tok("x"), now); domain.ErrorCode(err) != domain.CodeUnauthorized {
			t.Fatalf("a used code enrolled again: %v", err)
		}
		grace := time.Minute
		_, got, err := s.RotateRefresh(ctx, "r1", tok("r2"), now, grace)
		if err != nil || got.JTI != "r2" || got.Family != "fam" {
			t.Fatalf("rotate r1: %+v %v", got, err)
		}
		// A retry within the grace gets r2 again.
		_, got, err = s.RotateRefresh(ctx, "r1", tok("r2-bis"), now.Add(10*time.Second), grace)
		if err != nil || got.JTI != "r2" {
			t.Fatalf("retry of r1: %+v %v, want r2 again", got, err)
		}
		// Past the grace, r1 again is a reuse: the family is revoked.
		if _, _, err = s.RotateRefresh(ctx, "r1", tok("r3"), now.Add(2*time.Minute), grace); err != domain.ErrRefreshReused {
			t.Fatalf("late reuse of r1: %v, want reused", err)
		}
		if _, _, err = s.RotateRefresh(ctx, "r2", tok("r4"), now.Add(2*time.Minute), grace); err != domain.ErrRefreshInvalid {
			t.Fatalf("r2 after the family was revoked: %v, want invalid", err)
		}
	})
}

// The feed is ordered by transaction id as a number. Once ids gain a digit
// (9,999 -> 10,000 in a busy week) a text order would put 10000 before
// 9999 while the keyset comparison is numeric, and pulls would skip every
// record in between: a large simulation found exactly that.
func TestFeedOrderSurvivesTransactionIDsGainingADigit(t *testing.T) {
	db, ok := dbtest.Postgres(t)
	if !ok {
		t.Skip(dbtest.EnvURL + " is not set: the PostgreSQL suite runs in CI (CI=true makes it mandatory)")
	}
	ctx := context.Background()
	// Pairs around each power of ten below the cluster's current id (rows
	// above it would wait for their transaction to end).
	var cur uint64
	if err := db.Store.DB().Raw(`SELECT pg_current_xact_id()::text::bigint`).Scan(&cur).Error; err != nil {
		t.Fatal(err)
	}
	var txids []int
	for p := 10; uint64(p) < cur; p *= 10 {
		txids = append(txids, p-1, p)
	}
	if len(txids) < 4 {
		t.Fatalf("the cluster's transaction id %d is too young for this test", cur)
	}
	for i, x := range txids {
		state := fmt.Sprintf(`{"collection":"corridors","id":"c%d","vv":{"dev-a":1},"fields":{},"clocks":{},"deleted":false}`, i)
		if err := db.Store.DB().Exec(`INSERT INTO records (collection, id, state, txid, updated_at) VALUES ('corridors', ?, ?, ?::xid8, now())`,
			fmt.Sprintf("c%d", i), state, fmt.Sprint(x)).Error; err != nil {
			t.Fatal(err)
		}
	}
	for _, limit := range []int{1, 3, 100} {
		var got []uint64
		var after domain.Cursor
		for page := 0; ; page++ {
			recs, more, err := db.Store.Pull(ctx, after, limit, domain.PullFilter{})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				got = append(got, r.Cursor.TxID)
				after = r.Cursor
			}
			if !more {
				break
			}
			if page > 50 {
				t.Fatal("the pull does not end")
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(txids) {
			t.Fatalf("pages of %d served transaction ids %v, want %v", limit, got, txids)
		}
	}
}

// TestSQLiteMemorySettingsApply opens a file with a chosen page cache and
// mapped window and reads both back from SQLite; the defaults are a 16 MiB
// cache and no map.
func TestSQLiteMemorySettingsApply(t *testing.T) {
	for _, c := range []struct {
		opt         store.Options
		cache, mmap int64
	}{
		{store.Options{}, -16 * 1024, 0},
		{store.Options{SQLiteCacheMiB: 8, SQLiteMmapMiB: 32}, -8 * 1024, 32 << 20},
	} {
		s, err := store.Open(context.Background(), t.TempDir()+"/f.db", c.opt)
		if err != nil {
			t.Fatal(err)
		}
		var cache, mmap int64
		if err := s.DB().Raw(`PRAGMA cache_size`).Find(&cache).Error; err != nil {
			t.Fatal(err)
		}
		if err := s.DB().Raw(`PRAGMA mmap_size`).Find(&mmap).Error; err != nil {
			t.Fatal(err)
		}
		s.Close()
		if cache != c.cache || mmap != c.mmap {
			t.Errorf("%+v: cache_size %d, mmap_size %d; want %d and %d", c.opt, cache, mmap, c.cache, c.mmap)
		}
	}
}
