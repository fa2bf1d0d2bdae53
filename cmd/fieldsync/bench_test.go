package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/bench"
	"github.com/fieldsync/fieldsync/internal/store/dbtest"
)

// TestBenchReportsEveryFigure runs "fieldsync bench" tiny, on SQLite and,
// when configured, PostgreSQL, so the harness never rots: it must finish
// and report every figure. Nothing here judges speed.
func TestBenchReportsEveryFigure(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { benchTiny(t, map[string]string{}) })
	t.Run("postgres", func(t *testing.T) {
		u, ok := dbtest.PostgresURL(t)
		if !ok {
			t.Skip(dbtest.EnvURL + " is not set: the PostgreSQL run is CI's (CI=true makes it mandatory)")
		}
		benchTiny(t, map[string]string{"FIELDSYNC_DATABASE_URL": u})
	})
}

func benchTiny(t *testing.T, env map[string]string) {
	t.Helper()
	const devices, batch, pushes, records = 4, 20, 3, 300
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	args := []string{"bench", "-json", "-devices", "4", "-batch", "20", "-push-batches", "3", "-records", "300", "-page", "100", "-timeout", "3m"}
	if err := run(ctx, args, func(k string) string { return env[k] }, &stdout, &stderr); err != nil {
		t.Fatalf("fieldsync bench: %v\n%s", err, stderr.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("the -json report does not decode: %v\n%s", err, stdout.String())
	}
	for name, r := range map[string]bench.Rate{
		"push_new": rep.PushNew, "push_edit": rep.PushEdit, "pull": rep.Pull, "pull_plain": rep.PullPlain,
		"raw_upsert_new": rep.RawUpsertNew, "raw_upsert_edit": rep.RawUpsertEdit, "raw_read": rep.RawRead,
	} {
		if r.Records <= 0 || r.Seconds <= 0 || r.PerSecond <= 0 {
			t.Errorf("%s = %+v, want records, seconds and a rate", name, r)
		}
	}
	if rep.PushNew.Records != devices*pushes*batch || rep.PushEdit.Records != devices*pushes*batch {
		t.Errorf("pushed %d new and %d edits, want %d each", rep.PushNew.Records, rep.PushEdit.Records, devices*pushes*batch)
	}
	if rep.PulledRecords != records || rep.RawRead.Records != records {
		t.Errorf("pulled %d records and read %d raw, want %d", rep.PulledRecords, rep.RawRead.Records, records)
	}
	// Two devices edit every shared record in every round, both from the
	// vector they pulled before it: whichever commits second is concurrent
	// with the first, whatever the timing.
	if got := rep.Outcomes["applied"] + rep.Outcomes["merged"]; got != devices*pushes*batch || rep.Outcomes["merged"] == 0 {
		t.Errorf("edit outcomes %v, want %d applied or merged, some merged", rep.Outcomes, devices*pushes*batch)
	}
	if rep.BytesPerRecordGzip <= 0 || rep.BytesPerRecordPlain <= rep.BytesPerRecordGzip {
		t.Errorf("bytes per record: gzip %.0f, plain %.0f; want 0 < gzip < plain", rep.BytesPerRecordGzip, rep.BytesPerRecordPlain)
	}
	if rep.PeakRSSPushBytes <= 0 || rep.PeakRSSPullBytes <= 0 || rep.PeakAnonPushBytes <= 0 {
		t.Errorf("peak RSS: pushes %d (anonymous %d), pull %d bytes; want all measured", rep.PeakRSSPushBytes, rep.PeakAnonPushBytes, rep.PeakRSSPullBytes)
	}
	for _, kind := range []string{"push new", "push edits", "pull", "pull plain", "pull delta"} {
		if l := rep.Latency[kind]; l.Count == 0 || l.P50Ms <= 0 || l.P99Ms < l.P50Ms {
			t.Errorf("latency of %q = %+v, want requests with p99 ≥ p50 > 0", kind, l)
		}
	}
	want := []string{
		"push, new records", "push, concurrent edits", "pull, initial sync (gzip)", "pull, initial sync (no gzip)",
		"pull, initial sync wall time", "pull, bytes per record (gzip)", "pull, bytes per record (no gzip)",
		"server peak RSS, pushes", "server peak RSS, pushes: anonymous", "server peak RSS, initial sync",
	}
	var text bytes.Buffer
	rep.Print(&text)
	for _, name := range want {
		var f *bench.Figure
		for i := range rep.Figures {
			if rep.Figures[i].Name == name {
				f = &rep.Figures[i]
			}
		}
		if f == nil || f.Value <= 0 {
			t.Errorf("figure %q missing or zero: %+v", name, f)
		}
		if !strings.Contains(text.String(), name) {
			t.Errorf("the printed report lacks %q:\n%s", name, text.String())
		}
	}
	for _, f := range rep.Figures {
		if f.Raw > 0 && f.Unit == "records/s" && f.Ratio <= 0 {
			t.Errorf("figure %q has a raw limit but no ratio", f.Name)
		}
		if f.Target != "" && f.Met == nil {
			t.Errorf("figure %q has a target but no verdict", f.Name)
		}
	}
	t.Logf("%s", text.String())
}
