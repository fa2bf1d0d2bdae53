package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Problem is an RFC 9457 problem document the API answered with.
type Problem struct {
	Status    int    `json:"status"`
	Code      string `json:"code"`
	Title     string `json:"title"`
	Detail    string `json:"detail"`
	RequestID string `json:"request_id"`
}

func (p *Problem) Error() string {
	return fmt.Sprintf("API %d %s: %s", p.Status, p.Code, p.Detail)
}

// problemOf returns err as a *Problem, if it is one.
func problemOf(err error) (*Problem, bool) {
	var p *Problem
	ok := errors.As(err, &p)
	return p, ok
}

// Record is a record as the API serves it (openapi.yaml, Record), reduced
// to what the console shows.
type Record struct {
	Collection string                     `json:"collection"`
	ID         string                     `json:"id"`
	Fields     map[string]json.RawMessage `json:"fields"`
	Deleted    bool                       `json:"deleted"`
	Stale      bool                       `json:"stale"`
}

// PatrolLog is a PatrolLogSummary.
type PatrolLog struct {
	ID            string `json:"id"`
	Unit          string `json:"unit"`
	Contingent    string `json:"contingent"`
	Day           string `json:"day"`
	Status        string `json:"status"`
	SignedOff     bool   `json:"signed_off"`
	Entries       int    `json:"entries"`
	OpenConflicts int    `json:"open_conflicts"`
	Record        Record `json:"record"`
}

// Page is the paging part of the review lists.
type Page struct {
	Cursor  string `json:"cursor"`
	HasMore bool   `json:"has_more"`
}

// PatrolLogPage is a page of GET /v1/patrol-logs.
type PatrolLogPage struct {
	PatrolLogs []PatrolLog `json:"patrol_logs"`
	Page
}

// PatrolLogDetail is GET /v1/patrol-logs/{id}.
type PatrolLogDetail struct {
	PatrolLog PatrolLog `json:"patrol_log"`
	Entries   []Record  `json:"entries"`
}

// FieldRule is a field and the rule that merged it.
type FieldRule struct {
	Field string `json:"field"`
	Rule  string `json:"rule"`
}

// Version is one accepted version of a record.
type Version struct {
	ChangeID        string                     `json:"change_id"`
	Node            string                     `json:"node"`
	Author          string                     `json:"author"`
	Dot             uint64                     `json:"dot"`
	HLC             string                     `json:"hlc"`
	ReceivedAt      time.Time                  `json:"received_at"`
	ClockClamped    bool                       `json:"clock_clamped"`
	Outcome         string                     `json:"outcome"`
	Changed         []FieldRule                `json:"changed"`
	Values          map[string]json.RawMessage `json:"values"`
	ConflictsOpened []FieldRule                `json:"conflicts_opened"`
}

// History is GET /v1/records/{collection}/{id}/history.
type History struct {
	Collection string    `json:"collection"`
	ID         string    `json:"id"`
	Versions   []Version `json:"versions"`
	Cursor     string    `json:"cursor"`
	HasMore    bool      `json:"has_more"`
	// Truncated is set when the console stopped reading pages (the record
	// has more than maxHistoryVersions versions).
	Truncated bool `json:"-"`
}

// maxHistoryVersions bounds what one history page of the console reads.
const maxHistoryVersions = 5000

// ConflictValue is one competing write.
type ConflictValue struct {
	Value json.RawMessage `json:"value"`
	Node  string          `json:"node"`
	HLC   string          `json:"hlc"`
	Dot   uint64          `json:"dot"`
}

// Conflict is one entry of the conflict queue.
type Conflict struct {
	ID             string          `json:"id"`
	Collection     string          `json:"collection"`
	RecordID       string          `json:"record_id"`
	Field          string          `json:"field"`
	Values         []ConflictValue `json:"values"`
	Kept           *int            `json:"kept"`
	Rule           string          `json:"rule"`
	ReviewRequired bool            `json:"review_required"`
	Status         string          `json:"status"`
	Unit           string          `json:"unit"`
	Contingent     string          `json:"contingent"`
	CreatedAt      time.Time       `json:"created_at"`
	UpdatedAt      time.Time       `json:"updated_at"`
	ResolvedAt     *time.Time      `json:"resolved_at"`
	ResolvedBy     string          `json:"resolved_by"`
	Resolution     string          `json:"resolution"`
	Reason         string          `json:"reason"`
}

// ConflictPage is a page of GET /v1/conflicts.
type ConflictPage struct {
	Conflicts []Conflict `json:"conflicts"`
	Page
}

// ResolveRequest is the body of POST /v1/conflicts/{id}/resolve.
type ResolveRequest struct {
	Choice string          `json:"choice"`
	Pick   *int            `json:"pick,omitempty"`
	Value  json.RawMessage `json:"value,omitempty"`
	Reason string          `json:"reason"`
}

// Resolution is the answer of a resolve.
type Resolution struct {
	Conflict Conflict `json:"conflict"`
	Record   *Record  `json:"record"`
}

// Rejection is one entry of the dead-letter list.
type Rejection struct {
	ID         int64     `json:"id"`
	Device     string    `json:"device"`
	ChangeID   string    `json:"change_id"`
	Collection string    `json:"collection"`
	RecordID   string    `json:"record_id"`
	Unit       string    `json:"unit"`
	Contingent string    `json:"contingent"`
	Code       string    `json:"code"`
	Message    string    `json:"message"`
	ReceivedAt time.Time `json:"received_at"`
}

// RejectionPage is a page of GET /v1/rejections.
type RejectionPage struct {
	Rejections []Rejection `json:"rejections"`
	Page
}

// CorridorHours is one corridor's row of the access report.
type CorridorHours struct {
	Corridor   string  `json:"corridor"`
	Open       float64 `json:"hours_open"`
	Restricted float64 `json:"hours_restricted"`
	Closed     float64 `json:"hours_closed"`
	Unverified float64 `json:"hours_unverified"`
}

// CorridorReport is GET /v1/reports/corridors.
type CorridorReport struct {
	From      time.Time       `json:"from"`
	To        time.Time       `json:"to"`
	Corridors []CorridorHours `json:"corridors"`
}

type pullPage struct {
	Records []Record `json:"records"`
	Cursor  string   `json:"cursor"`
	HasMore bool     `json:"has_more"`
}

// maxCorridorPages bounds the pulls of one corridor board: 50 pages of 500
// segments is far more than the mission has.
const maxCorridorPages = 50

// Client is the API as one supervisor sees it: typed calls over the
// in-process caller, each with the supervisor's token.
type Client struct {
	call  *caller
	token string
	// requestID and remote are the console request's, passed on.
	requestID string
	remote    net.Addr
	// unauthorized is set once the API has answered 401: the token expired
	// or was revoked, and the page sends the browser back to sign-in.
	unauthorized bool
}

// do sends one request and decodes a 2xx answer into out (when not nil);
// any other answer is a *Problem.
func (c *Client) do(method, target string, body []byte, out any) error {
	r := apiRequest{method: method, target: target, token: c.token, body: body, requestID: c.requestID, remote: c.remote}
	status, b := c.call.do(r)
	if status < 200 || status > 299 {
		p := &Problem{}
		if err := json.Unmarshal(b, p); err != nil || p.Code == "" {
			p = &Problem{Code: "internal", Detail: "the API answered " + http.StatusText(status)}
		}
		p.Status = status
		if status == http.StatusUnauthorized {
			c.unauthorized = true
		}
		return p
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("console: decoding %s %s: %w", method, pathOf(target), err)
	}
	return nil
}

// pathOf is target without its query (which may hold cursors): for errors.
func pathOf(target string) string {
	if u, err := url.Parse(target); err == nil {
		return u.Path
	}
	return "?"
}

func withQuery(path string, q url.Values) string {
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// set adds name=value to q when value is not empty: the API refuses empty
// filter values, and an empty form field means "any".
func set(q url.Values, name, value string) {
	if value != "" {
		q.Set(name, value)
	}
}

// Probe checks that the token may read the conflict queue: it does for
// supervisors and administrators, and answers 403 for devices and partners.
func (c *Client) Probe() error {
	return c.do(http.MethodGet, "/v1/conflicts?limit=1", nil, nil)
}

// LogFilter filters the patrol log list; empty means any.
type LogFilter struct {
	Unit, From, To, Status, SignedOff, HasConflicts, Cursor string
}

// PatrolLogs lists patrol logs.
func (c *Client) PatrolLogs(f LogFilter) (*PatrolLogPage, error) {
	q := url.Values{}
	set(q, "unit", f.Unit)
	set(q, "from", f.From)
	set(q, "to", f.To)
	set(q, "status", f.Status)
	set(q, "signed_off", f.SignedOff)
	set(q, "has_conflicts", f.HasConflicts)
	set(q, "cursor", f.Cursor)
	var out PatrolLogPage
	return &out, c.do(http.MethodGet, withQuery("/v1/patrol-logs", q), nil, &out)
}

// PatrolLog reads one log and its entries.
func (c *Client) PatrolLog(id string) (*PatrolLogDetail, error) {
	var out PatrolLogDetail
	return &out, c.do(http.MethodGet, "/v1/patrol-logs/"+url.PathEscape(id), nil, &out)
}

// SignOff signs a log off.
func (c *Client) SignOff(id string) error {
	return c.do(http.MethodPost, "/v1/patrol-logs/"+url.PathEscape(id)+"/sign-off", nil, nil)
}

// History reads a record's merge history.
func (c *Client) History(collection, id string) (*History, error) {
	var all History
	cursor := ""
	for {
		var page History
		path := "/v1/records/" + url.PathEscape(collection) + "/" + url.PathEscape(id) + "/history?limit=1000"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		if err := c.do(http.MethodGet, path, nil, &page); err != nil {
			return &all, err
		}
		all.Collection, all.ID = page.Collection, page.ID
		all.Versions = append(all.Versions, page.Versions...)
		if !page.HasMore {
			return &all, nil
		}
		if len(all.Versions) >= maxHistoryVersions {
			all.Truncated = true
			return &all, nil
		}
		cursor = page.Cursor
	}
}

// ConflictFilter filters the conflict queue; empty means any.
type ConflictFilter struct {
	Status, Collection, Rule, Unit, Cursor string
}

// Conflicts lists conflicts.
func (c *Client) Conflicts(f ConflictFilter) (*ConflictPage, error) {
	q := url.Values{}
	set(q, "status", f.Status)
	set(q, "collection", f.Collection)
	set(q, "rule", f.Rule)
	set(q, "unit", f.Unit)
	set(q, "cursor", f.Cursor)
	var out ConflictPage
	return &out, c.do(http.MethodGet, withQuery("/v1/conflicts", q), nil, &out)
}

// Conflict reads one conflict.
func (c *Client) Conflict(id string) (*Conflict, error) {
	var out Conflict
	return &out, c.do(http.MethodGet, "/v1/conflicts/"+url.PathEscape(id), nil, &out)
}

// Resolve decides a conflict.
func (c *Client) Resolve(id string, r ResolveRequest) (*Resolution, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	var out Resolution
	return &out, c.do(http.MethodPost, "/v1/conflicts/"+url.PathEscape(id)+"/resolve", body, &out)
}

// RejectionFilter filters the dead-letter list; empty means any.
type RejectionFilter struct {
	Unit, Device, Cursor string
}

// Rejections lists rejected changes.
func (c *Client) Rejections(f RejectionFilter) (*RejectionPage, error) {
	q := url.Values{}
	set(q, "unit", f.Unit)
	set(q, "device", f.Device)
	set(q, "cursor", f.Cursor)
	var out RejectionPage
	return &out, c.do(http.MethodGet, withQuery("/v1/rejections", q), nil, &out)
}

// Corridors pulls the current state of every corridor segment, paging
// until the feed has no more; a record served twice keeps its later state.
func (c *Client) Corridors() ([]Record, error) {
	byID := map[string]int{}
	var out []Record
	cursor := ""
	for range maxCorridorPages {
		q := url.Values{"collections": {"corridors"}, "limit": {"500"}}
		set(q, "cursor", cursor)
		var p pullPage
		if err := c.do(http.MethodGet, withQuery("/v1/sync/pull", q), nil, &p); err != nil {
			return nil, err
		}
		for _, r := range p.Records {
			if i, ok := byID[r.ID]; ok {
				out[i] = r
				continue
			}
			byID[r.ID] = len(out)
			out = append(out, r)
		}
		if !p.HasMore {
			return out, nil
		}
		cursor = p.Cursor
	}
	return nil, fmt.Errorf("console: the corridor feed did not end within %d pages", maxCorridorPages)
}

// CorridorReport reads the corridor access hours in [from, to).
func (c *Client) CorridorReport(from, to time.Time) (*CorridorReport, error) {
	q := url.Values{"from": {from.UTC().Format(time.RFC3339)}, "to": {to.UTC().Format(time.RFC3339)}}
	var out CorridorReport
	return &out, c.do(http.MethodGet, withQuery("/v1/reports/corridors", q), nil, &out)
}
