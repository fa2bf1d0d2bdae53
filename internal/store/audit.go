package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/fieldsync/fieldsync/internal/audit"
	"github.com/fieldsync/fieldsync/internal/domain"
)

// auditLockKey is the advisory lock that serialises appends to the audit
// chain on PostgreSQL. It is taken last in a transaction (after the record
// locks, which every writer takes first and in one order), so it cannot
// deadlock, and held only from the append to the commit.
const auditLockKey = 0x6669656c6473796e // "fieldsyn"

// versionDigest commits to one stored version: the change as applied and
// the state after it, exactly as the record_versions row holds them.
func versionDigest(change, state string) string {
	h := sha256.New()
	h.Write([]byte(change))
	h.Write([]byte{0})
	h.Write([]byte(state))
	return hex.EncodeToString(h.Sum(nil))
}

// auditVersion is one version an audit entry commits to.
type auditVersion struct {
	Collection string `json:"collection"`
	RecordID   string `json:"record_id"`
	ChangeID   string `json:"change_id"`
	Node       string `json:"node"`
	Dot        uint64 `json:"dot"`
	Digest     string `json:"digest"`
}

// auditDetail is the detail of a push, resolution or sign-off entry:
// every version it wrote (with a digest of the stored row), every change it
// refused, every conflict it closed.
type auditDetail struct {
	Versions    []auditVersion `json:"versions,omitempty"`
	Rejected    []string       `json:"rejected,omitempty"` // change ids
	Resolutions []string       `json:"resolutions,omitempty"`
	Settled     []string       `json:"settled,omitempty"` // collection/id/field
	Extra       map[string]any `json:"extra,omitempty"`
}

// appendAudit appends one entry to the chain in tx.
func appendAudit(tx *gorm.DB, dialect Dialect, ev domain.AuditEvent) error {
	if dialect == Postgres {
		if err := tx.Exec(`SELECT pg_advisory_xact_lock(?)`, int64(auditLockKey)).Error; err != nil {
			return fmt.Errorf("store: audit lock: %w", translate(err))
		}
	}
	var heads []struct {
		Seq  int64
		Hash string
	}
	if err := tx.Raw(`SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`).Find(&heads).Error; err != nil {
		return fmt.Errorf("store: audit head: %w", translate(err))
	}
	var prev *audit.Entry
	if len(heads) == 1 {
		h, err := audit.ParseHash(heads[0].Hash)
		if err != nil {
			return fmt.Errorf("store: audit head %d: %w", heads[0].Seq, err)
		}
		prev = &audit.Entry{Seq: heads[0].Seq, Hash: h}
	}
	e := audit.Next(prev, ev.At.UTC(), ev.Kind, ev.Actor, ev.Subject, ev.Detail)
	if err := tx.Exec(`INSERT INTO audit_log (seq, at, kind, actor, subject, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		e.Seq, e.At, e.Kind, e.Actor, e.Subject, string(e.Detail), e.Prev.String(), e.Hash.String()).Error; err != nil {
		return fmt.Errorf("store: audit append: %w", translate(err))
	}
	return nil
}

// AppendAudit appends one entry on its own (a key rotation by the command
// line, for one).
func (s *Store) AppendAudit(ctx context.Context, ev domain.AuditEvent) error {
	return translate(s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		return appendAudit(tx, s.dialect, ev)
	}))
}

func marshalDetail(d any) []byte {
	b, err := json.Marshal(d)
	if err != nil {
		// Only maps of strings and numbers reach here.
		panic(fmt.Sprintf("store: audit detail: %v", err))
	}
	return b
}

// AuditReport is what a verification of the audit trail found.
type AuditReport struct {
	Entries  int64      // entries read
	Head     audit.Hash // hash of the newest entry
	Versions int64      // record versions checked against the entries
	// Err is the first problem: a *audit.Mismatch naming the first entry
	// that does not fit the chain (or a checkpoint), or a version of the
	// history that differs from what its entry committed to or that no
	// entry commits to. nil when the trail verifies.
	Err error
}

// VerifyAudit reads the audit log in seq order and checks the chain, the
// given checkpoints, and every stored record version against the digest
// its entry committed to (a changed, deleted or inserted history row is
// found as surely as a changed audit row).
func (s *Store) VerifyAudit(ctx context.Context, checkpoints []audit.Checkpoint) (*AuditReport, error) {
	return verifyAudit(s.db.WithContext(ctx), checkpoints)
}

func verifyAudit(db *gorm.DB, checkpoints []audit.Checkpoint) (*AuditReport, error) {
	rep := &AuditReport{}
	var v audit.Verifier
	for _, cp := range checkpoints {
		v.Expect(cp)
	}
	committed := map[string]string{} // version key -> digest
	rows, err := db.Raw(`SELECT seq, at, kind, actor, subject, detail, prev_hash, hash FROM audit_log ORDER BY seq`).Rows()
	if err != nil {
		return nil, fmt.Errorf("store: read audit log: %w", translate(err))
	}
	defer rows.Close()
	for rows.Next() {
		var r struct {
			Seq                                      int64
			At                                       time.Time
			Kind, Actor, Subject, Detail, Prev, Hash string
		}
		if err := rows.Scan(&r.Seq, &r.At, &r.Kind, &r.Actor, &r.Subject, &r.Detail, &r.Prev, &r.Hash); err != nil {
			return nil, fmt.Errorf("store: read audit log: %w", translate(err))
		}
		rep.Entries++
		e := audit.Entry{Seq: r.Seq, At: r.At, Kind: r.Kind, Actor: r.Actor, Subject: r.Subject, Detail: []byte(r.Detail)}
		var perr error
		if e.Prev, perr = audit.ParseHash(r.Prev); perr == nil {
			e.Hash, perr = audit.ParseHash(r.Hash)
		}
		if perr != nil {
			rep.Err = &audit.Mismatch{Seq: r.Seq, Reason: "a stored hash is not 64 lower-case hex digits"}
			return rep, nil
		}
		if err := v.Add(e); err != nil {
			rep.Err = err
			return rep, nil
		}
		var d auditDetail
		if json.Unmarshal(e.Detail, &d) == nil {
			for _, x := range d.Versions {
				committed[versionKey(x.Collection, x.RecordID, x.Node, x.Dot)] = x.Digest
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read audit log: %w", translate(err))
	}
	for _, cp := range checkpoints {
		if err := v.Check(cp); err != nil {
			rep.Err = err
			return rep, nil
		}
	}
	_, rep.Head = v.Head()

	vrows, err := db.Raw(`SELECT collection, record_id, node, dot, change, state FROM record_versions ORDER BY seq`).Rows()
	if err != nil {
		return nil, fmt.Errorf("store: read history: %w", translate(err))
	}
	defer vrows.Close()
	for vrows.Next() {
		var col, rec, node, change, state string
		var dot int64
		if err := vrows.Scan(&col, &rec, &node, &dot, &change, &state); err != nil {
			return nil, fmt.Errorf("store: read history: %w", translate(err))
		}
		rep.Versions++
		k := versionKey(col, rec, node, uint64(dot))
		want, ok := committed[k]
		switch {
		case !ok:
			rep.Err = fmt.Errorf("%w: version %s of %s/%s is in no audit entry (inserted, or its entry removed)", ErrHistoryTampered, dotName(node, dot), col, rec)
			return rep, nil
		case want != versionDigest(change, state):
			rep.Err = fmt.Errorf("%w: version %s of %s/%s differs from what its audit entry committed to", ErrHistoryTampered, dotName(node, dot), col, rec)
			return rep, nil
		}
		delete(committed, k)
	}
	if err := vrows.Err(); err != nil {
		return nil, fmt.Errorf("store: read history: %w", translate(err))
	}
	for k := range committed {
		rep.Err = fmt.Errorf("%w: version %s is committed to by the audit trail but missing from the history", ErrHistoryTampered, k)
		return rep, nil
	}
	return rep, nil
}

// ErrHistoryTampered marks a record_versions row that does not match the
// audit trail.
var ErrHistoryTampered = errors.New("record history does not match the audit trail")

func versionKey(collection, record, node string, dot uint64) string {
	return fmt.Sprintf("%s/%s@%s:%d", collection, record, node, dot)
}

func dotName(node string, dot int64) string { return fmt.Sprintf("%s:%d", node, dot) }

// AuditHead returns the newest entry's seq and hash (0 and the zero hash
// for an empty log).
func (s *Store) AuditHead(ctx context.Context) (int64, audit.Hash, error) {
	var heads []struct {
		Seq  int64
		Hash string
	}
	if err := s.db.WithContext(ctx).Raw(`SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`).Find(&heads).Error; err != nil {
		return 0, audit.Hash{}, fmt.Errorf("store: audit head: %w", translate(err))
	}
	if len(heads) == 0 {
		return 0, audit.Hash{}, nil
	}
	h, err := audit.ParseHash(heads[0].Hash)
	return heads[0].Seq, h, err
}
