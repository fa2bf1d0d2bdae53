package review_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/internal/review"
	"github.com/fieldsync/fieldsync/internal/store/dbtest"
	"github.com/fieldsync/fieldsync/internal/syncer"
	"github.com/fieldsync/fieldsync/sync/hlc"
	"github.com/fieldsync/fieldsync/sync/vv"
)

var day = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

func at(h, m int) time.Time {
	return day.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
}

func hoursOf(h review.CorridorHours) [4]float64 {
	return [4]float64{h.Open.Hours(), h.Restricted.Hours(), h.Closed.Hours(), h.Unverified.Hours()}
}

// Hours, by hand, on small histories (6 h default max age).
func TestHoursCountsEachStatusUntilItGoesStale(t *testing.T) {
	six := 6 * time.Hour
	for _, c := range []struct {
		name     string
		history  []review.CorridorState
		from, to time.Time
		want     [4]float64 // open, restricted, closed, unverified
	}{
		{"no report at all is a day unverified", nil, at(0, 0), at(24, 0), [4]float64{0, 0, 0, 24}},
		{"an open report counts until its max age, then unverified",
			[]review.CorridorState{{At: at(2, 0), Status: "open", VerifiedAt: at(2, 0), MaxAge: six}},
			at(0, 0), at(24, 0), [4]float64{6, 0, 0, 18}},
		{"a state held before the range counts from its start",
			[]review.CorridorState{{At: at(-3, 0), Status: "closed", VerifiedAt: at(-3, 0), MaxAge: six}},
			at(0, 0), at(12, 0), [4]float64{0, 0, 3, 9}},
		{"a report arriving after the range is ignored",
			[]review.CorridorState{{At: at(25, 0), Status: "open", VerifiedAt: at(25, 0), MaxAge: six}},
			at(0, 0), at(24, 0), [4]float64{0, 0, 0, 24}},
		{"a late report with an old verified_at is unverified from the start",
			[]review.CorridorState{{At: at(10, 0), Status: "open", VerifiedAt: at(1, 0), MaxAge: six}},
			at(0, 0), at(24, 0), [4]float64{0, 0, 0, 24}},
		{"deleted and status-less states are unverified",
			[]review.CorridorState{{At: at(0, 0), Status: "open", VerifiedAt: at(0, 0), MaxAge: six}, {At: at(1, 0), Deleted: true, Status: "open", VerifiedAt: at(1, 0), MaxAge: six}, {At: at(2, 0), VerifiedAt: at(2, 0), MaxAge: six}},
			at(0, 0), at(3, 0), [4]float64{1, 0, 0, 2}},
		{"an empty range is nothing", nil, at(5, 0), at(5, 0), [4]float64{0, 0, 0, 0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := hoursOf(review.Hours("c", c.history, c.from, c.to))
			if got != c.want {
				t.Fatalf("hours = %v, want %v", got, c.want)
			}
		})
	}
}

// The corridor report through the server: reports arrive at set server
// times, and the hours are those worked out by hand in the comments.
func TestCorridorReportMatchesAHandComputedHistory(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db dbtest.DB) {
		ctx := context.Background()
		now := at(0, 0)
		svc := syncer.New(db.Store, hlc.NewClock(vv.Server, func() int64 { return now.UnixMilli() }, 60_000), func() time.Time { return now }, syncer.Config{})
		dev := domain.Identity{Subject: "dev-c1", Role: domain.RoleDevice, Unit: "KEN-1", Contingent: "KEN"}
		n := 0
		report := func(arrives time.Time, fields map[string]any) {
			t.Helper()
			now = arrives
			n++
			b, _ := json.Marshal(map[string]any{"change_id": fmt.Sprintf("c%d", n), "collection": "corridors", "id": "rn1-km4",
				"vv": map[string]int{"dev-c1": n}, "hlc": fmt.Sprintf("%d-0-dev-c1", arrives.UnixMilli()), "fields": fields})
			resp, err := svc.Push(ctx, dev, []json.RawMessage{b})
			if err != nil || resp.Results[0].Status != "applied" {
				t.Fatalf("report %d: %v %+v", n, err, resp)
			}
		}
		iso := func(t time.Time) string { return t.Format(time.RFC3339) }
		// 00:00-02:00 no report: unverified 2 h.
		// 02:00 open, verified 02:00, stale at 08:00: open 02:00-05:00 = 3 h.
		report(at(2, 0), map[string]any{"status": "open", "verified_at": iso(at(2, 0))})
		// 05:00 restricted, verified 04:30, stale at 10:30: restricted 5.5 h, unverified 3.5 h.
		report(at(5, 0), map[string]any{"status": "restricted", "verified_at": iso(at(4, 30))})
		// 14:00 closed, verified 14:00, max age 2 h: closed 2 h, unverified 4 h.
		report(at(14, 0), map[string]any{"status": "closed", "verified_at": iso(at(14, 0)), "max_age_minutes": 120})
		// 20:00 open from a device back online, verified 13:00: verified_at
		// keeps the latest time (14:00), stale since 16:00: unverified 4 h.
		report(at(20, 0), map[string]any{"status": "open", "verified_at": iso(at(13, 0))})
		now = at(30, 0)

		rs := review.New(db.Store, db.Store.Get, func() time.Time { return now }, 0)
		sup := domain.Identity{Subject: "sup", Role: domain.RoleSupervisor, Contingent: "KEN"}
		rows, err := rs.CorridorReport(ctx, sup, at(0, 0), at(24, 0))
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 || rows[0].Corridor != "rn1-km4" {
			t.Fatalf("report rows: %+v", rows)
		}
		if got, want := hoursOf(rows[0]), [4]float64{3, 5.5, 2, 13.5}; got != want {
			t.Fatalf("hours open/restricted/closed/unverified = %v, want %v", got, want)
		}
		// Half the day: 00:00-12:00 = unverified 2 + 1.5, open 3, restricted 5.5.
		rows, _ = rs.CorridorReport(ctx, sup, at(0, 0), at(12, 0))
		if got, want := hoursOf(rows[0]), [4]float64{3, 5.5, 0, 3.5}; got != want {
			t.Fatalf("half day = %v, want %v", got, want)
		}
		var csv bytes.Buffer
		if err := review.WriteCorridorCSV(&csv, at(0, 0), at(24, 0), rows[:1]); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(csv.String(), "rn1-km4,2026-11-20T00:00:00Z,2026-11-21T00:00:00Z,3.00,5.50,0.00,3.50") {
			t.Fatalf("csv:\n%s", csv.String())
		}
		if _, err := rs.CorridorReport(ctx, dev, at(0, 0), at(24, 0)); domain.ErrorCode(err) != domain.CodeForbidden {
			t.Fatalf("a device reading the report: %v", err)
		}
	})
}
