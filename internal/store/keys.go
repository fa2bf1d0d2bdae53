package store

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/fieldsync/fieldsync/internal/domain"
)

type keyRow struct {
	KID        string `gorm:"column:kid"`
	Alg        string
	PublicKey  []byte
	PrivateKey []byte
	CreatedAt  time.Time
	RetiredAt  *time.Time
}

// SigningKeys returns every stored token signing key, oldest first.
func (s *Store) SigningKeys(ctx context.Context) ([]domain.SigningKey, error) {
	var rows []keyRow
	if err := s.db.WithContext(ctx).Raw(`SELECT kid, alg, public_key, private_key, created_at, retired_at
		FROM signing_keys ORDER BY created_at, kid`).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: signing keys: %w", translate(err))
	}
	out := make([]domain.SigningKey, len(rows))
	for i, r := range rows {
		out[i] = domain.SigningKey{KID: r.KID, Alg: r.Alg, Public: ed25519.PublicKey(r.PublicKey), CreatedAt: r.CreatedAt.UTC(), RetiredAt: r.RetiredAt}
		if len(r.PrivateKey) > 0 {
			out[i].Private = ed25519.PrivateKey(r.PrivateKey)
		}
	}
	return out, nil
}

// AddSigningKey stores a new signing key.
func (s *Store) AddSigningKey(ctx context.Context, k domain.SigningKey) error {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec(`INSERT INTO signing_keys (kid, alg, public_key, private_key, created_at, retired_at)
			VALUES (?, ?, ?, ?, ?, ?)`, k.KID, k.Alg, []byte(k.Public), []byte(k.Private), k.CreatedAt.UTC(), k.RetiredAt).Error; err != nil {
			return translate(err)
		}
		return appendAudit(tx, s.dialect, domain.AuditEvent{Kind: "key_rotate", Actor: "keyring", Subject: k.KID, At: k.CreatedAt,
			Detail: marshalDetail(map[string]string{"alg": k.Alg, "public_key": hex.EncodeToString(k.Public)})})
	})
	if err != nil {
		return fmt.Errorf("store: add signing key: %w", err)
	}
	return nil
}

// PruneSeen forgets change ids first seen before cutoff and returns how many
// it removed. A device retrying a change older than the retention would get
// it merged again as new; the retention must outlast any device's time
// offline (90 days by default).
func (s *Store) PruneSeen(ctx context.Context, cutoff time.Time) (int64, error) {
	res := s.db.WithContext(ctx).Exec(`DELETE FROM seen_changes WHERE seen_at < ?`, cutoff.UTC())
	if res.Error != nil {
		return 0, fmt.Errorf("store: prune seen changes: %w", translate(res.Error))
	}
	return res.RowsAffected, nil
}

// Hit counts one request of key in window and returns the window's count,
// in one statement, so concurrent instances never lose a count.
func (s *Store) Hit(ctx context.Context, key string, window int64) (int64, error) {
	var n []int64
	if err := s.db.WithContext(ctx).Raw(`INSERT INTO rate_limits (key, window_start, count) VALUES (?, ?, 1)
		ON CONFLICT (key, window_start) DO UPDATE SET count = rate_limits.count + 1
		RETURNING count`, key, window).Find(&n).Error; err != nil {
		return 0, fmt.Errorf("store: rate limit: %w", translate(err))
	}
	if len(n) != 1 {
		return 0, fmt.Errorf("store: rate limit: no count returned")
	}
	return n[0], nil
}

// PruneRateLimits forgets windows that started before window.
func (s *Store) PruneRateLimits(ctx context.Context, window int64) error {
	if err := s.db.WithContext(ctx).Exec(`DELETE FROM rate_limits WHERE window_start < ?`, window).Error; err != nil {
		return fmt.Errorf("store: prune rate limits: %w", translate(err))
	}
	return nil
}
