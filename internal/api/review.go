package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/internal/review"
	"github.com/fieldsync/fieldsync/internal/syncer"
	"github.com/fieldsync/fieldsync/sync/merge"
)

// ReviewReader serves the supervisors' reads (review.Service).
type ReviewReader interface {
	History(ctx context.Context, id domain.Identity, key domain.Key, after int64, limit int) ([]review.VersionView, bool, error)
	Conflicts(ctx context.Context, id domain.Identity, q review.ConflictQuery) ([]domain.StoredConflict, bool, error)
	Conflict(ctx context.Context, id domain.Identity, conflictID string) (*domain.StoredConflict, error)
	Rejections(ctx context.Context, id domain.Identity, q review.RejectionQuery) ([]domain.StoredRejection, bool, error)
	PatrolLogs(ctx context.Context, id domain.Identity, q review.LogQuery) ([]review.LogSummary, string, bool, error)
	PatrolLog(ctx context.Context, id domain.Identity, logID string) (*review.LogSummary, []*merge.Record, error)
	CorridorReport(ctx context.Context, id domain.Identity, from, to time.Time) ([]review.CorridorHours, error)
}

// ReviewWriter carries out supervisors' decisions (syncer.Service).
type ReviewWriter interface {
	Resolve(ctx context.Context, id domain.Identity, conflictID string, req syncer.ResolveRequest) (*domain.StoredConflict, *domain.RecordView, error)
	SignOff(ctx context.Context, id domain.Identity, logID string) (*domain.RecordView, error)
}

// Page sizes of the review lists.
const (
	reviewDefaultLimit = 100
	reviewMaxLimit     = 500
	// History pages: a corridor edited by fifty devices for a week has
	// tens of thousands of versions.
	historyDefaultLimit = 500
	historyMaxLimit     = 1000
	// maxReportRange bounds a corridor report: a year of history.
	maxReportRange = 366 * 24 * time.Hour
)

// query reads a route's query parameters strictly: each at most once, none
// unknown (a typo must not silently widen a filter).
func query(c *fiber.Ctx, allowed ...string) (map[string]string, error) {
	out := map[string]string{}
	var bad error
	c.Context().QueryArgs().VisitAll(func(k, v []byte) {
		if bad != nil {
			return
		}
		name := string(k)
		known := false
		for _, a := range allowed {
			if a == name {
				known = true
				break
			}
		}
		switch {
		case !known:
			bad = domain.Errorf(domain.CodeInvalidParam, "unknown query parameter %s; this route takes %s", quoteShort(name), strings.Join(allowed, ", "))
		case hasKey(out, name):
			bad = domain.Errorf(domain.CodeInvalidParam, "the query parameter %q appears twice", name)
		default:
			out[name] = string(v)
		}
	})
	return out, bad
}

func hasKey(m map[string]string, k string) bool { _, ok := m[k]; return ok }

func (s *server) reviewReader() (ReviewReader, error) {
	if s.deps.Review == nil {
		return nil, domain.Errorf(domain.CodeNotFound, "review is not served by this instance")
	}
	return s.deps.Review, nil
}

func identity(c *fiber.Ctx) (domain.Identity, error) {
	id, ok := IdentityFrom(c)
	if !ok {
		return id, errors.New("api: review route without authentication")
	}
	return id, nil
}

func limitOf(q map[string]string) (int, error) {
	v, ok := q["limit"]
	if !ok {
		return reviewDefaultLimit, nil
	}
	n, ok := parseLimit(v, reviewMaxLimit)
	if !ok {
		return 0, domain.Errorf(domain.CodeInvalidParam, "limit must be an integer from 1 to %d", reviewMaxLimit)
	}
	return n, nil
}

func boolParam(q map[string]string, name string) (*bool, error) {
	v, ok := q[name]
	if !ok {
		return nil, nil
	}
	switch v {
	case "true":
		t := true
		return &t, nil
	case "false":
		f := false
		return &f, nil
	}
	return nil, domain.Errorf(domain.CodeInvalidParam, "%s must be true or false", name)
}

// textParam reads a free-text filter value of a bounded, safe alphabet.
func textParam(q map[string]string, name string) (string, error) {
	v := q[name]
	if len(v) > 128 || strings.ContainsAny(v, "\x00\r\n") {
		return "", domain.Errorf(domain.CodeInvalidParam, "%s is too long or holds control characters", name)
	}
	return v, nil
}

func oneOf(q map[string]string, name string, values ...string) (string, error) {
	v, ok := q[name]
	if !ok {
		return "", nil
	}
	for _, a := range values {
		if v == a {
			return a, nil
		}
	}
	return "", domain.Errorf(domain.CodeInvalidParam, "%s must be one of %s", name, strings.Join(values, ", "))
}

type pageJSON struct {
	Cursor  string `json:"cursor"`
	HasMore bool   `json:"has_more"`
}

// sendValue sends v as a JSON response no cache may keep.
func sendValue(c *fiber.Ctx, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return sendJSON(c, b)
}

// recordJSON is a record's canonical encoding, with "stale" when set.
func recordJSON(rv *domain.RecordView) json.RawMessage {
	if rv == nil || rv.Record == nil && rv.Raw == nil {
		return nil
	}
	return appendRecord(nil, rv)
}

type fieldRuleJSON struct {
	Field string `json:"field"`
	Rule  string `json:"rule"`
}

type versionJSON struct {
	ChangeID        string                     `json:"change_id"`
	Node            string                     `json:"node"`
	Author          string                     `json:"author"`
	Dot             uint64                     `json:"dot"`
	HLC             string                     `json:"hlc"`
	ReceivedAt      time.Time                  `json:"received_at"`
	ClockClamped    bool                       `json:"clock_clamped"`
	Outcome         string                     `json:"outcome"`
	Changed         []fieldRuleJSON            `json:"changed"`
	Values          map[string]json.RawMessage `json:"values"`
	ConflictsOpened []fieldRuleJSON            `json:"conflicts_opened"`
	State           json.RawMessage            `json:"state"`
}

func fieldRules(in []review.FieldRule) []fieldRuleJSON {
	out := make([]fieldRuleJSON, len(in))
	for i, f := range in {
		out[i] = fieldRuleJSON{Field: f.Field, Rule: string(f.Rule)}
	}
	return out
}

// history serves GET /v1/records/{collection}/{id}/history.
func (s *server) history(c *fiber.Ctx) error {
	id, err := identity(c)
	if err != nil {
		return err
	}
	q, err := query(c, "cursor", "limit")
	if err != nil {
		return err
	}
	r, err := s.reviewReader()
	if err != nil {
		return err
	}
	limit := historyDefaultLimit
	if v, ok := q["limit"]; ok {
		n, ok := parseLimit(v, historyMaxLimit)
		if !ok {
			return domain.Errorf(domain.CodeInvalidParam, "limit must be an integer from 1 to %d", historyMaxLimit)
		}
		limit = n
	}
	var after int64
	if v := q["cursor"]; v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || strconv.FormatInt(n, 10) != v {
			return domain.Errorf(domain.CodeInvalidCursor, "the cursor does not parse; use one the server returned")
		}
		after = n
	}
	ctx, cancel := s.requestContext(c)
	defer cancel()
	key := domain.Key{Collection: c.Params("collection"), ID: c.Params("id")}
	versions, more, err := r.History(ctx, id, key, after, limit)
	if err != nil {
		return err
	}
	out := struct {
		Collection string        `json:"collection"`
		ID         string        `json:"id"`
		Versions   []versionJSON `json:"versions"`
		pageJSON
	}{Collection: key.Collection, ID: key.ID, Versions: make([]versionJSON, len(versions))}
	if more {
		out.Cursor, out.HasMore = strconv.FormatInt(versions[len(versions)-1].Seq, 10), true
	}
	for i, v := range versions {
		vals := make(map[string]json.RawMessage, len(v.Values))
		for _, f := range v.Values {
			vals[f.Name] = f.Value
		}
		out.Versions[i] = versionJSON{
			ChangeID: v.ChangeID, Node: string(v.Node), Author: v.Subject, Dot: v.Dot, HLC: v.HLC.String(),
			ReceivedAt: v.ReceivedAt, ClockClamped: v.Clamped, Outcome: string(v.Outcome),
			Changed: fieldRules(v.Changed), Values: vals, ConflictsOpened: fieldRules(v.Opened),
			State: v.State.AppendJSON(nil),
		}
	}
	return sendValue(c, out)
}

type conflictValueJSON = domain.ConflictValue

type conflictJSON struct {
	ID             string              `json:"id"`
	Collection     string              `json:"collection"`
	RecordID       string              `json:"record_id"`
	Field          string              `json:"field"`
	Values         []conflictValueJSON `json:"values"`
	Kept           *int                `json:"kept"`
	Rule           string              `json:"rule"`
	ReviewRequired bool                `json:"review_required"`
	Status         string              `json:"status"`
	Unit           string              `json:"unit"`
	Contingent     string              `json:"contingent"`
	CreatedAt      time.Time           `json:"created_at"`
	UpdatedAt      time.Time           `json:"updated_at"`
	ResolvedAt     *time.Time          `json:"resolved_at"`
	ResolvedBy     string              `json:"resolved_by,omitempty"`
	Resolution     string              `json:"resolution,omitempty"`
	Reason         string              `json:"reason,omitempty"`
}

func toConflictJSON(c *domain.StoredConflict) conflictJSON {
	out := conflictJSON{
		ID: c.ID, Collection: c.Key.Collection, RecordID: c.Key.ID, Field: c.Field, Values: c.Values,
		Rule: c.Rule, ReviewRequired: c.ReviewRequired, Status: c.Status, Unit: c.Owner.Unit, Contingent: c.Owner.Contingent,
		CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt, ResolvedAt: c.ResolvedAt, ResolvedBy: c.ResolvedBy,
		Resolution: c.Resolution, Reason: c.Reason,
	}
	if out.Values == nil {
		out.Values = []conflictValueJSON{}
	}
	if c.Kept >= 0 && c.Kept < len(c.Values) {
		k := c.Kept
		out.Kept = &k
	}
	return out
}

// conflicts serves GET /v1/conflicts.
func (s *server) conflicts(c *fiber.Ctx) error {
	id, err := identity(c)
	if err != nil {
		return err
	}
	q, err := query(c, "status", "unit", "collection", "rule", "cursor", "limit")
	if err != nil {
		return err
	}
	r, err := s.reviewReader()
	if err != nil {
		return err
	}
	var cq review.ConflictQuery
	if cq.Status, err = oneOf(q, "status", "open", "resolved"); err != nil {
		return err
	}
	if cq.Collection, err = oneOf(q, "collection", pullCollections...); err != nil {
		return err
	}
	if cq.Rule, err = oneOf(q, "rule", "later_hlc", "status_order", "most_restrictive", "latest_time", "first_write", "update_wins", "sign_off_freeze", "vv_regressed"); err != nil {
		return err
	}
	if cq.Unit, err = textParam(q, "unit"); err != nil {
		return err
	}
	if cq.After, err = textParam(q, "cursor"); err != nil {
		return err
	}
	if cq.After != "" {
		if _, _, err := domain.ParseConflictCursor(cq.After); err != nil {
			return err
		}
	}
	if cq.Limit, err = limitOf(q); err != nil {
		return err
	}
	ctx, cancel := s.requestContext(c)
	defer cancel()
	cs, more, err := r.Conflicts(ctx, id, cq)
	if err != nil {
		return err
	}
	out := struct {
		Conflicts []conflictJSON `json:"conflicts"`
		pageJSON
	}{Conflicts: make([]conflictJSON, len(cs))}
	for i := range cs {
		out.Conflicts[i] = toConflictJSON(&cs[i])
	}
	if more {
		out.Cursor, out.HasMore = domain.ConflictCursor(&cs[len(cs)-1]), true
	}
	return sendValue(c, out)
}

// conflict serves GET /v1/conflicts/{id}.
func (s *server) conflict(c *fiber.Ctx) error {
	id, err := identity(c)
	if err != nil {
		return err
	}
	if _, err := query(c); err != nil {
		return err
	}
	r, err := s.reviewReader()
	if err != nil {
		return err
	}
	ctx, cancel := s.requestContext(c)
	defer cancel()
	cf, err := r.Conflict(ctx, id, c.Params("id"))
	if err != nil {
		return err
	}
	return sendValue(c, toConflictJSON(cf))
}

// resolve serves POST /v1/conflicts/{id}/resolve.
func (s *server) resolve(c *fiber.Ctx) error {
	id, err := identity(c)
	if err != nil {
		return err
	}
	if s.deps.Decisions == nil {
		return domain.Errorf(domain.CodeNotFound, "review is not served by this instance")
	}
	var body struct {
		Choice string          `json:"choice"`
		Pick   *int            `json:"pick"`
		Value  json.RawMessage `json:"value"`
		Reason string          `json:"reason"`
	}
	if err := decodeSmall(c, &body); err != nil {
		return err
	}
	req := syncer.ResolveRequest{Choice: body.Choice, Value: body.Value, Reason: body.Reason, Pick: -1}
	if body.Pick != nil {
		req.Pick = *body.Pick
	}
	if req.Choice == syncer.ChoicePick && body.Pick == nil {
		return domain.Errorf(domain.CodeInvalidBody, "choice pick needs pick, the index of a value")
	}
	if bytes.Equal(bytes.TrimSpace(body.Value), []byte("null")) {
		req.Value = nil
	}
	ctx, cancel := s.requestContext(c)
	defer cancel()
	cf, rec, err := s.deps.Decisions.Resolve(ctx, id, c.Params("id"), req)
	if err != nil {
		return err
	}
	return sendValue(c, struct {
		Conflict conflictJSON    `json:"conflict"`
		Record   json.RawMessage `json:"record"`
	}{toConflictJSON(cf), recordJSON(rec)})
}

// signOff serves POST /v1/patrol-logs/{id}/sign-off.
func (s *server) signOff(c *fiber.Ctx) error {
	id, err := identity(c)
	if err != nil {
		return err
	}
	if s.deps.Decisions == nil {
		return domain.Errorf(domain.CodeNotFound, "review is not served by this instance")
	}
	if len(c.Request().Body()) > 0 {
		var none struct{}
		if err := decodeSmall(c, &none); err != nil {
			return err
		}
	}
	ctx, cancel := s.requestContext(c)
	defer cancel()
	rec, err := s.deps.Decisions.SignOff(ctx, id, c.Params("id"))
	if err != nil {
		return err
	}
	return sendValue(c, struct {
		Record json.RawMessage `json:"record"`
	}{recordJSON(rec)})
}

type rejectionJSON struct {
	ID         int64           `json:"id"`
	Device     string          `json:"device"`
	ChangeID   string          `json:"change_id"`
	Collection string          `json:"collection"`
	RecordID   string          `json:"record_id"`
	Unit       string          `json:"unit"`
	Contingent string          `json:"contingent"`
	Code       string          `json:"code"`
	Message    string          `json:"message"`
	ReceivedAt time.Time       `json:"received_at"`
	Change     json.RawMessage `json:"change"`
}

// rejections serves GET /v1/rejections.
func (s *server) rejections(c *fiber.Ctx) error {
	id, err := identity(c)
	if err != nil {
		return err
	}
	q, err := query(c, "unit", "device", "cursor", "limit")
	if err != nil {
		return err
	}
	r, err := s.reviewReader()
	if err != nil {
		return err
	}
	var rq review.RejectionQuery
	if rq.Unit, err = textParam(q, "unit"); err != nil {
		return err
	}
	if rq.Device, err = textParam(q, "device"); err != nil {
		return err
	}
	if v, ok := q["cursor"]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return domain.Errorf(domain.CodeInvalidCursor, "the cursor does not parse; use one the server returned")
		}
		rq.After = n
	}
	if rq.Limit, err = limitOf(q); err != nil {
		return err
	}
	ctx, cancel := s.requestContext(c)
	defer cancel()
	rs, more, err := r.Rejections(ctx, id, rq)
	if err != nil {
		return err
	}
	out := struct {
		Rejections []rejectionJSON `json:"rejections"`
		pageJSON
	}{Rejections: make([]rejectionJSON, len(rs))}
	for i, x := range rs {
		var body json.RawMessage
		if len(x.Body) > 0 && json.Valid(x.Body) {
			body = x.Body
		} else if len(x.Body) > 0 {
			body, _ = json.Marshal(string(x.Body)) // kept as received, even when not JSON
		}
		out.Rejections[i] = rejectionJSON{ID: x.Seq, Device: x.Subject, ChangeID: x.ChangeID, Collection: x.Key.Collection,
			RecordID: x.Key.ID, Unit: x.Owner.Unit, Contingent: x.Owner.Contingent, Code: x.Code, Message: x.Message,
			ReceivedAt: x.ReceivedAt, Change: body}
	}
	if more {
		out.Cursor, out.HasMore = strconv.FormatInt(rs[len(rs)-1].Seq, 10), true
	}
	return sendValue(c, out)
}

type logJSON struct {
	ID            string          `json:"id"`
	Unit          string          `json:"unit"`
	Contingent    string          `json:"contingent"`
	Day           string          `json:"day"`
	Status        string          `json:"status"`
	SignedOff     bool            `json:"signed_off"`
	Entries       int             `json:"entries"`
	OpenConflicts int             `json:"open_conflicts"`
	Record        json.RawMessage `json:"record"`
}

func parseDay(q map[string]string, name string) (time.Time, error) {
	v, ok := q[name]
	if !ok {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.DateOnly, v)
	if err != nil {
		return time.Time{}, domain.Errorf(domain.CodeInvalidParam, "%s must be a day, YYYY-MM-DD", name)
	}
	return t, nil
}

// patrolLogs serves GET /v1/patrol-logs.
func (s *server) patrolLogs(c *fiber.Ctx) error {
	id, err := identity(c)
	if err != nil {
		return err
	}
	q, err := query(c, "unit", "from", "to", "status", "signed_off", "has_conflicts", "cursor", "limit")
	if err != nil {
		return err
	}
	r, err := s.reviewReader()
	if err != nil {
		return err
	}
	var lq review.LogQuery
	if lq.Unit, err = textParam(q, "unit"); err != nil {
		return err
	}
	if lq.From, err = parseDay(q, "from"); err != nil {
		return err
	}
	if lq.To, err = parseDay(q, "to"); err != nil {
		return err
	}
	if !lq.From.IsZero() && !lq.To.IsZero() && lq.To.Before(lq.From) {
		return domain.Errorf(domain.CodeInvalidParam, "to is before from")
	}
	if lq.Status, err = oneOf(q, "status", "planned", "active", "cancelled", "completed"); err != nil {
		return err
	}
	if lq.SignedOff, err = boolParam(q, "signed_off"); err != nil {
		return err
	}
	if lq.HasConflicts, err = boolParam(q, "has_conflicts"); err != nil {
		return err
	}
	if lq.After, err = textParam(q, "cursor"); err != nil {
		return err
	}
	if lq.Limit, err = limitOf(q); err != nil {
		return err
	}
	ctx, cancel := s.requestContext(c)
	defer cancel()
	logs, next, more, err := r.PatrolLogs(ctx, id, lq)
	if err != nil {
		return err
	}
	out := struct {
		PatrolLogs []logJSON `json:"patrol_logs"`
		pageJSON
	}{PatrolLogs: make([]logJSON, len(logs)), pageJSON: pageJSON{Cursor: next, HasMore: more}}
	for i := range logs {
		out.PatrolLogs[i] = toLogJSON(&logs[i])
	}
	return sendValue(c, out)
}

func toLogJSON(l *review.LogSummary) logJSON {
	return logJSON{ID: l.Record.ID, Unit: l.Owner.Unit, Contingent: l.Owner.Contingent, Day: l.Day,
		Status: l.Status, SignedOff: l.SignedOff, Entries: l.Entries, OpenConflicts: l.OpenConflicts,
		Record: l.Record.AppendJSON(nil)}
}

// patrolLog serves GET /v1/patrol-logs/{id}: the log and its entries.
func (s *server) patrolLog(c *fiber.Ctx) error {
	id, err := identity(c)
	if err != nil {
		return err
	}
	if _, err := query(c); err != nil {
		return err
	}
	r, err := s.reviewReader()
	if err != nil {
		return err
	}
	ctx, cancel := s.requestContext(c)
	defer cancel()
	log, entries, err := r.PatrolLog(ctx, id, c.Params("id"))
	if err != nil {
		return err
	}
	out := struct {
		PatrolLog logJSON           `json:"patrol_log"`
		Entries   []json.RawMessage `json:"entries"`
	}{PatrolLog: toLogJSON(log), Entries: make([]json.RawMessage, len(entries))}
	for i, e := range entries {
		out.Entries[i] = e.AppendJSON(nil)
	}
	return sendValue(c, out)
}

// parseInstant reads a report bound: RFC 3339, or a day (its midnight UTC).
func parseInstant(q map[string]string, name string) (time.Time, error) {
	v, ok := q[name]
	if !ok {
		return time.Time{}, domain.Errorf(domain.CodeInvalidParam, "%s is required (RFC 3339 time or YYYY-MM-DD)", name)
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, domain.Errorf(domain.CodeInvalidParam, "%s must be an RFC 3339 time or YYYY-MM-DD", name)
}

// corridorReport serves GET /v1/reports/corridors?from=&to=[&format=csv].
func (s *server) corridorReport(c *fiber.Ctx) error {
	id, err := identity(c)
	if err != nil {
		return err
	}
	q, err := query(c, "from", "to", "format")
	if err != nil {
		return err
	}
	r, err := s.reviewReader()
	if err != nil {
		return err
	}
	from, err := parseInstant(q, "from")
	if err != nil {
		return err
	}
	to, err := parseInstant(q, "to")
	if err != nil {
		return err
	}
	if !to.After(from) || to.Sub(from) > maxReportRange {
		return domain.Errorf(domain.CodeInvalidParam, "to must be after from, and the range at most 366 days")
	}
	format, err := oneOf(q, "format", "json", "csv")
	if err != nil {
		return err
	}
	ctx, cancel := s.requestContext(c)
	defer cancel()
	rows, err := r.CorridorReport(ctx, id, from, to)
	if err != nil {
		return err
	}
	if format == "csv" {
		var buf bytes.Buffer
		if err := review.WriteCorridorCSV(&buf, from, to, rows); err != nil {
			return err
		}
		c.Set(fiber.HeaderContentType, "text/csv; charset=utf-8")
		c.Set(fiber.HeaderContentDisposition, `attachment; filename="corridors.csv"`)
		c.Set(fiber.HeaderCacheControl, "no-store")
		return c.Send(buf.Bytes())
	}
	type row struct {
		Corridor   string  `json:"corridor"`
		Open       float64 `json:"hours_open"`
		Restricted float64 `json:"hours_restricted"`
		Closed     float64 `json:"hours_closed"`
		Unverified float64 `json:"hours_unverified"`
	}
	out := struct {
		From      time.Time `json:"from"`
		To        time.Time `json:"to"`
		Corridors []row     `json:"corridors"`
	}{From: from, To: to, Corridors: make([]row, len(rows))}
	h := func(d time.Duration) float64 {
		v, _ := strconv.ParseFloat(strconv.FormatFloat(d.Hours(), 'f', 2, 64), 64)
		return v
	}
	for i, x := range rows {
		out.Corridors[i] = row{Corridor: x.Corridor, Open: h(x.Open), Restricted: h(x.Restricted), Closed: h(x.Closed), Unverified: h(x.Unverified)}
	}
	return sendValue(c, out)
}
