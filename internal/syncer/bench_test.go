package syncer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/internal/store/dbtest"
	"github.com/fieldsync/fieldsync/internal/syncer"
	"github.com/fieldsync/fieldsync/sync/hlc"
	"github.com/fieldsync/fieldsync/sync/merge"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// eachDB runs a benchmark on SQLite and, when configured, PostgreSQL.
func eachDB(b *testing.B, fn func(b *testing.B, db dbtest.DB)) {
	b.Run("sqlite", func(b *testing.B) { fn(b, dbtest.SQLite(b)) })
	b.Run("postgres", func(b *testing.B) {
		db, ok := dbtest.Postgres(b)
		if !ok {
			b.Skip(dbtest.EnvURL + " is not set")
		}
		fn(b, db)
	})
}

func newBenchService(b *testing.B, db dbtest.DB) *syncer.Service {
	b.Helper()
	now := func() int64 { return time.Now().UnixMilli() }
	return syncer.New(db.Store, hlc.NewClock(vv.Server, now, 60_000), time.Now, syncer.Config{})
}

// logBatch is a push of n new patrol logs, each a realistic creation.
func logBatch(node string, prefix string, n int) []json.RawMessage {
	out := make([]json.RawMessage, n)
	for i := range out {
		id := fmt.Sprintf("%s-%d", prefix, i)
		out[i] = change("c-"+id, "patrol_logs", id, map[string]uint64{node: 1}, node, map[string]any{
			"unit": "KEN-3", "status": "active", "route": "RN1 north via Kafou", "callsign": "Tango 3",
			"leader": "Sgt. Odhiambo", "members_count": 6, "notes": "checkpoint Delmas 33 passed, road clear",
		})
	}
	return out
}

// BenchmarkPush measures pushes of 100 new records per request; records/s
// is 100 × the op rate.
func BenchmarkPush(b *testing.B) {
	eachDB(b, func(b *testing.B, db dbtest.DB) {
		s := newBenchService(b, db)
		dev := device("dev-bench", "KEN-3")
		batches := make([][]json.RawMessage, b.N)
		for i := range batches {
			batches[i] = logBatch("dev-bench", fmt.Sprintf("p%d", i), 100)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			resp, err := s.Push(context.Background(), dev, batches[i])
			if err != nil || resp.Results[99].Status != merge.Applied {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "records/s")
	})
}

// BenchmarkPull measures an initial sync of 5,000 records in pages of 500.
func BenchmarkPull(b *testing.B) {
	eachDB(b, func(b *testing.B, db dbtest.DB) {
		s := newBenchService(b, db)
		dev := device("dev-bench", "KEN-3")
		for i := 0; i < 50; i++ {
			if _, err := s.Push(context.Background(), dev, logBatch("dev-bench", fmt.Sprintf("l%d", i), 100)); err != nil {
				b.Fatal(err)
			}
		}
		b.ResetTimer()
		records := 0
		for i := 0; i < b.N; i++ {
			cur := domain.Cursor{}
			for {
				resp, err := s.Pull(context.Background(), dev, domain.PullRequest{Cursor: cur, Limit: 500})
				if err != nil {
					b.Fatal(err)
				}
				records += len(resp.Records)
				cur = resp.Cursor
				if !resp.HasMore {
					break
				}
			}
		}
		if records != b.N*5000 {
			b.Fatalf("pulled %d records, want %d", records, b.N*5000)
		}
		b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
	})
}
