package console

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// valueView is one competing value of a conflict, as shown side by side.
type valueView struct {
	Index  int
	Node   string
	HLC    string
	Text   string
	Hidden bool
	Kept   bool
}

// conflictView is a conflict as a card shows it.
type conflictView struct {
	C        Conflict
	Values   []valueView
	Record   string // link to the record's page, or its history
	Open     bool
	KeepOnly bool // the API takes only "keep" (acknowledge) for it
	TextKind bool // a new value is text by default (the values are strings)
}

func newConflictView(cf Conflict) conflictView {
	v := conflictView{
		C: cf, Open: cf.Status == "open",
		// Patrol entries are immutable (a correction is a new entry) and a
		// regressed change ("*") is a whole change: the API answers
		// not_resolvable to anything but keep.
		KeepOnly: cf.Field == "*" || cf.Collection == "patrol_entries",
		TextKind: true,
	}
	switch cf.Collection {
	case "patrol_logs":
		v.Record = Prefix + "/logs/" + url.PathEscape(cf.RecordID)
	default:
		v.Record = Prefix + "/history/" + url.PathEscape(cf.Collection) + "/" + url.PathEscape(cf.RecordID)
	}
	seenKind := false
	for i, val := range cf.Values {
		hidden := len(val.Value) == 0 || string(val.Value) == "null"
		v.Values = append(v.Values, valueView{Index: i, Node: val.Node, HLC: val.HLC, Text: showValue(val.Value),
			Hidden: hidden, Kept: cf.Kept != nil && *cf.Kept == i})
		if !hidden && !seenKind {
			v.TextKind, seenKind = isText(val.Value), true
		}
	}
	return v
}

type conflictsData struct {
	F           ConflictFilter
	Collections []string
	Rules       []string
	Conflicts   []conflictView
	Next        string
}

var (
	collections = []string{"patrol_logs", "patrol_entries", "corridors"}
	rules       = []string{"later_hlc", "status_order", "most_restrictive", "latest_time", "first_write", "update_wins", "sign_off_freeze", "vv_regressed"}
)

// conflicts serves the conflict queue (open conflicts unless asked
// otherwise), each with its values side by side.
func (h *console) conflicts(c *fiber.Ctx, s *session) error {
	f := ConflictFilter{Status: c.Query("status", "open"), Collection: c.Query("collection"), Rule: c.Query("rule"),
		Unit: c.Query("unit"), Cursor: c.Query("cursor")}
	d := &conflictsData{F: f, Collections: collections, Rules: rules}
	v := &view{Title: "Conflicts", Nav: "conflicts", Data: d}
	if id := c.Query("resolved"); id != "" {
		// The confirmation of a decision just made (POST-redirect-GET).
		v.Notice = "The conflict is resolved."
		if cf, err := s.api.Conflict(id); err == nil {
			v.Notice = "Resolved: " + label(cf.Field) + " of " + label(cf.Collection) + " " + short(cf.RecordID) +
				" — " + cf.Resolution + " by " + cf.ResolvedBy + ". Reason: " + cf.Reason
		}
	}
	page, err := s.api.Conflicts(f)
	if err != nil {
		v.Error = h.fail(c, err)
		return h.render(c, s, statusOf(err), "conflicts", v)
	}
	for _, cf := range page.Conflicts {
		d.Conflicts = append(d.Conflicts, newConflictView(cf))
	}
	if page.HasMore && page.Cursor != "" {
		q := url.Values{}
		set(q, "status", f.Status)
		set(q, "collection", f.Collection)
		set(q, "rule", f.Rule)
		set(q, "unit", f.Unit)
		q.Set("cursor", page.Cursor)
		d.Next = Prefix + "/conflicts?" + q.Encode()
	}
	return h.render(c, s, fiber.StatusOK, "conflicts", v)
}

func label(s string) string { return strings.ReplaceAll(s, "_", " ") }

type conflictData struct {
	conflictView
	Reason string // what the supervisor typed, kept when the API refused
	Kind   string
	Value  string
}

// Card is the conflict as the card partials take it.
func (d *conflictData) Card() conflictView { return d.conflictView }

// conflictDetail serves one conflict with its decision form.
func (h *console) conflictDetail(c *fiber.Ctx, s *session) error {
	return h.showConflict(c, s, fiber.StatusOK, nil, conflictData{})
}

func (h *console) showConflict(c *fiber.Ctx, s *session, status int, fail *banner, form conflictData) error {
	v := &view{Title: "Conflict", Nav: "conflicts", Error: fail}
	cf, err := s.api.Conflict(c.Params("id"))
	if err != nil {
		if v.Error == nil {
			v.Error, status = h.fail(c, err), statusOf(err)
		}
		return h.render(c, s, status, "error", v)
	}
	form.conflictView = newConflictView(*cf)
	if form.Kind == "" && !form.TextKind {
		form.Kind = "json"
	}
	v.Title = "Conflict on " + label(cf.Field)
	v.Data = &form
	return h.render(c, s, status, "conflict", v)
}

// resolve posts a decision to the API: the form's decision button is
// "keep", "pick:<index>" or "value" (with kind text or json). On success
// the browser goes back to the queue, which confirms the decision.
func (h *console) resolve(c *fiber.Ctx, s *session) error {
	id := c.Params("id")
	form := conflictData{Reason: c.FormValue("reason"), Kind: c.FormValue("kind"), Value: c.FormValue("value")}
	refuse := func(code, text string) error {
		return h.showConflict(c, s, fiber.StatusUnprocessableEntity, &banner{Code: code, Text: text}, form)
	}
	req := ResolveRequest{Reason: strings.TrimSpace(form.Reason)}
	if req.Reason == "" {
		return refuse("missing_reason", "Write the reason for the decision: it is kept with the resolution.")
	}
	switch decision := c.FormValue("decision"); {
	case decision == "keep":
		req.Choice = "keep"
	case strings.HasPrefix(decision, "pick:"):
		n, err := strconv.Atoi(strings.TrimPrefix(decision, "pick:"))
		if err != nil || n < 0 {
			return refuse("invalid_decision", "The form named no value to pick; reload the page and try again.")
		}
		req.Choice, req.Pick = "pick", &n
	case decision == "value":
		req.Choice = "value"
		if form.Kind == "json" {
			if !json.Valid([]byte(form.Value)) {
				return refuse("invalid_json", "The new value is not valid JSON. Write text as \"text\" in quotes, or choose the type text.")
			}
			req.Value = json.RawMessage(form.Value)
		} else {
			req.Value, _ = json.Marshal(form.Value)
		}
	default:
		return refuse("invalid_decision", "Choose keep, pick a value, or set a new value.")
	}
	if _, err := s.api.Resolve(id, req); err != nil {
		return h.showConflict(c, s, statusOf(err), h.fail(c, err), form)
	}
	return c.Redirect(Prefix+"/conflicts?resolved="+url.QueryEscape(id), fiber.StatusSeeOther)
}
