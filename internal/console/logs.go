package console

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// field is one named value as a page shows it.
type field struct {
	Name  string
	Value string
}

type logsData struct {
	F        LogFilter
	Statuses []string
	Page     *PatrolLogPage
	Next     string
}

// logs serves the patrol log list: the filters are a GET form, passed to
// the API as they are (the API validates them and says what is wrong).
func (h *console) logs(c *fiber.Ctx, s *session) error {
	f := LogFilter{
		Unit: c.Query("unit"), From: c.Query("from"), To: c.Query("to"), Status: c.Query("status"),
		SignedOff: c.Query("signed_off"), HasConflicts: c.Query("has_conflicts"), Cursor: c.Query("cursor"),
	}
	d := logsData{F: f, Statuses: []string{"planned", "active", "cancelled", "completed"}}
	v := &view{Title: "Patrol logs", Nav: "logs", Data: &d}
	page, err := s.api.PatrolLogs(f)
	if err != nil {
		v.Error = h.fail(c, err)
		return h.render(c, s, statusOf(err), "logs", v)
	}
	d.Page = page
	if page.HasMore && page.Cursor != "" {
		q := url.Values{}
		set(q, "unit", f.Unit)
		set(q, "from", f.From)
		set(q, "to", f.To)
		set(q, "status", f.Status)
		set(q, "signed_off", f.SignedOff)
		set(q, "has_conflicts", f.HasConflicts)
		q.Set("cursor", page.Cursor)
		d.Next = Prefix + "/logs?" + q.Encode()
	}
	return h.render(c, s, fiber.StatusOK, "logs", v)
}

// statusOf is the status a page answers with when the API refused.
func statusOf(err error) int {
	if p, ok := problemOf(err); ok {
		return p.Status
	}
	return fiber.StatusInternalServerError
}

// logFieldOrder is the order a log's fields are shown in; others follow
// by name.
var logFieldOrder = []string{
	"status", "unit", "contingent", "route", "area", "callsign", "leader", "vehicle", "radio_channel",
	"members_count", "planned_start", "planned_end", "started_at", "ended_at", "start_location",
	"end_location", "weather", "summary", "handover_notes", "notes", "signed_off", "signed_off_by", "signed_off_at",
}

// entryHead are an entry's fields shown in its heading and text, not in
// its field list.
var entryHead = []string{"kind", "occurred_at", "text", "patrol_id", "unit"}

// orderedFields lists the fields that hold a value in order, then the
// rest by name, leaving out skip. A record carries every field of its
// schema, unset ones as null: they are noise on a page.
func orderedFields(fs map[string]json.RawMessage, order, skip []string) []field {
	var out []field
	for _, name := range order {
		if raw, ok := fs[name]; ok && !isNull(raw) {
			out = append(out, field{Name: name, Value: showValue(raw)})
		}
	}
	var rest []string
	for name, raw := range fs {
		if !slices.Contains(order, name) && !slices.Contains(skip, name) && !isNull(raw) {
			rest = append(rest, name)
		}
	}
	sort.Strings(rest)
	for _, name := range rest {
		out = append(out, field{Name: name, Value: showValue(fs[name])})
	}
	return out
}

// identifying reports whether an entry field identifies a person
// (community contacts, informants): shown apart, marked.
func identifying(name string) bool { return strings.HasPrefix(name, "contact_") }

type entryView struct {
	ID          string
	Kind        string
	When        string
	occurred    string
	Text        string
	Fields      []field
	Identifying []field
	Deleted     bool
}

type logData struct {
	Log     PatrolLog
	Fields  []field
	Entries []entryView
}

// logDetail serves one patrol log with its entries. Identifying fields are
// shown when, and only when, the API returned them.
func (h *console) logDetail(c *fiber.Ctx, s *session) error {
	return h.showLog(c, s, fiber.StatusOK, nil, "")
}

func (h *console) showLog(c *fiber.Ctx, s *session, status int, fail *banner, notice string) error {
	id := c.Params("id")
	v := &view{Title: "Patrol log", Nav: "logs", Error: fail, Notice: notice}
	if c.Query("signed") == "1" && notice == "" {
		v.Notice = "The patrol log is signed off."
	}
	d, err := s.api.PatrolLog(id)
	if err != nil {
		if v.Error == nil {
			v.Error = h.fail(c, err)
			status = statusOf(err)
		}
		return h.render(c, s, status, "error", v)
	}
	data := &logData{Log: d.PatrolLog, Fields: orderedFields(d.PatrolLog.Record.Fields, logFieldOrder, nil)}
	for _, e := range d.Entries {
		ev := entryView{ID: e.ID, Deleted: e.Deleted, Kind: str(e.Fields["kind"]), occurred: str(e.Fields["occurred_at"]),
			When: showValue(e.Fields["occurred_at"]), Text: str(e.Fields["text"])}
		for _, f := range orderedFields(e.Fields, nil, entryHead) {
			if identifying(f.Name) {
				ev.Identifying = append(ev.Identifying, f)
			} else {
				ev.Fields = append(ev.Fields, f)
			}
		}
		data.Entries = append(data.Entries, ev)
	}
	// Entries in the order they happened (RFC 3339 UTC strings sort as
	// times), then by id.
	sort.SliceStable(data.Entries, func(i, j int) bool {
		a, b := data.Entries[i], data.Entries[j]
		if a.occurred != b.occurred {
			return a.occurred < b.occurred
		}
		return a.ID < b.ID
	})
	v.Title = "Patrol log " + d.PatrolLog.Unit + " " + d.PatrolLog.Day
	v.Data = data
	return h.render(c, s, status, "log", v)
}

func isNull(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s == "" || s == "null"
}

// str is a JSON string's value, or "" for anything else.
func str(raw json.RawMessage) string {
	var s string
	_ = json.Unmarshal(raw, &s)
	return s
}

// signOff signs a log off through the API, then shows the log again
// (POST-redirect-GET); a refusal is shown on the log's page.
func (h *console) signOff(c *fiber.Ctx, s *session) error {
	id := c.Params("id")
	if err := s.api.SignOff(id); err != nil {
		return h.showLog(c, s, statusOf(err), h.fail(c, err), "")
	}
	return c.Redirect(Prefix+"/logs/"+url.PathEscape(id)+"?signed=1", fiber.StatusSeeOther)
}

type versionView struct {
	N       int
	Version Version
	Server  bool
	Changed []changedField
}

type changedField struct {
	Field, Rule, Value string
	Hidden             bool
}

type historyData struct {
	Collection string
	ID         string
	Back       string
	BackLabel  string
	Versions   []versionView
}

// history serves a record's merge history, newest version first.
func (h *console) history(c *fiber.Ctx, s *session) error {
	collection, id := c.Params("collection"), c.Params("id")
	v := &view{Title: "History", Nav: navOf(collection)}
	hist, err := s.api.History(collection, id)
	if err != nil {
		v.Error = h.fail(c, err)
		return h.render(c, s, statusOf(err), "error", v)
	}
	d := &historyData{Collection: collection, ID: id}
	switch collection {
	case "patrol_logs":
		d.Back, d.BackLabel = Prefix+"/logs/"+url.PathEscape(id), "The patrol log"
	case "corridors":
		d.Back, d.BackLabel = Prefix+"/corridors", "Corridor board"
	}
	for i := len(hist.Versions) - 1; i >= 0; i-- {
		ver := hist.Versions[i]
		vv := versionView{N: i + 1, Version: ver, Server: ver.Node == "srv"}
		rules := map[string]string{}
		var names []string
		for _, fr := range ver.Changed {
			rules[fr.Field] = fr.Rule
			names = append(names, fr.Field)
		}
		for name := range ver.Values {
			if _, ok := rules[name]; !ok {
				names = append(names, name)
			}
		}
		sort.Strings(names)
		for _, name := range slices.Compact(names) {
			cf := changedField{Field: name, Rule: rules[name]}
			if raw, ok := ver.Values[name]; ok {
				cf.Value = showValue(raw)
			} else {
				cf.Hidden = true
			}
			vv.Changed = append(vv.Changed, cf)
		}
		d.Versions = append(d.Versions, vv)
	}
	v.Title = "History of " + collection + " " + short(id)
	if hist.Truncated {
		v.Notice = fmt.Sprintf("This record has more than %d versions; the oldest %d are shown. The API pages through all of them.", maxHistoryVersions, len(hist.Versions))
	}
	v.Data = d
	return h.render(c, s, fiber.StatusOK, "history", v)
}

func navOf(collection string) string {
	if collection == "corridors" {
		return "corridors"
	}
	return "logs"
}
