package store

// Statements of the push path that look rows up by key.
//
// PostgreSQL:
// Each reads one row per key through a LATERAL subquery with a LIMIT,
// which PostgreSQL cannot flatten into a join: the outer side is the
// array of keys and the inner side a probe of a unique index on every key
// column. No other plan exists, so none depends on statistics. The forms
// they replace, `(collection, id) IN ((…), …)` and `change_id = ANY(…)`,
// were planned on a fresh database (no ANALYZE yet, autovacuum not yet
// run) and in cached generic plans as an index scan on the leading column
// alone with the list as a filter: every push read the whole collection,
// or the device's whole history, and grew slower with each one.

// pgLoadRecords loads the records of a push: collections and ids as two
// parallel text arrays.
const pgLoadRecords = `SELECT r.collection, r.id, r.unit, r.contingent, r.state, r.txid::text AS feed_txid, r.seq, r.updated_at
	FROM unnest(?::text[], ?::text[]) AS k(kc, ki),
	LATERAL (SELECT * FROM records WHERE collection = k.kc AND id = k.ki LIMIT 1) AS r`

// pgSeenChanges reads the idempotency entries of change ids (a text
// array) of one subject.
const pgSeenChanges = `SELECT s.subject, s.change_id, s.collection, s.record_id, s.status, s.code, s.message, s.clamped
	FROM unnest(?::text[]) AS k(id),
	LATERAL (SELECT * FROM seen_changes WHERE subject = ? AND change_id = k.id LIMIT 1) AS s`

// pgSettleConflicts closes the open conflicts of fields given as three
// parallel text arrays (collection, record id, field): each found through
// the partial unique index of open conflicts, then updated by its row.
const pgSettleConflicts = `UPDATE conflicts SET status = 'resolved', resolution = 'superseded', resolved_by = ?, resolved_at = ?, updated_at = ?
	FROM unnest(?::text[], ?::text[], ?::text[]) AS k(kc, kr, kf),
	LATERAL (SELECT ctid FROM conflicts WHERE status = 'open' AND collection = k.kc AND record_id = k.kr AND field = k.kf LIMIT 1) AS o
	WHERE conflicts.ctid = o.ctid AND conflicts.status = 'open'`

// SQLite scans the whole table for a row-value list such as
// (collection, id) IN ((?, ?), …), so its statements put one value of the
// leading key columns in each statement and the last column in a list,
// which it serves by searching the index once per value.
const (
	// sqliteLoadRecords: a collection and a list of ids.
	sqliteLoadRecords = `SELECT collection, id, unit, contingent, state, '0' AS feed_txid, seq, updated_at
		FROM records WHERE collection = ? AND id IN ?`
	// sqliteSeenChanges: a subject and a list of change ids.
	sqliteSeenChanges = `SELECT subject, change_id, collection, record_id, status, code, message, clamped
		FROM seen_changes WHERE subject = ? AND change_id IN ?`
	// sqliteSettleConflicts: who and when (three), a collection, a field
	// and a list of record ids.
	sqliteSettleConflicts = `UPDATE conflicts SET status = 'resolved', resolution = 'superseded', resolved_by = ?, resolved_at = ?, updated_at = ?
		WHERE status = 'open' AND collection = ? AND field = ? AND record_id IN ?`
)
