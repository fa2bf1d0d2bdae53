package domain

import (
	"context"
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync/sync/hlc"
	"github.com/fieldsync/fieldsync/sync/merge"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// Key names a record.
type Key struct {
	Collection string
	ID         string
}

func (k Key) String() string { return k.Collection + "/" + k.ID }

// Seq is a position in the change feed: every accepted write moves its record
// to a new, higher Seq.
type Seq int64

// Cursor is a pull position: the feed position (TxID, Seq) of the last record
// served. On PostgreSQL TxID is the writing transaction's id (xid8) and the
// feed is ordered by (TxID, Seq); on SQLite TxID is always 0 (one writer at a
// time makes Seq order commit order). See docs/protocol.md.
type Cursor struct {
	TxID uint64
	Seq  Seq
}

// String encodes the cursor opaquely.
func (c Cursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte("v1:" + strconv.FormatUint(c.TxID, 10) + ":" + strconv.FormatInt(int64(c.Seq), 10)))
}

// IsZero reports whether c is the start of the feed.
func (c Cursor) IsZero() bool { return c == Cursor{} }

// ParseCursor decodes a cursor from String. The empty string is the start.
func ParseCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	bad := Errorf(CodeInvalidCursor, "the cursor does not parse; start again without one or use one the server returned")
	if len(s) > 128 {
		return Cursor{}, bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, bad
	}
	parts := strings.Split(string(raw), ":")
	if len(parts) != 3 || parts[0] != "v1" {
		return Cursor{}, bad
	}
	tx, err1 := strconv.ParseUint(parts[1], 10, 64)
	seq, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || seq < 0 {
		return Cursor{}, bad
	}
	c := Cursor{TxID: tx, Seq: Seq(seq)}
	if c.String() != s {
		return Cursor{}, bad // one spelling per cursor
	}
	return c, nil
}

// StoredRecord is a record as the store holds it, with its owner and feed
// position. Pulls leave Record nil and fill Raw (the canonical encoding);
// Decode turns it into a Record when one is needed.
type StoredRecord struct {
	Record     *merge.Record
	Raw        []byte
	Collection string
	ID         string
	Owner      Owner
	Cursor     Cursor
	UpdatedAt  time.Time // when the store last wrote it (zero for records being written)
}

// Decode returns the record, decoding Raw on first use.
func (r *StoredRecord) Decode() (*merge.Record, error) {
	if r.Record != nil {
		return r.Record, nil
	}
	var rec merge.Record
	if err := rec.UnmarshalJSON(r.Raw); err != nil {
		return nil, err
	}
	r.Record = &rec
	return r.Record, nil
}

// RecordView is a record as one caller may see it (hidden fields removed)
// with its read-time flags.
type RecordView struct {
	// Record is the record, or nil when Raw carries it.
	Record *merge.Record
	// Raw, when set, is the record's canonical encoding as stored: pulls
	// serve it as is when nothing must be hidden, without decoding it.
	Raw []byte
	// Stale is set for corridors whose verified_at is older than their
	// max age: an old "open" must read as unverified.
	Stale bool
}

// PushResult is the result of one change of a push, in request order.
type PushResult struct {
	ChangeID     string
	Status       merge.Outcome
	Record       *RecordView // nil for out_of_scope and for rejected creations
	Code         string
	Message      string
	ClockClamped bool
}

// PushResponse is the answer to a push.
type PushResponse struct {
	Results   []PushResult
	ServerHLC hlc.Timestamp
}

// PullRequest asks for the records changed after Cursor.
type PullRequest struct {
	Cursor      Cursor
	Limit       int
	Collections []string // empty: all
}

// PullResponse is one page of the change feed.
type PullResponse struct {
	Records   []RecordView
	Cursor    Cursor
	HasMore   bool
	ServerHLC hlc.Timestamp
}

// Version is one entry of a record's history: the state after one accepted
// change, who wrote it and what the merge did.
type Version struct {
	Seq        int64 // position in the history table (set when read back)
	Key        Key
	ChangeID   string
	Subject    string // the authenticated writer (device id or user)
	Node       vv.NodeID
	Dot        uint64
	HLC        hlc.Timestamp
	Clamped    bool
	Outcome    merge.Outcome
	Change     *merge.Change // as applied (canonical values)
	Record     *merge.Record // the state after
	Conflicts  int
	ReceivedAt time.Time
}

// SeenChange is the idempotency entry of one change id of one device.
type SeenChange struct {
	Subject  string
	ChangeID string
	Key      Key
	Status   merge.Outcome
	Code     string
	Message  string
	Clamped  bool
	SeenAt   time.Time
}

// ConflictReport is a conflict the engine reported, to store (one open
// conflict per record field: a new report replaces the open one's values).
type ConflictReport struct {
	merge.Conflict
	Owner    Owner
	ChangeID string
	At       time.Time
}

// Settlement closes the open conflict of a field that a writer who had seen
// every value superseded.
type Settlement struct {
	Key   Key
	Field string
	Node  vv.NodeID
	At    time.Time
}

// Rejection is a dead-letter entry: a change the server did not merge, kept
// for supervisors.
type Rejection struct {
	Subject    string
	ChangeID   string
	Key        Key
	Owner      Owner
	Code       string
	Message    string
	Body       []byte // the change as received (JSON)
	ReceivedAt time.Time
}

// PushWrites is everything one push commits, in one transaction.
type PushWrites struct {
	Records     []StoredRecord // new states to upsert (Cursor ignored; the store assigns)
	Versions    []Version
	Seen        []SeenChange
	Conflicts   []ConflictReport
	Settlements []Settlement
	Rejections  []Rejection
	// Resolutions close conflicts as a supervisor decided, after the
	// settlements (a resolution's own server change settles its field
	// first; the resolution then records who decided and why).
	Resolutions []Resolution
	// Audit, when set, is the audit entry of the whole write: the store
	// adds to its detail every version, rejection and closed conflict it
	// commits, and appends it to the chain in the same transaction.
	Audit *AuditEvent
}

// AuditEvent is one entry of the audit trail, appended in the transaction
// of the event it records.
type AuditEvent struct {
	Kind    string // push, resolve, sign_off, enroll, revoke, key_rotate
	Actor   string // who: a device, supervisor or administrator id
	Subject string // what: a conflict, record, device or key id ("" for a push)
	At      time.Time
	Extra   map[string]any // further detail (strings and numbers)
	Detail  []byte         // set by the store
}

// PushTx is the store's side of one push transaction.
type PushTx interface {
	// Seen returns the idempotency entries of the subject's change ids.
	Seen(ctx context.Context, subject string, changeIDs []string) (map[string]SeenChange, error)
	// Lock takes the write locks of the given records, in a fixed order so
	// concurrent pushes cannot deadlock, and returns their stored states
	// (absent keys: no record yet).
	Lock(ctx context.Context, keys []Key) (map[Key]StoredRecord, error)
	// Prior returns what node wrote to the record at counter dot, nil when
	// the history holds nothing there.
	Prior(ctx context.Context, key Key, node vv.NodeID, dot uint64) (*merge.Change, error)
	// Conflict reads a conflict inside the transaction (after Lock of its
	// record, it cannot change under the caller); nil when there is none.
	Conflict(ctx context.Context, id string) (*StoredConflict, error)
	// Write commits nothing yet: it stages the push's writes; the
	// transaction commits when the function given to Push returns nil.
	Write(ctx context.Context, w PushWrites) error
}

// Store is the persistence the sync service needs.
type Store interface {
	// Push runs fn in one write transaction: all of it commits or none.
	Push(ctx context.Context, fn func(tx PushTx) error) error
	// Pull returns up to limit records changed after the cursor that the
	// filter admits, oldest change first, and whether more may follow.
	Pull(ctx context.Context, after Cursor, limit int, filter PullFilter) (records []StoredRecord, hasMore bool, err error)
	// Get returns one record, or nil.
	Get(ctx context.Context, key Key) (*StoredRecord, error)
	// Ping checks the database answers.
	Ping(ctx context.Context) error
	// SchemaCurrent reports whether every migration the binary carries is
	// applied.
	SchemaCurrent(ctx context.Context) (bool, error)
	Close() error
}

// PullFilter restricts a pull to what the caller may see.
type PullFilter struct {
	Collections []string // empty: all
	// Units, when non-nil, admits patrol records of these units only.
	Units []string
	// Contingent, when set, admits patrol records of this contingent only.
	Contingent string
	// OnlyCollections, when set, admits no other collections (partners).
	CorridorsOnly bool
}
