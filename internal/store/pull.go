package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync/internal/domain"
)

// Pull returns up to limit records changed after the cursor that the filter
// admits, oldest change first.
//
// PostgreSQL: the feed is ordered by (txid, seq) and a page holds only rows
// whose txid is below the oldest transaction still running
// (pg_snapshot_xmin). Every transaction below that horizon has ended, so no
// row can later appear behind a cursor already served: the classic gap of a
// sequence assigned in a transaction that commits after a later one was read
// cannot happen. Rows already committed above the horizon (a concurrent
// transaction is still open) are not lost either: Pull waits briefly for
// the horizon to pass them and otherwise reports hasMore, so the client
// pulls again.
//
// SQLite: writers are serialised, so seq order is commit order.
func (s *Store) Pull(ctx context.Context, after domain.Cursor, limit int, f domain.PullFilter) ([]domain.StoredRecord, bool, error) {
	where, args := filterSQL(f)
	if s.dialect != Postgres {
		// INDEXED BY: without statistics (nothing runs ANALYZE on the file)
		// SQLite planned a device's pull as an OR of the unit and
		// collection indexes and sorted the unit's whole feed per page.
		q := sqlitePullSQL(where)
		rows, err := findRecordRows(s.db.WithContext(ctx), q, append(append([]any{int64(after.Seq)}, args...), limit+1)...)
		if err != nil {
			return nil, false, fmt.Errorf("store: pull: %w", translate(err))
		}
		return page(rows, limit)
	}
	const (
		waitStep = 5 * time.Millisecond
		waitMax  = 500 * time.Millisecond
	)
	deadline := time.Now().Add(waitMax)
	db := s.db.WithContext(ctx)
	for {
		// One horizon for both statements below: had each read its own,
		// rows between the two would be neither served nor seen waiting.
		var horizon string
		if err := db.Raw(`SELECT pg_snapshot_xmin(pg_current_snapshot())::text`).Find(&horizon).Error; err != nil {
			return nil, false, fmt.Errorf("store: pull horizon: %w", translate(err))
		}
		q, wq := pgPullSQL(where)
		qargs := append(append([]any{fmt.Sprint(after.TxID), int64(after.Seq), horizon}, args...), limit+1)
		rows, err := findRecordRows(db, q, qargs...)
		if err != nil {
			return nil, false, fmt.Errorf("store: pull: %w", translate(err))
		}
		recs, more, err := page(rows, limit)
		if err != nil || more {
			return recs, more, err
		}
		// The page is not full. Are committed rows waiting at or above the
		// horizon? They are visible now but not yet safe to serve past.
		from := after
		if len(recs) > 0 {
			from = recs[len(recs)-1].Cursor
		}
		var waiting []int
		if err := db.Raw(wq, append([]any{fmt.Sprint(from.TxID), int64(from.Seq), horizon}, args...)...).Find(&waiting).Error; err != nil {
			return nil, false, fmt.Errorf("store: pull horizon: %w", translate(err))
		}
		if len(waiting) == 0 {
			return recs, false, nil
		}
		if len(recs) > 0 || time.Now().After(deadline) {
			// Serve what is safe now; the client pulls again.
			return recs, true, nil
		}
		select {
		case <-ctx.Done():
			return nil, false, translate(ctx.Err())
		case <-time.After(waitStep):
		}
	}
}

// sqlitePullSQL returns SQLite's page query (parameters: cursor seq, the
// filter's, limit).
func sqlitePullSQL(where string) string {
	return `SELECT ` + SQLite.recordColumns() + ` FROM records INDEXED BY records_feed WHERE seq > ?` + where + ` ORDER BY seq LIMIT ?`
}

// pgPullSQL returns PostgreSQL's page query (parameters: cursor txid and
// seq, horizon, the filter's, limit) and its probe for committed rows
// waiting at or above the horizon (the same without the limit). The probe
// is ordered like the page so it is planned on the feed index: written as
// an EXISTS, a cached generic plan read the whole table on every pull.
func pgPullSQL(where string) (page, probe string) {
	page = `SELECT ` + Postgres.recordColumns() + ` FROM records
		WHERE (txid, seq) > (?::xid8, ?) AND txid < ?::xid8` + where + `
		ORDER BY records.txid, records.seq LIMIT ?`
	probe = `SELECT 1 FROM records WHERE (txid, seq) > (?::xid8, ?) AND txid >= ?::xid8` + where + `
		ORDER BY records.txid, records.seq LIMIT 1`
	return page, probe
}

func page(rows []recordRow, limit int) ([]domain.StoredRecord, bool, error) {
	more := len(rows) > limit
	if more {
		rows = rows[:limit]
	}
	out := make([]domain.StoredRecord, 0, len(rows))
	for i := range rows {
		cur, err := rows[i].cursor()
		if err != nil {
			return nil, false, err
		}
		// Left encoded: most pulls serve the stored bytes as they are.
		out = append(out, domain.StoredRecord{
			Raw: rows[i].State, Collection: rows[i].Collection, ID: rows[i].ID,
			Owner: domain.Owner{Unit: rows[i].Unit, Contingent: rows[i].Contingent}, Cursor: cur,
			UpdatedAt: rows[i].UpdatedAt.UTC(),
		})
	}
	return out, more, nil
}

// filterSQL renders a pull filter as AND clauses with parameters. Every
// value is a bound parameter; column names are fixed here.
func filterSQL(f domain.PullFilter) (string, []any) {
	var sb strings.Builder
	var args []any
	if len(f.Collections) > 0 {
		sb.WriteString(" AND collection IN ?")
		args = append(args, f.Collections)
	}
	switch {
	case f.CorridorsOnly:
		sb.WriteString(" AND collection = ?")
		args = append(args, domain.Corridors)
	case f.Units != nil:
		if len(f.Units) == 0 {
			sb.WriteString(" AND collection = ?")
			args = append(args, domain.Corridors)
		} else {
			sb.WriteString(" AND (collection = ? OR unit IN ?)")
			args = append(args, domain.Corridors, f.Units)
		}
	case f.Contingent != "":
		sb.WriteString(" AND (collection = ? OR contingent = ?)")
		args = append(args, domain.Corridors, f.Contingent)
	}
	return sb.String(), args
}

// Get returns one record, or nil when there is none.
func (s *Store) Get(ctx context.Context, key domain.Key) (*domain.StoredRecord, error) {
	rows, err := findRecordRows(s.db.WithContext(ctx), `SELECT `+s.dialect.recordColumns()+` FROM records WHERE collection = ? AND id = ?`,
		key.Collection, key.ID)
	if err != nil {
		return nil, fmt.Errorf("store: get %s: %w", key, translate(err))
	}
	if len(rows) == 0 {
		return nil, nil
	}
	sr, err := rows[0].stored()
	if err != nil {
		return nil, err
	}
	return &sr, nil
}
