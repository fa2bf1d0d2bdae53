package domain

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"
)

// Codes of the review routes.
const (
	CodeConflictClosed = "conflict_closed"    // 409: the conflict is already resolved
	CodeNotResolvable  = "not_resolvable"     // 422: the resolution asked for cannot be written (e.g. a new value for an immutable entry)
	CodeAlreadySigned  = "already_signed_off" // 409: the patrol log is signed off already
	CodeInvalidBody    = "invalid_body"       // 422: a well-formed body whose values are out of their domain
)

// ConflictValue is one competing value of a stored conflict.
type ConflictValue struct {
	Value json.RawMessage `json:"value"`
	Node  string          `json:"node"`
	HLC   string          `json:"hlc"`
	Dot   uint64          `json:"dot"`
}

// StoredConflict is a conflict as the review API shows it (PROTOCOL.md: a
// conflict record).
type StoredConflict struct {
	ID             string
	Key            Key
	Field          string
	Rule           string
	ReviewRequired bool
	Values         []ConflictValue
	Kept           int // index into Values; -1 when none is kept
	Status         string
	Owner          Owner
	ChangeID       string // the change that last reported it
	CreatedAt      time.Time
	UpdatedAt      time.Time
	ResolvedAt     *time.Time
	ResolvedBy     string
	Resolution     string // superseded | kept | picked | new_value | acknowledged
	Reason         string
}

// ConflictFilter selects conflicts. Empty fields match everything.
type ConflictFilter struct {
	Status     string
	Unit       string
	Contingent string // the caller's scope: "" for everyone
	Collection string
	Rule       string
	Key        *Key
	After      string // the id of the last conflict of the previous page
	Limit      int
}

// RejectionFilter selects dead-letter entries.
type RejectionFilter struct {
	Unit       string
	Contingent string
	Subject    string
	After      int64
	Limit      int
}

// StoredRejection is a rejection with its list position.
type StoredRejection struct {
	Rejection
	Seq int64
}

// Resolution closes a conflict as a supervisor decided.
type Resolution struct {
	ConflictID string
	By         string
	Choice     string // kept | picked | new_value | acknowledged
	Reason     string
	At         time.Time
}

// ReviewStore is what supervisors read.
type ReviewStore interface {
	// History returns every accepted version of a record, oldest first.
	History(ctx context.Context, key Key) ([]Version, error)
	// HistoryPage returns up to limit versions (0: all) after seq after.
	HistoryPage(ctx context.Context, key Key, after int64, limit int) ([]Version, error)
	Conflicts(ctx context.Context, f ConflictFilter) ([]StoredConflict, error)
	Conflict(ctx context.Context, id string) (*StoredConflict, error)
	Rejections(ctx context.Context, f RejectionFilter) ([]StoredRejection, error)
	// Records returns up to limit records of a collection after id
	// (ordered by id), of unit when set, of contingent when set.
	Records(ctx context.Context, collection, unit, contingent, after string, limit int) ([]StoredRecord, error)
	// EntriesOf returns the entries of a patrol log, by id.
	EntriesOf(ctx context.Context, logID string) ([]StoredRecord, error)
	// EntryCounts returns how many entries point at each patrol log.
	EntryCounts(ctx context.Context, logIDs []string) (map[string]int, error)
	// OpenConflictCounts returns the open conflicts of each record.
	OpenConflictCounts(ctx context.Context, collection string, ids []string) (map[string]int, error)
}

// ConflictCursor is the position after c in the conflict list (oldest
// first): its creation time and id, opaque to clients.
func ConflictCursor(c *StoredConflict) string {
	return base64.RawURLEncoding.EncodeToString([]byte(c.CreatedAt.UTC().Format(time.RFC3339Nano) + "|" + c.ID))
}

// ParseConflictCursor reads a ConflictCursor.
func ParseConflictCursor(s string) (time.Time, string, error) {
	bad := Errorf(CodeInvalidCursor, "the cursor does not parse; use one the server returned")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return time.Time{}, "", bad
	}
	at, id, ok := strings.Cut(string(raw), "|")
	t, err := time.Parse(time.RFC3339Nano, at)
	if !ok || err != nil || id == "" {
		return time.Time{}, "", bad
	}
	return t, id, nil
}
