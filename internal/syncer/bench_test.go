package syncer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

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

// BenchmarkPushConcurrent is BenchmarkPush from 8 devices at once (each
// pushing batches of 100 new logs): the shape of a sync window, and what
// the audit chain's one lock per commit would slow down.
func BenchmarkPushConcurrent(b *testing.B) {
	eachDB(b, func(b *testing.B, db dbtest.DB) {
		s := newBenchService(b, db)
		const devices = 8
		b.ResetTimer()
		var wg sync.WaitGroup
		errs := make(chan error, devices)
		for d := 0; d < devices; d++ {
			wg.Add(1)
			go func(d int) {
				defer wg.Done()
				name := fmt.Sprintf("dev-bench-%d", d)
				dev := device(name, "KEN-3")
				for i := d; i < b.N; i += devices {
					resp, err := s.Push(context.Background(), dev, logBatch(name, fmt.Sprintf("c%d", i), 100))
					if err != nil || resp.Results[99].Status != merge.Applied {
						errs <- fmt.Errorf("push: %v", err)
						return
					}
				}
			}(d)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "records/s")
	})
}

// BenchmarkPushConflicts is concurrent edits of shared records: 8 devices
// of one unit, each pushing batches of 100 edits to the same 100 patrol
// logs without having seen the others' edits, so nearly every change merges
// and updates a conflict on the fields it writes.
func BenchmarkPushConflicts(b *testing.B) {
	eachDB(b, func(b *testing.B, db dbtest.DB) {
		s := newBenchService(b, db)
		const devices, logs = 8, 100
		if _, err := s.Push(context.Background(), device("dev-seed", "KEN-3"), logBatch("dev-seed", "shared", logs)); err != nil {
			b.Fatal(err)
		}
		counter := make([]uint64, devices)
		batch := func(d int) []json.RawMessage {
			node := fmt.Sprintf("dev-c%d", d)
			counter[d]++
			out := make([]json.RawMessage, logs)
			for i := range out {
				out[i] = change(fmt.Sprintf("c-%s-%d-%d", node, counter[d], i), "patrol_logs", fmt.Sprintf("shared-%d", i),
					map[string]uint64{node: counter[d]}, node, map[string]any{"unit": "KEN-3", "status": "active", "route": fmt.Sprintf("route %d by %s", counter[d], node), "members_count": int(counter[d])})
			}
			return out
		}
		b.ResetTimer()
		var wg sync.WaitGroup
		errs := make(chan error, devices)
		for d := 0; d < devices; d++ {
			wg.Add(1)
			go func(d int) {
				defer wg.Done()
				dev := device(fmt.Sprintf("dev-c%d", d), "KEN-3")
				for i := d; i < b.N; i += devices {
					resp, err := s.Push(context.Background(), dev, batch(d))
					if err != nil {
						errs <- err
						return
					}
					if st := resp.Results[0].Status; st != merge.Merged && st != merge.Applied {
						errs <- fmt.Errorf("status %s (%s)", st, resp.Results[0].Code)
						return
					}
				}
			}(d)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N*logs)/b.Elapsed().Seconds(), "records/s")
	})
}

// seed5000 pushes 5,000 patrol logs of one device, the data set both read
// benchmarks page through.
func seed5000(b *testing.B, db dbtest.DB) (*syncer.Service, domain.Identity) {
	b.Helper()
	s := newBenchService(b, db)
	dev := device("dev-bench", "KEN-3")
	for i := 0; i < 50; i++ {
		if _, err := s.Push(context.Background(), dev, logBatch("dev-bench", fmt.Sprintf("l%d", i), 100)); err != nil {
			b.Fatal(err)
		}
	}
	return s, dev
}

// BenchmarkPull measures an initial sync of 5,000 records in pages of 500.
func BenchmarkPull(b *testing.B) {
	eachDB(b, func(b *testing.B, db dbtest.DB) {
		s, dev := seed5000(b, db)
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

// BenchmarkRawUpsert is the baseline for BenchmarkPush: the same 100 rows
// per transaction written straight into the records table with one
// multi-row INSERT … ON CONFLICT DO UPDATE, no merge, no history, no
// idempotency keys.
func BenchmarkRawUpsert(b *testing.B) {
	eachDB(b, func(b *testing.B, db dbtest.DB) {
		s := newBenchService(b, db)
		dev := device("dev-bench", "KEN-3")
		// One real push gives a realistic state document to write.
		resp, err := s.Push(context.Background(), dev, logBatch("dev-bench", "seed", 1))
		if err != nil {
			b.Fatal(err)
		}
		state := string(resp.Results[0].Record.Record.AppendJSON(nil))
		seq := int64(1_000_000)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			var sb strings.Builder
			args := make([]any, 0, 100*6)
			sb.WriteString("INSERT INTO records (collection, id, unit, contingent, state, updated_at, seq) VALUES ")
			for r := 0; r < 100; r++ {
				if r > 0 {
					sb.WriteString(", ")
				}
				seq++
				if db.Dialect == "postgres" {
					sb.WriteString("(?, ?, ?, ?, ?, ?, nextval('feed_seq'))")
					args = append(args, "patrol_logs", fmt.Sprintf("raw-%d-%d", i, r), "KEN-3", "KEN", state, time.Now())
				} else {
					sb.WriteString("(?, ?, ?, ?, ?, ?, ?)")
					args = append(args, "patrol_logs", fmt.Sprintf("raw-%d-%d", i, r), "KEN-3", "KEN", state, time.Now(), seq)
				}
			}
			sb.WriteString(" ON CONFLICT (collection, id) DO UPDATE SET state = excluded.state")
			if err := db.Store.DB().Transaction(func(tx *gorm.DB) error { return tx.Exec(sb.String(), args...).Error }); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "records/s")
	})
}

// BenchmarkRawRead is the baseline for BenchmarkPull: the same 5,000 rows
// read in pages of 500 by key, state bytes only.
func BenchmarkRawRead(b *testing.B) {
	eachDB(b, func(b *testing.B, db dbtest.DB) {
		seed5000(b, db)
		b.ResetTimer()
		records := 0
		for i := 0; i < b.N; i++ {
			last := int64(0)
			for {
				var rows []struct {
					Seq   int64
					State string
				}
				if err := db.Store.DB().Raw("SELECT seq, state FROM records WHERE seq > ? ORDER BY seq LIMIT 500", last).Scan(&rows).Error; err != nil {
					b.Fatal(err)
				}
				records += len(rows)
				if len(rows) < 500 {
					break
				}
				last = rows[len(rows)-1].Seq
			}
		}
		if records != b.N*5000 {
			b.Fatalf("read %d records, want %d", records, b.N*5000)
		}
		b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
	})
}
