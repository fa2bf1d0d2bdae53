package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/sync/hlc"
	"github.com/fieldsync/fieldsync/sync/merge"
	"github.com/fieldsync/fieldsync/sync/vv"
)

type versionRow struct {
	Seq        int64
	Collection string
	RecordID   string
	ChangeID   string
	Subject    string
	Node       string
	Dot        int64
	HLC        string `gorm:"column:hlc"`
	Clamped    bool
	Outcome    string
	Change     string
	State      string
	Conflicts  int
	ReceivedAt time.Time
}

// History returns every accepted version of a record, oldest first.
func (s *Store) History(ctx context.Context, key domain.Key) ([]domain.Version, error) {
	return s.HistoryPage(ctx, key, 0, 0)
}

// HistoryPage returns up to limit versions of a record (0: all) after the
// version at seq after, oldest first.
func (s *Store) HistoryPage(ctx context.Context, key domain.Key, after int64, limit int) ([]domain.Version, error) {
	q := `SELECT seq, collection, record_id, change_id, subject, node, dot, hlc, clamped, outcome,
			change, state, conflicts, received_at
		FROM record_versions WHERE collection = ? AND record_id = ? AND seq > ? ORDER BY seq`
	args := []any{key.Collection, key.ID, after}
	if limit > 0 {
		q += " LIMIT ?"
		args = append(args, limit)
	}
	var rows []versionRow
	if err := s.db.WithContext(ctx).Raw(q, args...).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: history of %s: %w", key, translate(err))
	}
	out := make([]domain.Version, len(rows))
	for i, r := range rows {
		ch, err := merge.DecodeChange([]byte(r.Change))
		if err != nil {
			return nil, fmt.Errorf("store: history of %s: change %s: %w", key, r.ChangeID, err)
		}
		var rec merge.Record
		if err := rec.UnmarshalJSON([]byte(r.State)); err != nil {
			return nil, fmt.Errorf("store: history of %s: state after %s: %w", key, r.ChangeID, err)
		}
		stamp, err := hlc.Parse(r.HLC)
		if err != nil {
			return nil, fmt.Errorf("store: history of %s: hlc of %s: %w", key, r.ChangeID, err)
		}
		out[i] = domain.Version{
			Seq: r.Seq, Key: key, ChangeID: r.ChangeID, Subject: r.Subject, Node: vv.NodeID(r.Node), Dot: uint64(r.Dot),
			HLC: stamp, Clamped: r.Clamped, Outcome: merge.Outcome(r.Outcome), Change: ch, Record: &rec,
			Conflicts: r.Conflicts, ReceivedAt: r.ReceivedAt.UTC(),
		}
	}
	return out, nil
}

type conflictRow struct {
	ID             string
	Collection     string
	RecordID       string
	Field          string
	Rule           string
	ReviewRequired bool
	Vals           string
	Kept           int
	Status         string
	Unit           string
	Contingent     string
	ChangeID       string
	CreatedAt      time.Time
	UpdatedAt      time.Time
	ResolvedAt     *time.Time
	ResolvedBy     string
	Resolution     string
	Reason         string
}

const conflictColumns = `id, collection, record_id, field, rule, review_required, vals, kept, status, unit, contingent,
	change_id, created_at, updated_at, resolved_at, resolved_by, resolution, reason`

func (r *conflictRow) conflict() (domain.StoredConflict, error) {
	c := domain.StoredConflict{
		ID: r.ID, Key: domain.Key{Collection: r.Collection, ID: r.RecordID}, Field: r.Field, Rule: r.Rule,
		ReviewRequired: r.ReviewRequired, Kept: r.Kept, Status: r.Status,
		Owner:    domain.Owner{Unit: r.Unit, Contingent: r.Contingent},
		ChangeID: r.ChangeID, CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(),
		ResolvedBy: r.ResolvedBy, Resolution: r.Resolution, Reason: r.Reason,
	}
	if r.ResolvedAt != nil {
		t := r.ResolvedAt.UTC()
		c.ResolvedAt = &t
	}
	if err := json.Unmarshal([]byte(r.Vals), &c.Values); err != nil {
		return c, fmt.Errorf("store: conflict %s: values: %w", r.ID, err)
	}
	return c, nil
}

// Conflicts returns conflicts matching f, oldest first (by creation time,
// then id).
func (s *Store) Conflicts(ctx context.Context, f domain.ConflictFilter) ([]domain.StoredConflict, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		where = append(where, cond)
		args = append(args, v)
	}
	if f.Status != "" {
		add("status = ?", f.Status)
	}
	if f.Unit != "" {
		add("unit = ?", f.Unit)
	}
	if f.Contingent != "" {
		// Corridors belong to every contingent.
		where = append(where, "(contingent = ? OR collection = ?)")
		args = append(args, f.Contingent, domain.Corridors)
	}
	if f.Collection != "" {
		add("collection = ?", f.Collection)
	}
	if f.Rule != "" {
		add("rule = ?", f.Rule)
	}
	if f.Key != nil {
		add("collection = ?", f.Key.Collection)
		add("record_id = ?", f.Key.ID)
	}
	if f.After != "" {
		at, id, err := domain.ParseConflictCursor(f.After)
		if err != nil {
			return nil, err
		}
		where = append(where, "(created_at > ? OR created_at = ? AND id > ?)")
		args = append(args, at, at, id)
	}
	q := `SELECT ` + conflictColumns + ` FROM conflicts`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY created_at, id"
	if f.Limit > 0 {
		q += " LIMIT ?"
		args = append(args, f.Limit)
	}
	var rows []conflictRow
	if err := s.db.WithContext(ctx).Raw(q, args...).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: conflicts: %w", translate(err))
	}
	out := make([]domain.StoredConflict, len(rows))
	for i := range rows {
		c, err := rows[i].conflict()
		if err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}

// Conflict returns one conflict, nil when there is none.
func (s *Store) Conflict(ctx context.Context, id string) (*domain.StoredConflict, error) {
	return conflictByID(s.db.WithContext(ctx), id)
}

// conflictByID reads one conflict through db (the store or a transaction).
func conflictByID(db *gorm.DB, id string) (*domain.StoredConflict, error) {
	var rows []conflictRow
	if err := db.Raw(`SELECT `+conflictColumns+` FROM conflicts WHERE id = ?`, id).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: conflict: %w", translate(err))
	}
	if len(rows) == 0 {
		return nil, nil
	}
	c, err := rows[0].conflict()
	return &c, err
}

type rejectionRow struct {
	ID         int64
	Subject    string
	ChangeID   string
	Collection string
	RecordID   string
	Unit       string
	Contingent string
	Code       string
	Message    string
	Body       string
	ReceivedAt time.Time
}

// Rejections returns the dead-letter list, oldest first.
func (s *Store) Rejections(ctx context.Context, f domain.RejectionFilter) ([]domain.StoredRejection, error) {
	q := `SELECT id, subject, change_id, collection, record_id, unit, contingent, code, message, body, received_at
		FROM rejections WHERE id > ?`
	args := []any{f.After}
	if f.Unit != "" {
		q += " AND unit = ?"
		args = append(args, f.Unit)
	}
	if f.Contingent != "" {
		q += " AND (contingent = ? OR collection = ?)"
		args = append(args, f.Contingent, domain.Corridors)
	}
	if f.Subject != "" {
		q += " AND subject = ?"
		args = append(args, f.Subject)
	}
	q += " ORDER BY id"
	if f.Limit > 0 {
		q += " LIMIT ?"
		args = append(args, f.Limit)
	}
	var rows []rejectionRow
	if err := s.db.WithContext(ctx).Raw(q, args...).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: rejections: %w", translate(err))
	}
	out := make([]domain.StoredRejection, len(rows))
	for i, r := range rows {
		out[i] = domain.StoredRejection{Seq: r.ID, Rejection: domain.Rejection{
			Subject: r.Subject, ChangeID: r.ChangeID, Key: domain.Key{Collection: r.Collection, ID: r.RecordID},
			Owner: domain.Owner{Unit: r.Unit, Contingent: r.Contingent}, Code: r.Code, Message: r.Message,
			Body: []byte(r.Body), ReceivedAt: r.ReceivedAt.UTC(),
		}}
	}
	return out, nil
}

// Records returns up to limit records of a collection after the id
// (ordered by id), restricted to unit and contingent when set.
func (s *Store) Records(ctx context.Context, collection, unit, contingent, after string, limit int) ([]domain.StoredRecord, error) {
	q := `SELECT ` + s.dialect.recordColumns() + ` FROM records WHERE collection = ? AND id > ?`
	args := []any{collection, after}
	if unit != "" {
		q += " AND unit = ?"
		args = append(args, unit)
	}
	if contingent != "" {
		q += " AND contingent = ?"
		args = append(args, contingent)
	}
	q += " ORDER BY id LIMIT ?"
	args = append(args, limit)
	rows, err := findRecordRows(s.db.WithContext(ctx), q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: records: %w", translate(err))
	}
	return storedRows(rows)
}

// EntryCounts counts the entries whose patrol_id is each of the logs.
func (s *Store) EntryCounts(ctx context.Context, logIDs []string) (map[string]int, error) {
	out := map[string]int{}
	if len(logIDs) == 0 {
		return out, nil
	}
	ref := `json_extract(state, '$.fields.patrol_id')`
	if s.dialect == Postgres {
		ref = `(state::jsonb -> 'fields' ->> 'patrol_id')`
	}
	var rows []struct {
		Ref string
		N   int
	}
	if err := s.db.WithContext(ctx).Raw(`SELECT `+ref+` AS ref, COUNT(*) AS n FROM records
		WHERE collection = ? AND deleted = ? AND `+ref+` IN ? GROUP BY 1`, domain.PatrolEntries, false, logIDs).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: entry counts: %w", translate(err))
	}
	for _, r := range rows {
		out[r.Ref] = r.N
	}
	return out, nil
}

// OpenConflictCounts counts the open conflicts of each record.
func (s *Store) OpenConflictCounts(ctx context.Context, collection string, ids []string) (map[string]int, error) {
	out := map[string]int{}
	if len(ids) == 0 {
		return out, nil
	}
	var rows []struct {
		RecordID string
		N        int
	}
	if err := s.db.WithContext(ctx).Raw(`SELECT record_id, COUNT(*) AS n FROM conflicts
		WHERE collection = ? AND status = 'open' AND record_id IN ? GROUP BY record_id`, collection, ids).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: conflict counts: %w", translate(err))
	}
	for _, r := range rows {
		out[r.RecordID] = r.N
	}
	return out, nil
}

// Conflict reads a conflict in the push transaction.
func (t *pushTx) Conflict(ctx context.Context, id string) (*domain.StoredConflict, error) {
	return conflictByID(t.tx.WithContext(ctx), id)
}

// EntriesOf returns the entries whose patrol_id is logID, by id.
func (s *Store) EntriesOf(ctx context.Context, logID string) ([]domain.StoredRecord, error) {
	ref := `json_extract(state, '$.fields.patrol_id')`
	if s.dialect == Postgres {
		ref = `(state::jsonb -> 'fields' ->> 'patrol_id')`
	}
	rows, err := findRecordRows(s.db.WithContext(ctx), `SELECT `+s.dialect.recordColumns()+` FROM records
		WHERE collection = ? AND `+ref+` = ? ORDER BY id`, domain.PatrolEntries, logID)
	if err != nil {
		return nil, fmt.Errorf("store: entries of %s: %w", logID, translate(err))
	}
	return storedRows(rows)
}

// storedRows decodes record rows.
func storedRows(rows []recordRow) ([]domain.StoredRecord, error) {
	out := make([]domain.StoredRecord, len(rows))
	for i := range rows {
		sr, err := rows[i].stored()
		if err != nil {
			return nil, err
		}
		out[i] = sr
	}
	return out, nil
}
