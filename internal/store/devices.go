package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/fieldsync/fieldsync/internal/domain"
)

var _ domain.DeviceStore = (*Store)(nil)

type deviceRow struct {
	ID         string
	Unit       string
	Contingent string
	Label      string
	EnrolledAt time.Time
	RevokedAt  *time.Time
	RevokedBy  string
}

func (r *deviceRow) device() domain.Device {
	d := domain.Device{ID: r.ID, Unit: r.Unit, Contingent: r.Contingent, Label: r.Label, EnrolledAt: r.EnrolledAt.UTC(), RevokedBy: r.RevokedBy}
	if r.RevokedAt != nil {
		t := r.RevokedAt.UTC()
		d.RevokedAt = &t
	}
	return d
}

// AddEnrollmentCode stores a new one-time code (its hash).
func (s *Store) AddEnrollmentCode(ctx context.Context, c domain.EnrollmentCode) error {
	if err := s.db.WithContext(ctx).Exec(`INSERT INTO enrollment_codes (code_hash, unit, contingent, created_by, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?)`, c.Hash, c.Unit, c.Contingent, c.CreatedBy, c.CreatedAt.UTC(), c.ExpiresAt.UTC()).Error; err != nil {
		return fmt.Errorf("store: add enrolment code: %w", translate(err))
	}
	return nil
}

// Enroll redeems a code and creates the device and its first refresh token.
// The conditional UPDATE … RETURNING is what makes a code redeem once: of
// two concurrent attempts, one updates the row and the other finds it used.
func (s *Store) Enroll(ctx context.Context, codeHash string, dev domain.Device, first domain.RefreshToken, now time.Time) (domain.Device, error) {
	var out domain.Device
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var codes []struct {
			Unit       string
			Contingent string
		}
		if err := tx.Raw(`UPDATE enrollment_codes SET used_at = ?, device_id = ?
			WHERE code_hash = ? AND used_at IS NULL AND expires_at > ?
			RETURNING unit, contingent`, now.UTC(), dev.ID, codeHash, now.UTC()).Find(&codes).Error; err != nil {
			return translate(err)
		}
		if len(codes) != 1 {
			return domain.ErrEnrollmentCode
		}
		dev.Unit, dev.Contingent, dev.EnrolledAt = codes[0].Unit, codes[0].Contingent, now.UTC()
		if err := tx.Exec(`INSERT INTO devices (id, unit, contingent, label, enrolled_at) VALUES (?, ?, ?, ?, ?)`,
			dev.ID, dev.Unit, dev.Contingent, dev.Label, dev.EnrolledAt).Error; err != nil {
			return translate(err)
		}
		if err := insertRefresh(tx, first); err != nil {
			return err
		}
		out = dev
		return appendAudit(tx, s.dialect, domain.AuditEvent{Kind: "enroll", Actor: dev.ID, Subject: dev.ID, At: now,
			Detail: marshalDetail(map[string]string{"unit": dev.Unit, "contingent": dev.Contingent})})
	})
	if err != nil {
		var de *domain.Error
		if errors.As(err, &de) {
			return domain.Device{}, err
		}
		return domain.Device{}, fmt.Errorf("store: enroll: %w", err)
	}
	return out, nil
}

func insertRefresh(tx *gorm.DB, t domain.RefreshToken) error {
	if err := tx.Exec(`INSERT INTO refresh_tokens (jti, family, device_id, issued_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
		t.JTI, t.Family, t.DeviceID, t.IssuedAt.UTC(), t.ExpiresAt.UTC()).Error; err != nil {
		return fmt.Errorf("store: refresh token: %w", translate(err))
	}
	return nil
}

// RotateRefresh spends a refresh token and stores the next one of its family.
func (s *Store) RotateRefresh(ctx context.Context, jti string, next domain.RefreshToken, now time.Time, grace time.Duration) (domain.Device, domain.RefreshToken, error) {
	var out domain.Device
	var issued domain.RefreshToken
	var outcome error
	type tokRow struct {
		JTI        string `gorm:"column:jti"`
		Family     string
		DeviceID   string
		IssuedAt   time.Time
		ExpiresAt  time.Time
		UsedAt     *time.Time
		RevokedAt  *time.Time
		ReplacedBy string
	}
	lock := ""
	if s.dialect == Postgres {
		lock = " FOR UPDATE"
	}
	load := func(tx *gorm.DB, id string) (*tokRow, error) {
		var toks []tokRow
		if err := tx.Raw(`SELECT jti, family, device_id, issued_at, expires_at, used_at, revoked_at, replaced_by
			FROM refresh_tokens WHERE jti = ?`+lock, id).Find(&toks).Error; err != nil {
			return nil, translate(err)
		}
		if len(toks) != 1 {
			return nil, nil
		}
		return &toks[0], nil
	}
	revokeFamily := func(tx *gorm.DB, family string) error {
		return tx.Exec(`UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL`, now.UTC(), family).Error
	}
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		tok, err := load(tx, jti)
		if err != nil {
			return err
		}
		if tok == nil || tok.RevokedAt != nil || !tok.ExpiresAt.After(now) {
			outcome = domain.ErrRefreshInvalid
			return nil
		}
		var devs []deviceRow
		if err := tx.Raw(`SELECT id, unit, contingent, label, enrolled_at, revoked_at, revoked_by FROM devices WHERE id = ?`, tok.DeviceID).Find(&devs).Error; err != nil {
			return translate(err)
		}
		if len(devs) != 1 || devs[0].RevokedAt != nil {
			outcome = domain.ErrRefreshInvalid
			return nil
		}
		out = devs[0].device()
		if tok.UsedAt != nil {
			// Spent already. A retry shortly after, whose answer never
			// arrived, gets the same successor; anything else means a copy
			// exists elsewhere: revoke the family and refuse.
			if tok.ReplacedBy != "" && now.Sub(*tok.UsedAt) <= grace {
				succ, err := load(tx, tok.ReplacedBy)
				if err != nil {
					return err
				}
				if succ != nil && succ.UsedAt == nil && succ.RevokedAt == nil {
					issued = domain.RefreshToken{JTI: succ.JTI, Family: succ.Family, DeviceID: succ.DeviceID, IssuedAt: succ.IssuedAt.UTC(), ExpiresAt: succ.ExpiresAt.UTC()}
					return nil
				}
			}
			outcome = domain.ErrRefreshReused
			return revokeFamily(tx, tok.Family)
		}
		res := tx.Exec(`UPDATE refresh_tokens SET used_at = ?, replaced_by = ? WHERE jti = ? AND used_at IS NULL`, now.UTC(), next.JTI, jti)
		if res.Error != nil {
			return translate(res.Error)
		}
		if res.RowsAffected != 1 {
			outcome = domain.ErrRefreshReused
			return revokeFamily(tx, tok.Family)
		}
		next.Family, next.DeviceID = tok.Family, tok.DeviceID
		if err := insertRefresh(tx, next); err != nil {
			return err
		}
		issued = next
		return nil
	})
	if err != nil {
		return domain.Device{}, domain.RefreshToken{}, fmt.Errorf("store: rotate refresh token: %w", translate(err))
	}
	if outcome != nil {
		return domain.Device{}, domain.RefreshToken{}, outcome
	}
	return out, issued, nil
}

// RevokeDevice revokes a device and every refresh token it holds.
func (s *Store) RevokeDevice(ctx context.Context, id, by string, now time.Time) (domain.Device, error) {
	var out domain.Device
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		// A device that was never enrolled (its token minted by an
		// administrator) gets a row, revoked, so its tokens fail too.
		if err := tx.Exec(`INSERT INTO devices (id, unit, contingent, enrolled_at, revoked_at, revoked_by) VALUES (?, '', '', ?, ?, ?)
			ON CONFLICT (id) DO NOTHING`, id, now.UTC(), now.UTC(), by).Error; err != nil {
			return translate(err)
		}
		if err := tx.Exec(`UPDATE devices SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL`, now.UTC(), by, id).Error; err != nil {
			return translate(err)
		}
		if err := tx.Exec(`UPDATE refresh_tokens SET revoked_at = ? WHERE device_id = ? AND revoked_at IS NULL`, now.UTC(), id).Error; err != nil {
			return translate(err)
		}
		var devs []deviceRow
		if err := tx.Raw(`SELECT id, unit, contingent, label, enrolled_at, revoked_at, revoked_by FROM devices WHERE id = ?`, id).Find(&devs).Error; err != nil {
			return translate(err)
		}
		if len(devs) != 1 {
			return domain.Errorf(domain.CodeNotFound, "no device %q", id)
		}
		out = devs[0].device()
		return appendAudit(tx, s.dialect, domain.AuditEvent{Kind: "revoke", Actor: by, Subject: id, At: now,
			Detail: marshalDetail(map[string]string{"unit": out.Unit, "contingent": out.Contingent})})
	})
	if err != nil {
		var de *domain.Error
		if errors.As(err, &de) {
			return domain.Device{}, err
		}
		return domain.Device{}, fmt.Errorf("store: revoke device: %w", err)
	}
	return out, nil
}

// Device returns a device, or nil when there is none.
func (s *Store) Device(ctx context.Context, id string) (*domain.Device, error) {
	var devs []deviceRow
	if err := s.db.WithContext(ctx).Raw(`SELECT id, unit, contingent, label, enrolled_at, revoked_at, revoked_by FROM devices WHERE id = ?`, id).Find(&devs).Error; err != nil {
		return nil, fmt.Errorf("store: device: %w", translate(err))
	}
	if len(devs) == 0 {
		return nil, nil
	}
	d := devs[0].device()
	return &d, nil
}
