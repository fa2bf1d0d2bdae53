package store

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	"gorm.io/gorm"

	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/sync/merge"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// Push runs fn in one write transaction. On PostgreSQL it runs at READ
// COMMITTED and relies on Lock's advisory locks; on SQLite the transaction
// begins IMMEDIATE, so it holds the database's single write lock throughout.
func (s *Store) Push(ctx context.Context, fn func(tx domain.PushTx) error) error {
	var written []cachedWrite
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		t := &pushTx{tx: tx, dialect: s.dialect, cache: s.cache}
		if err := fn(t); err != nil {
			return err
		}
		written = t.written
		return nil
	})
	if err != nil {
		return translate(err)
	}
	// Only committed states enter the cache: on SQLite a rolled-back
	// position is given again to the next write.
	for _, w := range written {
		s.cache.put(w.key, w.at, w.rec)
	}
	return nil
}

// cachedWrite is a state a push wrote, at its new feed position.
type cachedWrite struct {
	key domain.Key
	at  domain.Cursor
	rec *merge.Record
}

type pushTx struct {
	tx      *gorm.DB
	dialect Dialect
	cache   *recordCache
	written []cachedWrite
}

type recordRow struct {
	Collection string
	ID         string
	Unit       string
	Contingent string
	State      []byte
	FeedTxid   string // the writing transaction's id as text ("0" on SQLite)
	Seq        int64
	UpdatedAt  time.Time
}

// findRecordRows runs a query selecting recordColumns and scans its rows
// by hand: GORM's reflection over each row's fields was as much CPU as
// reading the rows from the database (a pull page is 500 of them).
func findRecordRows(db *gorm.DB, q string, args ...any) ([]recordRow, error) {
	rows, err := db.Raw(q, args...).Rows()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []recordRow
	for rows.Next() {
		var r recordRow
		if err := rows.Scan(&r.Collection, &r.ID, &r.Unit, &r.Contingent, &r.State, &r.FeedTxid, &r.Seq, &r.UpdatedAt); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (r *recordRow) stored() (domain.StoredRecord, error) { return r.storedVia(nil) }

// storedVia is stored with decoded records taken from and kept in c.
func (r *recordRow) storedVia(c *recordCache) (domain.StoredRecord, error) {
	cur, err := r.cursor()
	if err != nil {
		return domain.StoredRecord{}, err
	}
	key := domain.Key{Collection: r.Collection, ID: r.ID}
	rec := c.get(key, cur)
	if rec == nil {
		rec = new(merge.Record)
		if err := rec.UnmarshalJSON(r.State); err != nil {
			return domain.StoredRecord{}, fmt.Errorf("store: record %s/%s: %w", r.Collection, r.ID, err)
		}
		c.put(key, cur, rec)
	}
	return domain.StoredRecord{
		Record: rec, Collection: r.Collection, ID: r.ID,
		Owner:     domain.Owner{Unit: r.Unit, Contingent: r.Contingent},
		Cursor:    cur,
		UpdatedAt: r.UpdatedAt.UTC(),
	}, nil
}

func (r *recordRow) cursor() (domain.Cursor, error) {
	var tx uint64
	if r.FeedTxid != "" {
		var err error
		if tx, err = strconv.ParseUint(r.FeedTxid, 10, 64); err != nil {
			return domain.Cursor{}, fmt.Errorf("store: record %s/%s: txid %q", r.Collection, r.ID, r.FeedTxid)
		}
	}
	return domain.Cursor{TxID: tx, Seq: domain.Seq(r.Seq)}, nil
}

// recordColumns selects a record row; the txid is 0 on SQLite.
//
// The text form of txid must not be named txid: PostgreSQL resolves a bare
// name in ORDER BY to an output column first, so "ORDER BY txid" would sort
// the feed as text ("10000" before "9999") while the keyset WHERE compares
// the xid8 column, and a pull would skip every record between the two
// orders once transaction ids gain a digit.
func (s Dialect) recordColumns() string {
	if s == Postgres {
		return "collection, id, unit, contingent, state, txid::text AS feed_txid, seq, updated_at"
	}
	return "collection, id, unit, contingent, state, '0' AS feed_txid, seq, updated_at"
}

func sortKeys(keys []domain.Key) []domain.Key {
	keys = slices.Clone(keys)
	slices.SortFunc(keys, func(a, b domain.Key) int {
		return cmp.Or(strings.Compare(a.Collection, b.Collection), strings.Compare(a.ID, b.ID))
	})
	return slices.Compact(keys)
}

// Lock takes a transaction-scoped advisory lock per record on PostgreSQL,
// for all keys in one statement and in ascending hash order, so two pushes
// touching the same records in any order cannot deadlock. Advisory locks,
// unlike row locks, also lock records that do not exist yet: two devices
// creating one record are serialised too. On SQLite the IMMEDIATE
// transaction already excludes every other writer.
func (t *pushTx) Lock(ctx context.Context, keys []domain.Key) (map[domain.Key]domain.StoredRecord, error) {
	keys = sortKeys(keys)
	out := make(map[domain.Key]domain.StoredRecord, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	tx := t.tx.WithContext(ctx)
	if t.dialect == Postgres {
		names := make([]string, len(keys))
		for i, k := range keys {
			names[i] = k.Collection + "/" + k.ID
		}
		// The subquery's ORDER BY fixes the order the outer query takes
		// the locks in.
		if err := tx.Exec(`SELECT count(pg_advisory_xact_lock(h)) FROM (
			SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest(?::text[]) AS k ORDER BY 1) AS s`, textArray(names)).Error; err != nil {
			return nil, fmt.Errorf("store: lock records: %w", translate(err))
		}
	}
	var rows []recordRow
	var err error
	if t.dialect == Postgres {
		collections, ids := make([]string, len(keys)), make([]string, len(keys))
		for i, k := range keys {
			collections[i], ids[i] = k.Collection, k.ID
		}
		rows, err = findRecordRows(tx, pgLoadRecords, textArray(collections), textArray(ids))
	} else {
		// One collection per statement: SQLite scans the whole table for
		// a row-value list, (collection, id) IN ((?, ?), …), and searches
		// the primary key for collection = ? AND id IN (…).
		for _, part := range sqliteGroups(keys, func(k domain.Key) string { return k.Collection }, func(k domain.Key) string { return k.ID }) {
			var got []recordRow
			if got, err = findRecordRows(tx, sqliteLoadRecords, part.group, part.ids); err != nil {
				break
			}
			rows = append(rows, got...)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("store: load records: %w", translate(err))
	}
	for i := range rows {
		sr, err := rows[i].storedVia(t.cache)
		if err != nil {
			return nil, err
		}
		out[domain.Key{Collection: rows[i].Collection, ID: rows[i].ID}] = sr
	}
	return out, nil
}

// pgArray is elems as a one-dimensional PostgreSQL array parameter, sent in
// binary: a struct, which GORM binds as one parameter where it would expand
// a slice into a list.
func pgArray[E any](elems []E) pgtype.Array[E] {
	return pgtype.Array[E]{Elements: elems, Dims: []pgtype.ArrayDimension{{Length: int32(len(elems)), LowerBound: 1}}, Valid: true}
}

// textArray is ss as a text[] parameter.
func textArray(ss []string) pgtype.Array[string] { return pgArray(ss) }

type seenRow struct {
	Subject    string
	ChangeID   string
	Collection string
	RecordID   string
	Status     string
	Code       string
	Message    string
	Clamped    bool
}

// Seen returns the idempotency entries of the subject's change ids.
func (t *pushTx) Seen(ctx context.Context, subject string, ids []string) (map[string]domain.SeenChange, error) {
	out := map[string]domain.SeenChange{}
	if len(ids) == 0 {
		return out, nil
	}
	var rows []seenRow
	q, args := sqliteSeenChanges, []any{subject, ids}
	if t.dialect == Postgres {
		q, args = pgSeenChanges, []any{textArray(ids), subject}
	}
	if err := t.tx.WithContext(ctx).Raw(q, args...).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: seen changes: %w", translate(err))
	}
	for _, r := range rows {
		out[r.ChangeID] = domain.SeenChange{
			Subject: r.Subject, ChangeID: r.ChangeID, Key: domain.Key{Collection: r.Collection, ID: r.RecordID},
			Status: merge.Outcome(r.Status), Code: r.Code, Message: r.Message, Clamped: r.Clamped,
		}
	}
	return out, nil
}

// Prior returns what node wrote to the record at counter dot.
func (t *pushTx) Prior(ctx context.Context, key domain.Key, node vv.NodeID, dot uint64) (*merge.Change, error) {
	var body []string
	if err := t.tx.WithContext(ctx).Raw(`SELECT change FROM record_versions
		WHERE collection = ? AND record_id = ? AND node = ? AND dot = ?`, key.Collection, key.ID, string(node), dot).
		Scan(&body).Error; err != nil {
		return nil, fmt.Errorf("store: prior version: %w", translate(err))
	}
	if len(body) == 0 {
		return nil, nil
	}
	ch, err := merge.DecodeChange([]byte(body[0]))
	if err != nil {
		return nil, fmt.Errorf("store: prior version of %s: %w", key, err)
	}
	return ch, nil
}

// Write stages every row of one push.
func (t *pushTx) Write(ctx context.Context, w domain.PushWrites) error {
	tx := t.tx.WithContext(ctx)
	if err := t.writeRecords(tx, w.Records); err != nil {
		return err
	}
	var detail auditDetail
	if len(w.Versions) > 0 {
		rows := make([][]any, len(w.Versions))
		for i, v := range w.Versions {
			change, _ := v.Change.MarshalJSON()
			state := string(v.Record.AppendJSON(nil))
			rows[i] = []any{v.Key.Collection, v.Key.ID, v.ChangeID, v.Subject, string(v.Node), v.Dot, v.HLC.String(),
				v.Clamped, string(v.Outcome), string(change), state, v.Conflicts, v.ReceivedAt}
			if w.Audit != nil {
				detail.Versions = append(detail.Versions, auditVersion{Collection: v.Key.Collection, RecordID: v.Key.ID,
					ChangeID: v.ChangeID, Node: string(v.Node), Dot: v.Dot, Digest: versionDigest(string(change), state)})
			}
		}
		if err := insertRows(tx, "record_versions", []string{"collection", "record_id", "change_id", "subject", "node", "dot", "hlc",
			"clamped", "outcome", "change", "state", "conflicts", "received_at"}, rows, ""); err != nil {
			return err
		}
	}
	if len(w.Seen) > 0 {
		rows := make([][]any, len(w.Seen))
		for i, s := range w.Seen {
			rows[i] = []any{s.Subject, s.ChangeID, s.Key.Collection, s.Key.ID, string(s.Status), s.Code, s.Message, s.Clamped, s.SeenAt}
		}
		if err := insertRows(tx, "seen_changes", []string{"subject", "change_id", "collection", "record_id", "status", "code", "message", "clamped", "seen_at"},
			rows, " ON CONFLICT (subject, change_id) DO NOTHING"); err != nil {
			return err
		}
	}
	// Settlements first: they close the conflicts open before this push;
	// the push's own reports (already cleared of any a later change in
	// the push settled) are recorded after them.
	if err := settle(tx, w.Settlements); err != nil {
		return err
	}
	if err := upsertConflicts(tx, w.Conflicts); err != nil {
		return err
	}
	for _, st := range w.Settlements {
		detail.Settled = append(detail.Settled, st.Key.String()+"/"+st.Field)
	}
	for _, r := range w.Resolutions {
		detail.Resolutions = append(detail.Resolutions, r.ConflictID)
		res := tx.Exec(`UPDATE conflicts SET status = 'resolved', resolution = ?, reason = ?, resolved_by = ?, resolved_at = ?, updated_at = ?
			WHERE id = ?`, r.Choice, r.Reason, r.By, r.At, r.At, r.ConflictID)
		if res.Error != nil {
			return fmt.Errorf("store: resolve conflict: %w", translate(res.Error))
		}
	}
	if len(w.Rejections) > 0 {
		rows := make([][]any, len(w.Rejections))
		for i, r := range w.Rejections {
			rows[i] = []any{r.Subject, r.ChangeID, r.Key.Collection, r.Key.ID, r.Owner.Unit, r.Owner.Contingent, r.Code, r.Message, string(r.Body), r.ReceivedAt}
		}
		if err := insertRows(tx, "rejections", []string{"subject", "change_id", "collection", "record_id", "unit", "contingent", "code", "message", "body", "received_at"},
			rows, " ON CONFLICT (subject, change_id) DO NOTHING"); err != nil {
			return err
		}
		for _, r := range w.Rejections {
			detail.Rejected = append(detail.Rejected, r.ChangeID)
		}
	}
	if w.Audit != nil && (len(detail.Versions) > 0 || len(detail.Rejected) > 0 || len(detail.Resolutions) > 0) {
		// Last, so the chain's lock is held only from here to the commit.
		ev := *w.Audit
		detail.Extra = ev.Extra
		ev.Detail = marshalDetail(detail)
		if err := appendAudit(tx, t.dialect, ev); err != nil {
			return err
		}
	}
	return nil
}

func conflictValues(ws []merge.Write) []domain.ConflictValue {
	out := make([]domain.ConflictValue, len(ws))
	for i, w := range ws {
		out[i] = domain.ConflictValue{Value: json.RawMessage(w.Value), Node: string(w.Node()), HLC: w.HLC.String(), Dot: w.Dot}
	}
	return out
}

// writeRecords upserts the new states. The owner (unit, contingent) is set
// when a record is created and never changes. Each write moves the record to
// the end of the change feed: on PostgreSQL a new seq and the writing
// transaction's id; on SQLite the next seq after the largest, which is safe
// because this transaction holds the only write lock.
func (t *pushTx) writeRecords(tx *gorm.DB, recs []domain.StoredRecord) error {
	if len(recs) == 0 {
		return nil
	}
	recs = slices.Clone(recs)
	slices.SortFunc(recs, func(a, b domain.StoredRecord) int {
		return cmp.Or(strings.Compare(a.Record.Collection, b.Record.Collection), strings.Compare(a.Record.ID, b.Record.ID))
	})
	now := tx.NowFunc()
	cols := []string{"collection", "id", "unit", "contingent", "state", "deleted", "updated_at"}
	rows := make([][]any, len(recs))
	for i, r := range recs {
		rows[i] = []any{r.Record.Collection, r.Record.ID, r.Owner.Unit, r.Owner.Contingent, string(r.Record.AppendJSON(nil)), r.Record.Deleted(), now}
	}
	byKey := make(map[domain.Key]*merge.Record, len(recs))
	for _, r := range recs {
		byKey[domain.Key{Collection: r.Record.Collection, ID: r.Record.ID}] = r.Record
	}
	if t.dialect == Postgres {
		// RETURNING gives each state's new feed position, for the cache.
		var pos []recordRow
		err := insertRowsReturning(tx, "records", cols, rows, ` ON CONFLICT (collection, id) DO UPDATE SET
			state = excluded.state, deleted = excluded.deleted, updated_at = excluded.updated_at,
			txid = pg_current_xact_id(), seq = nextval('feed_seq')
			RETURNING collection, id, txid::text AS feed_txid, seq`, &pos)
		if err != nil {
			return err
		}
		for i := range pos {
			at, err := pos[i].cursor()
			if err != nil {
				return err
			}
			key := domain.Key{Collection: pos[i].Collection, ID: pos[i].ID}
			t.written = append(t.written, cachedWrite{key: key, at: at, rec: byKey[key]})
		}
		return nil
	}
	var top int64
	if err := tx.Raw(`SELECT COALESCE(MAX(seq), 0) FROM records`).Find(&top).Error; err != nil {
		return fmt.Errorf("store: feed position: %w", translate(err))
	}
	cols = append(cols, "seq")
	for i := range rows {
		rows[i] = append(rows[i], top+int64(i)+1)
		key := domain.Key{Collection: recs[i].Record.Collection, ID: recs[i].Record.ID}
		t.written = append(t.written, cachedWrite{key: key, at: domain.Cursor{Seq: domain.Seq(top + int64(i) + 1)}, rec: recs[i].Record})
	}
	return insertRows(tx, "records", cols, rows, ` ON CONFLICT (collection, id) DO UPDATE SET
		state = excluded.state, deleted = excluded.deleted, updated_at = excluded.updated_at, seq = excluded.seq`)
}

// settle closes the open conflicts of the settled fields: one statement
// per settling node (a push has one), not one per field.
func settle(tx *gorm.DB, sts []domain.Settlement) error {
	byNode := map[string][][]any{}
	at := map[string]any{}
	var nodes []string
	for _, st := range sts {
		n := string(st.Node)
		if _, ok := byNode[n]; !ok {
			nodes = append(nodes, n)
			at[n] = st.At
		}
		byNode[n] = append(byNode[n], []any{st.Key.Collection, st.Key.ID, st.Field})
	}
	if tx.Dialector.Name() == "postgres" {
		for _, n := range nodes {
			var cs, rs, fs []string
			for _, k := range byNode[n] {
				cs, rs, fs = append(cs, k[0].(string)), append(rs, k[1].(string)), append(fs, k[2].(string))
			}
			if err := tx.Exec(pgSettleConflicts, n, at[n], at[n], textArray(cs), textArray(rs), textArray(fs)).Error; err != nil {
				return fmt.Errorf("store: settle conflicts: %w", translate(err))
			}
		}
		return nil
	}
	// SQLite: one statement per settling node, collection and field, with
	// the record ids as a list the open-conflict index serves (a row-value
	// list would scan every open conflict).
	for _, n := range nodes {
		type group struct{ collection, field string }
		for _, part := range sqliteGroups(byNode[n], func(k []any) group { return group{k[0].(string), k[2].(string)} }, func(k []any) string { return k[1].(string) }) {
			if err := tx.Exec(sqliteSettleConflicts, n, at[n], at[n], part.group.collection, part.group.field, part.ids).Error; err != nil {
				return fmt.Errorf("store: settle conflicts: %w", translate(err))
			}
		}
	}
	return nil
}

// sqliteGroup is one statement's worth of ids sharing a group.
type sqliteGroup[G comparable] struct {
	group G
	ids   []string
}

// sqliteGroups splits items into groups, in first-seen order, of at most
// 100 ids each: SQLite's driver binds parameters in time quadratic in
// their number, so its statements stay small.
func sqliteGroups[T any, G comparable](items []T, groupOf func(T) G, idOf func(T) string) []sqliteGroup[G] {
	const most = 100
	var out []sqliteGroup[G]
	open := map[G]int{} // group -> index in out of its last, unfilled part
	for _, it := range items {
		g := groupOf(it)
		i, ok := open[g]
		if !ok || len(out[i].ids) == most {
			out = append(out, sqliteGroup[G]{group: g})
			i = len(out) - 1
			open[g] = i
		}
		out[i].ids = append(out[i].ids, idOf(it))
	}
	return out
}

// upsertConflicts records conflict reports with multi-row upserts: a new
// open conflict per field, or the open one's values replaced. A field
// reported twice in one push keeps its last report (a later change of the
// push saw more), since one statement may not touch a row twice.
func upsertConflicts(tx *gorm.DB, reports []domain.ConflictReport) error {
	if len(reports) == 0 {
		return nil
	}
	type fieldKey struct{ collection, record, field string }
	last := map[fieldKey]int{}
	for i, c := range reports {
		last[fieldKey{c.Collection, c.RecordID, c.Field}] = i
	}
	var rows [][]any
	for i, c := range reports {
		if last[fieldKey{c.Collection, c.RecordID, c.Field}] != i {
			continue
		}
		vals, err := json.Marshal(conflictValues(c.Values))
		if err != nil {
			return err
		}
		rows = append(rows, []any{uuid.NewString(), c.Collection, c.RecordID, c.Field, string(c.Rule), c.ReviewRequired, string(vals), c.Kept, "open",
			c.Owner.Unit, c.Owner.Contingent, c.ChangeID, c.At, c.At})
	}
	return insertRows(tx, "conflicts", []string{"id", "collection", "record_id", "field", "rule", "review_required", "vals", "kept", "status",
		"unit", "contingent", "change_id", "created_at", "updated_at"}, rows, ` ON CONFLICT (collection, record_id, field) WHERE status = 'open' DO UPDATE SET
			rule = excluded.rule, review_required = excluded.review_required, vals = excluded.vals,
			kept = excluded.kept, change_id = excluded.change_id, updated_at = excluded.updated_at`)
}

// insertRows inserts rows: on PostgreSQL in one statement of one array per
// column (pgInsertRows); on SQLite with multi-row VALUES statements of a
// few rows each, since its driver binds each parameter by scanning every
// argument (quadratic in the argument count), in-process and cheap.
func insertRows(tx *gorm.DB, table string, cols []string, rows [][]any, suffix string) error {
	return insertRowsReturning[struct{}](tx, table, cols, rows, suffix, nil)
}

// insertRowsReturning is insertRows for statements with a RETURNING
// clause: each chunk's rows are appended to dest.
func insertRowsReturning[T any](tx *gorm.DB, table string, cols []string, rows [][]any, suffix string, dest *[]T) error {
	if len(rows) == 0 {
		return nil
	}
	if tx.Dialector.Name() == "postgres" {
		return pgInsertRows(tx, table, cols, rows, suffix, dest)
	}
	const maxParams = 128
	chunk := max(1, maxParams/len(cols))
	placeholder := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
	for start := 0; start < len(rows); start += chunk {
		end := min(len(rows), start+chunk)
		var sb strings.Builder
		sb.WriteString("INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES ")
		args := make([]any, 0, (end-start)*len(cols))
		for i := start; i < end; i++ {
			if i > start {
				sb.WriteString(", ")
			}
			sb.WriteString(placeholder)
			args = append(args, rows[i]...)
		}
		sb.WriteString(suffix)
		if dest != nil {
			var got []T
			if err := tx.Raw(sb.String(), args...).Find(&got).Error; err != nil {
				return fmt.Errorf("store: insert %s: %w", table, translate(err))
			}
			*dest = append(*dest, got...)
			continue
		}
		if err := tx.Exec(sb.String(), args...).Error; err != nil {
			return fmt.Errorf("store: insert %s: %w", table, translate(err))
		}
	}
	return nil
}

// pgInsertRows inserts rows with INSERT … SELECT FROM unnest(one array per
// column): one statement with as many parameters as columns whatever the
// row count, sent in binary, prepared once per table and planned once,
// where a multi-row VALUES list had a parameter per value (1,300 for a
// push's history) for GORM to expand and PostgreSQL to bind and plan
// afresh for every row count. A column's array type follows its Go values:
// string text, integers bigint, bool boolean, time.Time timestamptz.
func pgInsertRows[T any](tx *gorm.DB, table string, cols []string, rows [][]any, suffix string, dest *[]T) error {
	arrays := make([]any, len(cols))
	casts := make([]string, len(cols))
	for c := range cols {
		var err error
		if arrays[c], casts[c], err = pgColumnArray(rows, c); err != nil {
			return fmt.Errorf("store: insert %s.%s: %w", table, cols[c], err)
		}
	}
	var sb strings.Builder
	sb.WriteString("INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") SELECT * FROM unnest(")
	for c := range cols {
		if c > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("?::" + casts[c])
	}
	sb.WriteString(")" + suffix)
	if dest != nil {
		var got []T
		if err := tx.Raw(sb.String(), arrays...).Find(&got).Error; err != nil {
			return fmt.Errorf("store: insert %s: %w", table, translate(err))
		}
		*dest = append(*dest, got...)
		return nil
	}
	if err := tx.Exec(sb.String(), arrays...).Error; err != nil {
		return fmt.Errorf("store: insert %s: %w", table, translate(err))
	}
	return nil
}

// pgColumnArray collects column c of rows as an array parameter (pgArray)
// and names its PostgreSQL array type. Every row's value must have the first
// row's type.
func pgColumnArray(rows [][]any, c int) (any, string, error) {
	switch rows[0][c].(type) {
	case string:
		return columnArray(rows, c, "text[]", func(v any) (string, bool) { s, ok := v.(string); return s, ok })
	case bool:
		return columnArray(rows, c, "boolean[]", func(v any) (bool, bool) { b, ok := v.(bool); return b, ok })
	case time.Time:
		return columnArray(rows, c, "timestamptz[]", func(v any) (time.Time, bool) { t, ok := v.(time.Time); return t, ok })
	case int, int32, int64, uint64:
		return columnArray(rows, c, "bigint[]", func(v any) (int64, bool) {
			switch n := v.(type) {
			case int:
				return int64(n), true
			case int32:
				return int64(n), true
			case int64:
				return n, true
			case uint64:
				return int64(n), n <= math.MaxInt64
			}
			return 0, false
		})
	}
	return nil, "", fmt.Errorf("no array type for %T", rows[0][c])
}

func columnArray[E any](rows [][]any, c int, typ string, conv func(any) (E, bool)) (any, string, error) {
	out := make([]E, len(rows))
	for i, r := range rows {
		v, ok := conv(r[c])
		if !ok {
			return nil, "", fmt.Errorf("row %d holds %T (%v) in a %s column", i, r[c], r[c], typ)
		}
		out[i] = v
	}
	return pgArray(out), typ, nil
}
