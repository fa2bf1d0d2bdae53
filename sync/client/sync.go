package client

import (
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/fieldsync/fieldsync/sync/hlc"
	"github.com/fieldsync/fieldsync/sync/merge"
)

// Stats reports one Sync.
type Stats struct {
	Pushed    int // changes the server answered for
	Rejected  int // of which rejected (kept in the server's dead-letter list)
	Pulled    int // records received
	Retries   int // requests tried again
	BytesSent int // request bodies on the wire (compressed)
	BytesRecv int // response bodies on the wire
	// BytesRaw is what the pushed changes weigh as uncompressed JSON, to
	// set beside BytesSent.
	BytesRaw int
	// Acks lists every change the server answered for, with its status,
	// in the order the answers came.
	Acks []Ack
}

// Ack is the server's answer for one change.
type Ack struct {
	ChangeID string
	Status   string // applied, merged, duplicate, stale or rejected
	Code     string // for rejected
}

// HTTPError is a response the client could not act on.
type HTTPError struct {
	Status int
	Code   string // the problem's code
	Body   string
	retry  string // Retry-After
}

func (e *HTTPError) retryAfter() string { return e.retry }

// sqlExecer is a transaction or a database.
type sqlExecer interface {
	Exec(query string, args ...any) (sql.Result, error)
}

func (e *HTTPError) Error() string { return fmt.Sprintf("client: HTTP %d %s", e.Status, e.Code) }

// retryable reports whether an error may pass with time: the network, a
// server or database that is down (5xx), or a timeout.
func retryable(err error) bool {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.Status >= 500 || he.Status == http.StatusRequestTimeout
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// Sync pushes the outbox in batches, then pulls until the server has
// nothing more, resuming from the last cursor it stored. It can be stopped
// (or the process killed) at any point: edits stay in the outbox until the
// server has answered for them, and the cursor moves only with pages
// already stored.
func (c *Client) Sync(ctx context.Context) (Stats, error) {
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	var st Stats
	if err := c.pushAll(ctx, &st); err != nil {
		return st, err
	}
	err := c.pullAll(ctx, &st)
	return st, err
}

type outboxRow struct {
	seq  int64
	body string
}

func (c *Client) pushAll(ctx context.Context, st *Stats) error {
	for {
		rows, err := c.db.QueryContext(ctx, `SELECT seq, body FROM outbox ORDER BY seq LIMIT ?`, c.batch)
		if err != nil {
			return err
		}
		var batch []outboxRow
		for rows.Next() {
			var r outboxRow
			if err := rows.Scan(&r.seq, &r.body); err != nil {
				rows.Close()
				return err
			}
			batch = append(batch, r)
		}
		rows.Close()
		if len(batch) == 0 {
			return nil
		}
		if err := c.pushBatch(ctx, batch, st); err != nil {
			return err
		}
	}
}

type pushResponse struct {
	Results []struct {
		ChangeID string          `json:"change_id"`
		Status   string          `json:"status"`
		Record   json.RawMessage `json:"record"`
		Code     string          `json:"code"`
	} `json:"results"`
	ServerHLC string `json:"server_hlc"`
}

// pushBatch sends one batch, shrinking it on 413 and on failed uploads
// (a link that cuts long uploads), growing it back after successes.
func (c *Client) pushBatch(ctx context.Context, batch []outboxRow, st *Stats) error {
	var buf bytes.Buffer
	buf.WriteString(`{"changes":[`)
	for i, r := range batch {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(r.body)
	}
	buf.WriteString(`]}`)
	body, err := gzipped(buf.Bytes())
	if err != nil {
		return err
	}
	st.BytesRaw += buf.Len()
	var resp pushResponse
	status, err := c.do(ctx, http.MethodPost, "/v1/sync/push", body, &resp, st)
	if err != nil {
		if status == http.StatusRequestEntityTooLarge && len(batch) > 1 {
			c.batch = max(1, len(batch)/2)
			return nil // the caller reads a smaller batch
		}
		if retryable(err) && len(batch) > 1 {
			c.batch = max(1, len(batch)/2)
		}
		return err
	}
	if len(resp.Results) != len(batch) {
		return fmt.Errorf("client: %d results for %d changes", len(resp.Results), len(batch))
	}
	if c.batch < c.cfg.MaxBatch {
		c.batch = min(c.cfg.MaxBatch, c.batch*2)
	}
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// The server answered for every change: none stays in the outbox.
	// Rejected ones are in its dead-letter list; rebuilding their records
	// from the server's copy drops their values here too.
	touched := map[[2]string]bool{}
	for i, r := range batch {
		var key [2]string
		if err := tx.QueryRow(`SELECT collection, id FROM outbox WHERE seq = ?`, r.seq).Scan(&key[0], &key[1]); err != nil {
			return err
		}
		if _, err := tx.Exec(`DELETE FROM outbox WHERE seq = ?`, r.seq); err != nil {
			return err
		}
		res := resp.Results[i]
		st.Pushed++
		st.Acks = append(st.Acks, Ack{ChangeID: res.ChangeID, Status: res.Status, Code: res.Code})
		if res.Status == string(merge.Rejected) {
			st.Rejected++
		}
		switch {
		case len(res.Record) > 0:
			var rec merge.Record
			if err := rec.UnmarshalJSON(res.Record); err != nil {
				return fmt.Errorf("client: record of %s: %w", res.ChangeID, err)
			}
			if err := c.absorb(tx, &rec); err != nil {
				return err
			}
		case res.Status == string(merge.Applied) || res.Status == string(merge.Merged):
			// Prefer: return=minimal: the server holds the change as sent;
			// apply it to this copy of the server's record. The pull that
			// follows brings whatever else the record holds.
			if err := c.acknowledge(tx, key, r.body); err != nil {
				return err
			}
		default:
			touched[key] = true
		}
	}
	for key := range touched {
		var server sql.NullString
		if err := tx.QueryRow(`SELECT server FROM records WHERE collection = ? AND id = ?`, key[0], key[1]).Scan(&server); err != nil {
			continue // no record yet
		}
		srv, err := decodeRecord(server)
		if err != nil {
			return err
		}
		if err := c.rebuild(tx, c.policies[key[0]], key[0], key[1], srv); err != nil {
			return err
		}
	}
	if err := c.observe(tx, resp.ServerHLC); err != nil {
		return err
	}
	return tx.Commit()
}

// acknowledge applies a change the server accepted as sent to the copy of
// the server's record, and rebuilds the local state on it.
func (c *Client) acknowledge(tx *sql.Tx, key [2]string, body string) error {
	p, ok := c.policies[key[0]]
	if !ok {
		return nil
	}
	ch, err := merge.DecodeChange([]byte(body))
	if err != nil {
		return err
	}
	var server sql.NullString
	if err := tx.QueryRow(`SELECT server FROM records WHERE collection = ? AND id = ?`, key[0], key[1]).Scan(&server); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	srv, err := decodeRecord(server)
	if err != nil {
		return err
	}
	if res := p.Apply(srv, ch, nil, merge.Options{}); res.Outcome == merge.Applied || res.Outcome == merge.Merged {
		srv = res.Record
	}
	return c.rebuild(tx, p, key[0], key[1], srv)
}

type pullResponse struct {
	Records   []json.RawMessage `json:"records"`
	Cursor    string            `json:"cursor"`
	HasMore   bool              `json:"has_more"`
	ServerHLC string            `json:"server_hlc"`
}

func (c *Client) pullAll(ctx context.Context, st *Stats) error {
	for {
		cursor, err := c.meta("cursor")
		if err != nil {
			return err
		}
		q := url.Values{}
		q.Set("limit", strconv.Itoa(c.page))
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page pullResponse
		if _, err := c.do(ctx, http.MethodGet, "/v1/sync/pull?"+q.Encode(), nil, &page, st); err != nil {
			// A link that cuts long downloads: ask for smaller pages.
			if retryable(err) {
				c.page = max(10, c.page/2)
			}
			return err
		}
		if c.page < c.cfg.PageSize {
			c.page = min(c.cfg.PageSize, c.page*2)
		}
		tx, err := c.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		for _, raw := range page.Records {
			var rec merge.Record
			if err := rec.UnmarshalJSON(raw); err != nil {
				tx.Rollback()
				return fmt.Errorf("client: pulled record: %w", err)
			}
			if err := c.absorb(tx, &rec); err != nil {
				tx.Rollback()
				return err
			}
		}
		st.Pulled += len(page.Records)
		// The cursor moves in the same transaction as the records it covers.
		if err := setMeta(tx, "cursor", page.Cursor); err != nil {
			tx.Rollback()
			return err
		}
		if err := c.observe(tx, page.ServerHLC); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		if !page.HasMore {
			return nil
		}
	}
}

// observe moves the device clock past the server's and stores it.
func (c *Client) observe(tx sqlExecer, serverHLC string) error {
	if ts, err := hlc.Parse(serverHLC); err == nil {
		c.clock.Observe(ts)
	}
	_, err := tx.Exec(`INSERT INTO meta (key, value) VALUES ('hlc', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, c.clock.Last().String())
	return err
}

// do sends one request, retrying what may pass with time, refreshing the
// token once on 401 and waiting out 429s. It returns the last status.
func (c *Client) do(ctx context.Context, method, path string, gz []byte, out any, st *Stats) (int, error) {
	refreshed := false
	for attempt := 0; ; attempt++ {
		status, err := c.once(ctx, method, path, gz, out, st)
		if err == nil {
			return status, nil
		}
		var he *HTTPError
		isHTTP := errors.As(err, &he)
		switch {
		case isHTTP && he.Status == http.StatusUnauthorized && c.cfg.Refresh != nil && !refreshed:
			refreshed = true
			if rerr := c.cfg.Refresh(ctx); rerr != nil {
				return status, fmt.Errorf("client: refresh after 401: %w", rerr)
			}
			continue
		case isHTTP && he.Status == http.StatusTooManyRequests && attempt+1 < c.cfg.Attempts:
			wait, _ := strconv.Atoi(he.retryAfter())
			st.Retries++
			if err := c.backoffFloor(ctx, time.Duration(max(wait, 1))*time.Second); err != nil {
				return status, err
			}
			continue
		case retryable(err) && attempt+1 < c.cfg.Attempts:
			st.Retries++
			if err := c.backoff(ctx, attempt, 0); err != nil {
				return status, err
			}
			continue
		}
		return status, err
	}
}

func (c *Client) backoffFloor(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func (c *Client) once(ctx context.Context, method, path string, gz []byte, out any, st *Stats) (int, error) {
	tok, err := c.cfg.Token(ctx)
	if err != nil {
		return 0, err
	}
	var body io.Reader
	if gz != nil {
		body = bytes.NewReader(gz)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.cfg.BaseURL+path, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept-Encoding", "gzip")
	if gz != nil {
		req.Header.Set("Prefer", "return=minimal")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Content-Encoding", "gzip")
		st.BytesSent += len(gz)
	}
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	st.BytesRecv += len(raw)
	// net/http inflates gzip itself only when it added Accept-Encoding;
	// this client set it, so inflate here.
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return resp.StatusCode, err
		}
		if raw, err = io.ReadAll(io.LimitReader(zr, 256<<20)); err != nil {
			return resp.StatusCode, err
		}
	}
	if resp.StatusCode != http.StatusOK {
		var p struct {
			Code string `json:"code"`
		}
		_ = json.Unmarshal(raw, &p)
		return resp.StatusCode, &HTTPError{Status: resp.StatusCode, Code: p.Code, Body: string(raw), retry: resp.Header.Get("Retry-After")}
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return resp.StatusCode, fmt.Errorf("client: response: %w", err)
	}
	return resp.StatusCode, nil
}

func gzipped(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
