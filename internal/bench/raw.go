package bench

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fieldsync/fieldsync/internal/store"
)

// rawRow is one row of the scratch table: a record's key, owner and state.
type rawRow struct {
	id    string
	unit  string
	state string
}

// rawDB is the database reached directly, without fieldsync: the limit
// every figure is divided by.
type rawDB interface {
	// prepare creates the scratch table, shaped like records (the same
	// columns and indexes), named after the run.
	prepare(ctx context.Context) error
	// upsert writes rows in one transaction with INSERT … ON CONFLICT DO
	// UPDATE, moving each row's feed position as fieldsync does.
	upsert(ctx context.Context, rows []rawRow) error
	// readPage reads up to limit states of the unit's records (and all
	// corridors, a device's pull scope) from the records table itself,
	// after key in feed order; it returns how many and the last key.
	readPage(ctx context.Context, unit string, after rawKey, limit int) (int, rawKey, error)
	// sampleState returns the stored state of one of the unit's records:
	// the row shape the raw limits write.
	sampleState(ctx context.Context, unit string) (string, error)
	// analyze refreshes the planner's statistics of fieldsync's tables,
	// as autovacuum would after a bulk load on PostgreSQL. A no-op on
	// SQLite, where nothing in a deployment would run it either.
	analyze(ctx context.Context) error
	// backends returns the process ids of the database's server processes
	// serving this database (PostgreSQL backends; none for SQLite, which
	// runs inside the fieldsync process), for their CPU time.
	backends(ctx context.Context) []int
	// drop removes the scratch table.
	drop(ctx context.Context) error
	close()
}

// rawKey is a position in the feed: (txid, seq) on PostgreSQL, seq on
// SQLite.
type rawKey struct {
	txid string
	seq  int64
}

// openRaw opens the database behind dsn (a postgres:// URL or an SQLite
// path) for the raw limits: PostgreSQL through pgx with conns connections;
// SQLite through database/sql and the pure-Go driver on the store's own
// connection settings (one connection, as fieldsync has: one writer
// anyway).
func openRaw(ctx context.Context, dsn string, conns int, run string) (rawDB, error) {
	table := "bench_raw_" + run
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		cfg, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			return nil, fmt.Errorf("bench: raw postgres: %w", err)
		}
		cfg.MaxConns, cfg.MinConns = int32(conns), int32(conns)
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("bench: raw postgres: %w", err)
		}
		if err := pool.Ping(ctx); err != nil {
			pool.Close()
			return nil, fmt.Errorf("bench: raw postgres: %w", err)
		}
		return &pgRaw{pool: pool, table: table}, nil
	}
	// The store's own connection (its driver, pragmas and single
	// connection), used through database/sql: the raw limit runs with
	// exactly the settings fieldsync runs with, whatever they become.
	st, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		return nil, fmt.Errorf("bench: raw sqlite: %w", err)
	}
	db, err := st.DB().DB()
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("bench: raw sqlite: %w", err)
	}
	return &sqliteRaw{db: db, st: st, table: table}, nil
}

// pgRaw is PostgreSQL through pgx.
type pgRaw struct {
	pool  *pgxpool.Pool
	table string

	stmt string // the multi-row upsert, built once per row count
	rows int
	mu   sync.Mutex
}

func (p *pgRaw) prepare(ctx context.Context) error {
	// LIKE … INCLUDING INDEXES copies the primary key and both secondary
	// indexes of records: the same write amplification. The scratch table
	// gets its own sequence; txid keeps its default (the writer's xid).
	for _, q := range []string{
		`DROP TABLE IF EXISTS ` + p.table,
		`CREATE SEQUENCE IF NOT EXISTS ` + p.table + `_seq`,
		`CREATE TABLE ` + p.table + ` (LIKE records INCLUDING DEFAULTS INCLUDING INDEXES)`,
		`ALTER TABLE ` + p.table + ` ALTER COLUMN seq SET DEFAULT nextval('` + p.table + `_seq')`,
	} {
		if _, err := p.pool.Exec(ctx, q); err != nil {
			return fmt.Errorf("bench: raw postgres: %s: %w", q, err)
		}
	}
	return nil
}

func (p *pgRaw) upsertSQL(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rows == n {
		return p.stmt
	}
	var sb strings.Builder
	sb.WriteString(`INSERT INTO ` + p.table + ` (collection, id, unit, contingent, state, updated_at) VALUES `)
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "('patrol_logs', $%d, $%d, 'BENCH', $%d, $%d)", 4*i+1, 4*i+2, 4*i+3, 4*i+4)
	}
	sb.WriteString(` ON CONFLICT (collection, id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at,
		txid = pg_current_xact_id(), seq = nextval('` + p.table + `_seq')`)
	p.stmt, p.rows = sb.String(), n
	return p.stmt
}

func (p *pgRaw) upsert(ctx context.Context, rows []rawRow) error {
	now := time.Now().UTC()
	args := make([]any, 0, 4*len(rows))
	for _, r := range rows {
		args = append(args, r.id, r.unit, r.state, now)
	}
	// One statement is one transaction: BEGIN and COMMIT around it would
	// only add round trips to the limit.
	if _, err := p.pool.Exec(ctx, p.upsertSQL(len(rows)), args...); err != nil {
		return fmt.Errorf("bench: raw upsert: %w", err)
	}
	return nil
}

func (p *pgRaw) readPage(ctx context.Context, unit string, after rawKey, limit int) (int, rawKey, error) {
	if after.txid == "" {
		after.txid = "0"
	}
	// ORDER BY names the table's columns: a bare "txid" would name the
	// text output column and sort by its digits, which no index serves.
	rows, err := p.pool.Query(ctx, `SELECT txid::text AS txid_text, seq, state FROM records
		WHERE (txid, seq) > ($1::xid8, $2) AND (collection = 'corridors' OR unit = $3)
		ORDER BY records.txid, records.seq LIMIT $4`, after.txid, after.seq, unit, limit)
	if err != nil {
		return 0, after, fmt.Errorf("bench: raw read: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var state string
		if err := rows.Scan(&after.txid, &after.seq, &state); err != nil {
			return n, after, fmt.Errorf("bench: raw read: %w", err)
		}
		n++
	}
	return n, after, rows.Err()
}

func (p *pgRaw) sampleState(ctx context.Context, unit string) (string, error) {
	var state string
	err := p.pool.QueryRow(ctx, `SELECT state FROM records WHERE unit = $1 ORDER BY seq DESC LIMIT 1`, unit).Scan(&state)
	return state, err
}

func (p *pgRaw) analyze(ctx context.Context) error {
	_, err := p.pool.Exec(ctx, `ANALYZE records, record_versions, seen_changes`)
	return err
}

func (p *pgRaw) backends(ctx context.Context) []int {
	rows, err := p.pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'`)
	if err != nil {
		return nil
	}
	defer rows.Close()
	var pids []int
	for rows.Next() {
		var pid int32
		if rows.Scan(&pid) == nil {
			pids = append(pids, int(pid))
		}
	}
	return pids
}

func (p *pgRaw) drop(ctx context.Context) error {
	_, err := p.pool.Exec(ctx, `DROP TABLE IF EXISTS `+p.table+`; DROP SEQUENCE IF EXISTS `+p.table+`_seq`)
	return err
}

func (p *pgRaw) close() { p.pool.Close() }

// sqliteRaw is SQLite through database/sql and the pure-Go driver.
type sqliteRaw struct {
	db    *sql.DB
	st    *store.Store
	table string
	seq   atomic.Int64

	mu   sync.Mutex
	stmt string // the multi-row upsert, built once per row count
	rows int
}

func (s *sqliteRaw) prepare(ctx context.Context) error {
	for _, q := range []string{
		`DROP TABLE IF EXISTS ` + s.table,
		`CREATE TABLE ` + s.table + ` (
			collection  text      NOT NULL,
			id          text      NOT NULL,
			unit        text      NOT NULL DEFAULT '',
			contingent  text      NOT NULL DEFAULT '',
			state       text      NOT NULL,
			deleted     boolean   NOT NULL DEFAULT false,
			seq         integer   NOT NULL,
			updated_at  timestamp NOT NULL,
			PRIMARY KEY (collection, id))`,
		`CREATE UNIQUE INDEX ` + s.table + `_feed ON ` + s.table + ` (seq)`,
		`CREATE INDEX ` + s.table + `_unit ON ` + s.table + ` (unit, collection)`,
	} {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("bench: raw sqlite: %w", err)
		}
	}
	return nil
}

// upsert writes the rows with one multi-row statement in one transaction
// (measured on this driver: twice as fast as a prepared single-row
// statement run once per row).
func (s *sqliteRaw) upsert(ctx context.Context, rows []rawRow) error {
	now := time.Now().UTC()
	args := make([]any, 0, 5*len(rows))
	for _, r := range rows {
		args = append(args, r.id, r.unit, r.state, s.seq.Add(1), now)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("bench: raw upsert: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, s.upsertSQL(len(rows)), args...); err != nil {
		return fmt.Errorf("bench: raw upsert: %w", err)
	}
	return tx.Commit()
}

func (s *sqliteRaw) upsertSQL(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rows == n {
		return s.stmt
	}
	var sb strings.Builder
	sb.WriteString(`INSERT INTO ` + s.table + ` (collection, id, unit, contingent, state, seq, updated_at) VALUES `)
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("('patrol_logs', ?, ?, 'BENCH', ?, ?, ?)")
	}
	sb.WriteString(` ON CONFLICT (collection, id) DO UPDATE SET state = excluded.state, seq = excluded.seq, updated_at = excluded.updated_at`)
	s.stmt, s.rows = sb.String(), n
	return s.stmt
}

func (s *sqliteRaw) readPage(ctx context.Context, unit string, after rawKey, limit int) (int, rawKey, error) {
	// INDEXED BY: read by key along the feed index. Without statistics
	// (nothing runs ANALYZE on fieldsync's SQLite file) the planner would
	// rather gather the unit's rows through records_unit and sort them all
	// on every page; that is fieldsync's plan, not the limit.
	rows, err := s.db.QueryContext(ctx, `SELECT seq, state FROM records INDEXED BY records_feed
		WHERE seq > ? AND (collection = 'corridors' OR unit = ?) ORDER BY seq LIMIT ?`, after.seq, unit, limit)
	if err != nil {
		return 0, after, fmt.Errorf("bench: raw read: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var state string
		if err := rows.Scan(&after.seq, &state); err != nil {
			return n, after, fmt.Errorf("bench: raw read: %w", err)
		}
		n++
	}
	return n, after, rows.Err()
}

func (s *sqliteRaw) sampleState(ctx context.Context, unit string) (string, error) {
	var state string
	err := s.db.QueryRowContext(ctx, `SELECT state FROM records WHERE unit = ? ORDER BY seq DESC LIMIT 1`, unit).Scan(&state)
	return state, err
}

func (s *sqliteRaw) analyze(context.Context) error { return nil }

func (s *sqliteRaw) backends(context.Context) []int { return nil }

func (s *sqliteRaw) drop(ctx context.Context) error {
	_, err := s.db.ExecContext(ctx, `DROP TABLE IF EXISTS `+s.table)
	return err
}

func (s *sqliteRaw) close() { s.st.Close() }
