package domain

import (
	"context"
	"time"
)

// Device is an enrolled field device. Revoking it keeps the row and
// everything it synced; its tokens stop working.
type Device struct {
	ID         string
	Unit       string
	Contingent string
	Label      string
	EnrolledAt time.Time
	RevokedAt  *time.Time
	RevokedBy  string
}

// Revoked reports whether the device has been revoked.
func (d *Device) Revoked() bool { return d.RevokedAt != nil }

// EnrollmentCode is a one-time code an administrator hands to a device of a
// unit; only its hash is stored.
type EnrollmentCode struct {
	Hash       string
	Unit       string
	Contingent string
	CreatedBy  string
	CreatedAt  time.Time
	ExpiresAt  time.Time
}

// RefreshToken is the stored half of a refresh token: its jti, the family
// of rotations it belongs to, and its device.
type RefreshToken struct {
	JTI       string
	Family    string
	DeviceID  string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// Errors of the device store, as domain errors a client may see.
var (
	// ErrEnrollmentCode: the code is unknown, used or expired (one answer
	// for all three, so a code cannot be probed).
	ErrEnrollmentCode = &Error{Code: CodeUnauthorized, Message: "the enrolment code is not valid (unknown, already used or expired)"}
	// ErrRefreshReused: a refresh token was presented a second time; its
	// whole family is revoked.
	ErrRefreshReused = &Error{Code: CodeUnauthorized, Message: "the refresh token was already used; every token of its family is revoked, enrol again"}
	// ErrRefreshInvalid: unknown, expired or revoked refresh token, or a
	// revoked device.
	ErrRefreshInvalid = &Error{Code: CodeUnauthorized, Message: "the refresh token is not valid"}
)

// DeviceStore keeps devices, enrolment codes and refresh tokens.
type DeviceStore interface {
	AddEnrollmentCode(ctx context.Context, c EnrollmentCode) error
	// Enroll redeems an unused, unexpired code and creates the device and
	// its first refresh token in one transaction. A code redeems once, even
	// under concurrent attempts.
	Enroll(ctx context.Context, codeHash string, dev Device, first RefreshToken, now time.Time) (Device, error)
	// RotateRefresh marks jti used and stores next in its family, in one
	// transaction, and returns the token issued. A jti used less than grace
	// ago whose successor is still unused returns that successor instead (a
	// retry after a lost response). Any other reuse revokes the whole family
	// and returns ErrRefreshReused; an unknown, expired or revoked jti, or a
	// revoked device, returns ErrRefreshInvalid.
	RotateRefresh(ctx context.Context, jti string, next RefreshToken, now time.Time, grace time.Duration) (Device, RefreshToken, error)
	// RevokeDevice revokes a device and all its refresh tokens.
	RevokeDevice(ctx context.Context, id, by string, now time.Time) (Device, error)
	// Device returns a device, or nil.
	Device(ctx context.Context, id string) (*Device, error)
}

// RateCounter counts requests per key and window, across server instances.
type RateCounter interface {
	// Hit adds one request to key's window and returns the window's count.
	Hit(ctx context.Context, key string, window int64) (int64, error)
}

// CodeDeviceRevoked is the rejection code of changes a revoked device sent:
// held aside for review, never merged.
const CodeDeviceRevoked = "device_revoked"

// RevokedError is the verification failure of a revoked device's token. It
// carries the identity the token named, so what the device sends can be
// held aside under it.
type RevokedError struct {
	Identity Identity
}

func (e *RevokedError) Error() string { return CodeUnauthorized + ": this device has been revoked" }

// Unwrap makes a RevokedError read as an unauthorized domain error.
func (e *RevokedError) Unwrap() error {
	return &Error{Code: CodeUnauthorized, Message: "this device has been revoked"}
}
