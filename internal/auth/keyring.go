package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/fieldsync/fieldsync/internal/domain"
)

// Defaults of Config.
const (
	DefaultIssuer       = "fieldsync"
	DefaultAudience     = "fieldsync-api"
	DefaultLeeway       = 30 * time.Second
	DefaultReloadOnMiss = 30 * time.Second
)

// Config sets what tokens the ring issues and accepts.
type Config struct {
	// Issuer is the iss claim written and required. Default "fieldsync".
	Issuer string
	// Audience is the aud claim written and required. Default "fieldsync-api".
	Audience string
	// Leeway is the clock skew tolerated on exp, nbf and iat. Zero means
	// DefaultLeeway; a negative value means none. Keep it small: it extends
	// the life of every token, including those of a revoked device.
	Leeway time.Duration
	// ReloadOnMiss is the least time between two key store reloads that a
	// token with an unknown kid may trigger, so that a key another server
	// instance just added verifies here too, while a flood of forged kids
	// costs at most one store read per interval. Zero means
	// DefaultReloadOnMiss; a negative value turns such reloads off.
	ReloadOnMiss time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Issuer == "" {
		c.Issuer = DefaultIssuer
	}
	if c.Audience == "" {
		c.Audience = DefaultAudience
	}
	switch {
	case c.Leeway == 0:
		c.Leeway = DefaultLeeway
	case c.Leeway < 0:
		c.Leeway = 0
	}
	if c.ReloadOnMiss == 0 {
		c.ReloadOnMiss = DefaultReloadOnMiss
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Keyring holds the server's signing keys, loaded from a domain.KeyStore and
// cached: it signs with the newest key that is not retired and verifies with
// whichever key a token's kid names. It is safe for concurrent use.
type Keyring struct {
	store  domain.KeyStore
	cfg    Config
	parser *jwt.Parser

	// keys is swapped whole on reload so that Verify, on every request,
	// reads it without a lock.
	keys atomic.Pointer[keySet]

	// reloadMu serialises reloads; lastReload is when the last one started.
	reloadMu   sync.Mutex
	lastReload time.Time
}

// keySet is one immutable load of the key store.
type keySet struct {
	byKID  map[string]*domain.SigningKey
	newest []*domain.SigningKey // newest first: the signing candidates
	jwks   []byte
}

// NewKeyring returns a ring over store, loaded once. It fails when the store
// cannot be read or holds a key the ring cannot use; a store without keys
// is fine (see EnsureSigningKey).
func NewKeyring(ctx context.Context, store domain.KeyStore, cfg Config) (*Keyring, error) {
	k := &Keyring{store: store, cfg: cfg.withDefaults()}
	k.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{AlgEdDSA}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(k.cfg.Issuer),
		jwt.WithAudience(k.cfg.Audience),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(k.cfg.Leeway),
		jwt.WithTimeFunc(k.cfg.Now),
		jwt.WithStrictDecoding(),
	)
	if err := k.Reload(ctx); err != nil {
		return nil, err
	}
	return k, nil
}

// Reload reads the key store again: keys added or retired since (by a key
// rotation, or by another server instance) take effect. On error the ring
// keeps the keys it had.
func (k *Keyring) Reload(ctx context.Context) error {
	k.reloadMu.Lock()
	defer k.reloadMu.Unlock()
	return k.reloadLocked(ctx)
}

func (k *Keyring) reloadLocked(ctx context.Context) error {
	k.lastReload = k.cfg.Now()
	stored, err := k.store.SigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("auth: load signing keys: %w", err)
	}
	set := &keySet{byKID: make(map[string]*domain.SigningKey, len(stored))}
	for i := range stored {
		key := stored[i]
		if err := checkKey(key); err != nil {
			return err
		}
		if _, dup := set.byKID[key.KID]; dup {
			return fmt.Errorf("auth: two signing keys with kid %q", key.KID)
		}
		set.byKID[key.KID] = &key
		set.newest = append(set.newest, &key)
	}
	slices.SortFunc(set.newest, func(a, b *domain.SigningKey) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.KID, a.KID) // any fixed order will do
	})
	if set.jwks, err = encodeJWKS(set.newest); err != nil {
		return err
	}
	k.keys.Store(set)
	return nil
}

// reloadOnMiss reloads the store for a token whose kid the ring does not
// know, at most once per ReloadOnMiss and never waiting for a reload that
// is already running: Verify must stay cheap for forged tokens.
func (k *Keyring) reloadOnMiss() {
	if k.cfg.ReloadOnMiss < 0 || !k.reloadMu.TryLock() {
		return
	}
	defer k.reloadMu.Unlock()
	if k.cfg.Now().Sub(k.lastReload) < k.cfg.ReloadOnMiss {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = k.reloadLocked(ctx) // on failure the old keys stay; the token fails as unknown
}

// signer returns the key to sign with at now: the newest one that has a
// private half and is not retired.
func (k *Keyring) signer(now time.Time) (*domain.SigningKey, error) {
	for _, key := range k.keys.Load().newest {
		if key.Private != nil && !retired(key, now) {
			return key, nil
		}
	}
	return nil, ErrNoSigningKey
}

// ErrNoSigningKey is returned by Issue when the ring holds no key it may
// sign with.
var ErrNoSigningKey = errors.New("auth: no signing key (generate one with EnsureSigningKey or Rotate)")

// CanSign reports whether the ring holds a key it may sign with now.
func (k *Keyring) CanSign() bool {
	_, err := k.signer(k.cfg.Now())
	return err == nil
}

// EnsureSigningKey adds a new key to the store when the ring has none it
// may sign with (a fresh installation, or every key retired).
func (k *Keyring) EnsureSigningKey(ctx context.Context) error {
	if k.CanSign() {
		return nil
	}
	_, err := k.Rotate(ctx)
	return err
}

// Rotate generates a new signing key, adds it to the store and reloads:
// new tokens are signed with it, and tokens signed with older keys still
// verify until those keys are removed from the store. It returns the new
// key's kid.
func (k *Keyring) Rotate(ctx context.Context) (string, error) {
	key, err := GenerateKey(k.cfg.Now())
	if err != nil {
		return "", err
	}
	if err := k.store.AddSigningKey(ctx, key); err != nil {
		return "", fmt.Errorf("auth: store signing key: %w", err)
	}
	if err := k.Reload(ctx); err != nil {
		return "", err
	}
	return key.KID, nil
}

// JWKS returns the public key set, RFC 7517 with RFC 8037 OKP keys, newest
// first. Retired keys are listed: tokens they signed still verify.
func (k *Keyring) JWKS() ([]byte, error) {
	return slices.Clone(k.keys.Load().jwks), nil // callers may not share the cached bytes
}
