package console

import (
	"sort"
	"time"

	"github.com/gofiber/fiber/v2"
)

// corridorView is one segment on the board.
type corridorView struct {
	ID         string
	Name       string
	Status     string
	Stale      bool
	VerifiedAt string
	Age        string
	Reason     string
	Threat     string
	Hours      *CorridorHours
}

type corridorsData struct {
	Corridors  []corridorView
	Counts     map[string]int
	Unverified int
	From, To   time.Time
	Report     bool
}

// weekStart is Monday 00:00 UTC of the week holding t.
func weekStart(t time.Time) time.Time {
	t = t.UTC()
	d := (int(t.Weekday()) + 6) % 7 // days since Monday
	return time.Date(t.Year(), t.Month(), t.Day()-d, 0, 0, 0, 0, time.UTC)
}

// corridors serves the corridor board: every segment's current status as
// the supervisor's pull serves it (stale ones marked UNVERIFIED, as the
// API flags them), with this week's hours from the access report.
func (h *console) corridors(c *fiber.Ctx, s *session) error {
	now := h.now().UTC()
	d := &corridorsData{Counts: map[string]int{}, From: weekStart(now), To: now}
	if !d.To.After(d.From) {
		d.To = d.From.Add(time.Second) // the report needs a range that is not empty
	}
	v := &view{Title: "Corridor board", Nav: "corridors", Data: d}
	recs, err := s.api.Corridors()
	if err != nil {
		v.Error = h.fail(c, err)
		return h.render(c, s, statusOf(err), "corridors", v)
	}
	hours := map[string]*CorridorHours{}
	if rep, err := s.api.CorridorReport(d.From, d.To); err != nil {
		v.Error = h.fail(c, err)
	} else {
		d.Report = true
		for i := range rep.Corridors {
			hours[rep.Corridors[i].Corridor] = &rep.Corridors[i]
		}
	}
	for _, r := range recs {
		if r.Deleted {
			continue
		}
		cv := corridorView{ID: r.ID, Name: str(r.Fields["name"]), Status: str(r.Fields["status"]), Stale: r.Stale,
			Reason: str(r.Fields["reason"]), Threat: str(r.Fields["threat_level"]), Hours: hours[r.ID]}
		if t, err := time.Parse(time.RFC3339Nano, str(r.Fields["verified_at"])); err == nil {
			cv.VerifiedAt, cv.Age = when(t), age(now.Sub(t))
		}
		if cv.Name == "" {
			cv.Name = r.ID
		}
		d.Counts[cv.Status]++
		if cv.Stale {
			d.Unverified++
		}
		d.Corridors = append(d.Corridors, cv)
	}
	sort.Slice(d.Corridors, func(i, j int) bool { return d.Corridors[i].ID < d.Corridors[j].ID })
	return h.render(c, s, fiber.StatusOK, "corridors", v)
}
