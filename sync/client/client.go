// Package client is the device side of fieldsync: a local replica in an
// embedded SQLite file, an outbox of edits written in the same transaction
// as the edit, and a sync loop that pushes the outbox and pulls the feed
// through the same merge engine the server uses. It is the one package
// under sync/ that does I/O.
//
// The replica keeps two states per record: the server's (what the server
// has acknowledged or served) and the local one, which is the server's with
// the pending outbox edits applied on top. A rejected edit is dropped from
// the outbox and the local state is rebuilt without it, so a device never
// keeps a value the server refused.
package client

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	_ "github.com/glebarez/go-sqlite" // the pure-Go SQLite driver, registered as "sqlite"

	"github.com/fieldsync/fieldsync/sync/hlc"
	"github.com/fieldsync/fieldsync/sync/merge"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// Config configures a client.
type Config struct {
	// BaseURL is the server, e.g. https://sync.example.org.
	BaseURL string
	// Device is this device's id (its version-vector node).
	Device vv.NodeID
	// Token returns the current access token.
	Token func(ctx context.Context) (string, error)
	// Refresh, when set, is called once after a 401 to renew the token.
	Refresh func(ctx context.Context) error
	// HTTP is the client used (default: 60 s timeout).
	HTTP *http.Client
	// MaxBatch is the most changes per push (default 100); batches halve
	// on 413 and when uploads fail, and grow back as they succeed.
	MaxBatch int
	// Attempts is how many times a failed request is tried (default 5),
	// with exponential backoff and jitter between tries.
	Attempts int
	// Backoff is the first wait between tries (default 500 ms).
	Backoff time.Duration
	// PageSize is the pull page (default 500).
	PageSize int
	// Now returns Unix milliseconds for the HLC (default time.Now).
	Now func() int64
}

// Client is one device's replica and sync loop. It is safe for concurrent
// use; Sync calls are serialised.
type Client struct {
	cfg      Config
	db       *sql.DB
	clock    *hlc.Clock
	policies merge.Registry
	syncMu   sync.Mutex
	batch    int // current push batch size
	page     int // current pull page size
}

const schema = `
CREATE TABLE IF NOT EXISTS records (
	collection TEXT NOT NULL,
	id         TEXT NOT NULL,
	server     TEXT,
	local      TEXT NOT NULL,
	PRIMARY KEY (collection, id)
);
CREATE TABLE IF NOT EXISTS outbox (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	change_id  TEXT NOT NULL UNIQUE,
	collection TEXT NOT NULL,
	id         TEXT NOT NULL,
	body       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_record ON outbox (collection, id, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
`

// Open opens (creating if needed) the replica at path.
func Open(path string, cfg Config) (*Client, error) {
	if cfg.BaseURL == "" || cfg.Token == nil || !vv.ValidNodeID(string(cfg.Device)) {
		return nil, errors.New("client: BaseURL, Token and a valid Device are required")
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 60 * time.Second}
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 100
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 5
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 500 * time.Millisecond
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 500
	}
	if cfg.Now == nil {
		cfg.Now = func() int64 { return time.Now().UnixMilli() }
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("client: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("client: schema: %w", err)
	}
	c := &Client{cfg: cfg, db: db, policies: merge.Standard(), batch: cfg.MaxBatch, page: cfg.PageSize}
	c.clock = hlc.NewClock(cfg.Device, cfg.Now, 60_000)
	// The clock never runs behind what it issued before a restart.
	if last, err := c.meta("hlc"); err == nil && last != "" {
		if ts, err := hlc.Parse(last); err == nil {
			c.clock.Observe(ts)
		}
	}
	return c, nil
}

// Close closes the replica.
func (c *Client) Close() error { return c.db.Close() }

func (c *Client) meta(key string) (string, error) {
	var v string
	err := c.db.QueryRow(`SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}

func setMeta(tx *sql.Tx, key, value string) error {
	_, err := tx.Exec(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	return err
}

func decodeRecord(s sql.NullString) (*merge.Record, error) {
	if !s.Valid || s.String == "" {
		return nil, nil
	}
	var r merge.Record
	if err := r.UnmarshalJSON([]byte(s.String)); err != nil {
		return nil, err
	}
	return &r, nil
}

// Record returns the local state of a record, nil when the replica has none.
func (c *Client) Record(collection, id string) (*merge.Record, error) {
	var local sql.NullString
	err := c.db.QueryRow(`SELECT local FROM records WHERE collection = ? AND id = ?`, collection, id).Scan(&local)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeRecord(local)
}

// Pending returns how many edits wait in the outbox.
func (c *Client) Pending() (int, error) {
	var n int
	err := c.db.QueryRow(`SELECT count(*) FROM outbox`).Scan(&n)
	return n, err
}

// Edit writes fields to a record (or deletes it) in the local replica and
// queues the change, in one local transaction: an edit is never lost and
// never waits on the network. It returns the record's new local state.
func (c *Client) Edit(ctx context.Context, collection, id string, fields []merge.FieldValue, deleted bool) (*merge.Record, error) {
	_, rec, err := c.EditChange(ctx, collection, id, fields, deleted)
	return rec, err
}

// EditChange is Edit that also returns the queued change (its change_id,
// vector and HLC), for a caller that keeps its own account of what it
// wrote.
func (c *Client) EditChange(ctx context.Context, collection, id string, fields []merge.FieldValue, deleted bool) (*merge.Change, *merge.Record, error) {
	p, ok := c.policies[collection]
	if !ok {
		return nil, nil, fmt.Errorf("client: unknown collection %q", collection)
	}
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, nil, err
	}
	defer tx.Rollback()
	var local sql.NullString
	err = tx.QueryRow(`SELECT local FROM records WHERE collection = ? AND id = ?`, collection, id).Scan(&local)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, nil, err
	}
	rec, err := decodeRecord(local)
	if err != nil {
		return nil, nil, err
	}
	var base vv.Vector
	if rec != nil {
		base = rec.VV
	}
	fs := append([]merge.FieldValue(nil), fields...)
	merge.SortFields(fs)
	ch := &merge.Change{ChangeID: newChangeID(), Collection: collection, ID: id,
		VV: base.Increment(c.cfg.Device), HLC: c.clock.Now(), Fields: fs, Deleted: deleted}
	res := p.Apply(rec, ch, nil, merge.Options{})
	if res.Outcome == merge.Rejected {
		return nil, nil, fmt.Errorf("client: %s: %s", res.Code, res.Message)
	}
	body, _ := res.Change.MarshalJSON()
	if _, err := tx.Exec(`INSERT INTO records (collection, id, local) VALUES (?, ?, ?)
		ON CONFLICT (collection, id) DO UPDATE SET local = excluded.local`, collection, id, string(res.Record.AppendJSON(nil))); err != nil {
		return nil, nil, err
	}
	if _, err := tx.Exec(`INSERT INTO outbox (change_id, collection, id, body) VALUES (?, ?, ?, ?)`, ch.ChangeID, collection, id, string(body)); err != nil {
		return nil, nil, err
	}
	if err := setMeta(tx, "hlc", c.clock.Last().String()); err != nil {
		return nil, nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, nil, err
	}
	return res.Change, res.Record, nil
}

func newChangeID() string {
	// 128 random bits; the server keys idempotency by (device, change_id).
	return strconv.FormatUint(rand.Uint64(), 36) + "-" + strconv.FormatUint(rand.Uint64(), 36)
}

// absorb merges a server copy of a record into the replica and rebuilds
// its local state: the server's copy with every still-pending edit of the
// record applied on top.
func (c *Client) absorb(tx *sql.Tx, rec *merge.Record) error {
	p, ok := c.policies[rec.Collection]
	if !ok {
		return nil // a collection this client does not know: ignore
	}
	var server sql.NullString
	err := tx.QueryRow(`SELECT server FROM records WHERE collection = ? AND id = ?`, rec.Collection, rec.ID).Scan(&server)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	old, err := decodeRecord(server)
	if err != nil {
		return err
	}
	joined, err := p.Join(old, rec)
	if err != nil {
		return err
	}
	return c.rebuild(tx, p, rec.Collection, rec.ID, joined)
}

// rebuild sets a record's server state and recomputes its local one.
func (c *Client) rebuild(tx *sql.Tx, p *merge.Policy, collection, id string, server *merge.Record) error {
	rows, err := tx.Query(`SELECT body FROM outbox WHERE collection = ? AND id = ? ORDER BY seq`, collection, id)
	if err != nil {
		return err
	}
	var pending []*merge.Change
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			rows.Close()
			return err
		}
		ch, err := merge.DecodeChange([]byte(body))
		if err != nil {
			rows.Close()
			return err
		}
		pending = append(pending, ch)
	}
	rows.Close()
	local := server
	for _, ch := range pending {
		// An edit the server already holds is dominated and changes
		// nothing; the others apply on top of the server's state.
		if res := p.Apply(local, ch, nil, merge.Options{}); res.Outcome == merge.Applied || res.Outcome == merge.Merged {
			local = res.Record
		}
	}
	var serverJSON, localJSON any
	if server != nil {
		serverJSON = string(server.AppendJSON(nil))
	}
	if local == nil {
		_, err := tx.Exec(`DELETE FROM records WHERE collection = ? AND id = ?`, collection, id)
		return err
	}
	localJSON = string(local.AppendJSON(nil))
	_, err = tx.Exec(`INSERT INTO records (collection, id, server, local) VALUES (?, ?, ?, ?)
		ON CONFLICT (collection, id) DO UPDATE SET server = excluded.server, local = excluded.local`, collection, id, serverJSON, localJSON)
	return err
}

// backoff waits before try n (0-based) with exponential backoff and full
// jitter, or until ctx ends.
func (c *Client) backoff(ctx context.Context, n int, floor time.Duration) error {
	d := c.cfg.Backoff << min(n, 6)
	d = time.Duration(rand.Int64N(int64(d))) + floor
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
