package store

import (
	"context"
	"errors"

	"gorm.io/gorm"

	"github.com/fieldsync/fieldsync/internal/audit"
	"github.com/fieldsync/fieldsync/internal/domain"
)

// TamperedAudit runs mutate in a transaction, verifies the audit trail as
// that transaction sees it, and rolls the transaction back: a thousand
// tamperings of one database, each on the untouched original.
func (s *Store) TamperedAudit(ctx context.Context, mutate func(exec func(q string, args ...any) error) error, cps []audit.Checkpoint) (*AuditReport, error) {
	var rep *AuditReport
	errRollback := errors.New("rollback")
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := mutate(func(q string, args ...any) error { return tx.Exec(q, args...).Error }); err != nil {
			return err
		}
		r, err := verifyAudit(tx, cps)
		if err != nil {
			return err
		}
		rep = r
		return errRollback
	})
	if errors.Is(err, errRollback) {
		return rep, nil
	}
	return nil, err
}

// Statements of the push and pull paths, for the tests of their plans.
const (
	PgLoadRecords     = pgLoadRecords
	PgSeenChanges     = pgSeenChanges
	PgSettleConflicts = pgSettleConflicts

	SQLiteLoadRecords     = sqliteLoadRecords
	SQLiteSeenChanges     = sqliteSeenChanges
	SQLiteSettleConflicts = sqliteSettleConflicts
)

// SQLitePullSQL returns the page statement of a pull with filter f and the
// filter's parameters.
func SQLitePullSQL(f domain.PullFilter) (string, []any) {
	where, args := filterSQL(f)
	return sqlitePullSQL(where), args
}

// PgPullSQL returns the page and probe statements of a pull with filter f
// and the filter's parameters.
func PgPullSQL(f domain.PullFilter) (page, probe string, args []any) {
	where, args := filterSQL(f)
	page, probe = pgPullSQL(where)
	return page, probe, args
}

// TextArray is textArray, for its round-trip test.
var TextArray = textArray
