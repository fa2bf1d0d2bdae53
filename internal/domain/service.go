package domain

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"time"
)

// Syncer is the push and pull service the API calls.
type Syncer interface {
	// Push merges a batch of raw changes (each one JSON object of the push
	// body's "changes" array) as id, in one transaction. Per-change
	// problems are results, not errors; an error means nothing was written.
	Push(ctx context.Context, id Identity, changes []json.RawMessage) (*PushResponse, error)
	// Pull returns one page of the records id may see.
	Pull(ctx context.Context, id Identity, req PullRequest) (*PullResponse, error)
}

// SigningKey is one token signing key.
type SigningKey struct {
	KID       string
	Alg       string // "EdDSA"
	Public    ed25519.PublicKey
	Private   ed25519.PrivateKey // nil when only the public half is known
	CreatedAt time.Time
	RetiredAt *time.Time // retired keys verify but no longer sign
}

// KeyStore keeps the server's signing keys.
type KeyStore interface {
	SigningKeys(ctx context.Context) ([]SigningKey, error)
	AddSigningKey(ctx context.Context, k SigningKey) error
}

// CorridorStale reports whether a corridor's status is unverified at now:
// its verified_at is missing or older than its max_age_minutes (or
// defaultMaxAge when the record sets none).
func CorridorStale(verifiedAt, maxAgeMinutes []byte, now time.Time, defaultMaxAge time.Duration) bool {
	var s string
	if json.Unmarshal(verifiedAt, &s) != nil {
		return true
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return true
	}
	maxAge := defaultMaxAge
	var m int64
	if json.Unmarshal(maxAgeMinutes, &m) == nil && m > 0 {
		maxAge = time.Duration(m) * time.Minute
	}
	return now.Sub(t) > maxAge
}
