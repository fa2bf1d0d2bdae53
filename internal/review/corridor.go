package review

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"strconv"
	"time"

	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/sync/merge"
)

// CorridorState is what the server held for a corridor segment from At on:
// the state after one accepted version.
type CorridorState struct {
	At         time.Time // when the server accepted the version (server clock)
	Status     string    // open | restricted | closed; "" when none
	VerifiedAt time.Time // zero when none
	MaxAge     time.Duration
	Deleted    bool
}

// CorridorHours is the humanitarian-access indicator of one segment over a
// range: how long it was open, restricted, closed and unverified.
type CorridorHours struct {
	Corridor                             string
	Open, Restricted, Closed, Unverified time.Duration
}

// Hours computes a segment's hours in [from, to) from its history (ordered
// by At). The segment's status at t is the state the server held at t; it
// counts as unverified before the first report, while deleted, without a
// status or verified_at, and from verified_at + max age on (an old "open"
// is not access anyone has checked). Times are the server's: device clocks
// are wrong, and a report that arrives late arrives with an old
// verified_at, so the time it could not be known counts as unverified.
func Hours(corridor string, history []CorridorState, from, to time.Time) CorridorHours {
	out := CorridorHours{Corridor: corridor}
	if !to.After(from) {
		return out
	}
	add := func(st *CorridorState, a, b time.Time) {
		if !b.After(a) {
			return
		}
		if st == nil || st.Deleted || st.Status == "" || st.VerifiedAt.IsZero() {
			out.Unverified += b.Sub(a)
			return
		}
		// Verified from a until the status goes stale.
		stale := st.VerifiedAt.Add(st.MaxAge)
		fresh := b
		if stale.Before(fresh) {
			fresh = stale
		}
		if fresh.After(a) {
			switch st.Status {
			case "open":
				out.Open += fresh.Sub(a)
			case "restricted":
				out.Restricted += fresh.Sub(a)
			case "closed":
				out.Closed += fresh.Sub(a)
			default:
				out.Unverified += fresh.Sub(a)
			}
		} else {
			fresh = a
		}
		out.Unverified += b.Sub(fresh)
	}
	var cur *CorridorState
	t := from
	for i := range history {
		st := &history[i]
		if !st.At.After(from) {
			cur = st // the state held when the range begins
			continue
		}
		if !st.At.Before(to) {
			break
		}
		add(cur, t, st.At)
		cur, t = st, st.At
	}
	add(cur, t, to)
	return out
}

// CorridorReport computes the hours of every corridor segment (one the
// caller may read) over [from, to).
func (s *Service) CorridorReport(ctx context.Context, id domain.Identity, from, to time.Time) ([]CorridorHours, error) {
	if err := reviewer(id); err != nil {
		return nil, err
	}
	var out []CorridorHours
	after := ""
	for {
		recs, err := s.store.Records(ctx, domain.Corridors, "", "", after, 500)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			versions, err := s.store.History(ctx, domain.Key{Collection: domain.Corridors, ID: r.ID})
			if err != nil {
				return nil, err
			}
			hist := make([]CorridorState, len(versions))
			for i, v := range versions {
				hist[i] = s.corridorState(v.ReceivedAt, v.Record)
			}
			out = append(out, Hours(r.ID, hist, from, to))
		}
		if len(recs) < 500 {
			return out, nil
		}
		after = recs[len(recs)-1].ID
	}
}

func (s *Service) corridorState(at time.Time, rec *merge.Record) CorridorState {
	st := CorridorState{At: at, Status: str(rec.Value("status")), Deleted: rec.Deleted(), MaxAge: s.corridorMaxAge}
	if t, err := time.Parse(time.RFC3339Nano, str(rec.Value("verified_at"))); err == nil {
		st.VerifiedAt = t
	}
	var m int64
	if json.Unmarshal(rec.Value("max_age_minutes"), &m) == nil && m > 0 {
		st.MaxAge = time.Duration(m) * time.Minute
	}
	return st
}

// hours formats a duration as decimal hours, two places.
func hours(d time.Duration) string { return strconv.FormatFloat(d.Hours(), 'f', 2, 64) }

// WriteCorridorCSV writes the report as CSV with a header row.
func WriteCorridorCSV(w io.Writer, from, to time.Time, rows []CorridorHours) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"corridor", "from", "to", "hours_open", "hours_restricted", "hours_closed", "hours_unverified"})
	for _, r := range rows {
		name := r.Corridor
		if name != "" && name[0] == '-' {
			name = "'" + name // a spreadsheet would read -A1 as a formula
		}
		_ = cw.Write([]string{name, from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339),
			hours(r.Open), hours(r.Restricted), hours(r.Closed), hours(r.Unverified)})
	}
	cw.Flush()
	return cw.Error()
}
