package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// TypeRefresh is the typ claim of refresh tokens: Verify refuses them, so a
// refresh token never acts as an access token, and the refresh route
// refuses access tokens.
const TypeRefresh = "refresh"

// refreshClaims are the claims of a refresh token.
type refreshClaims struct {
	Family string `json:"fam"`
	Type   string `json:"typ"`
	jwt.RegisteredClaims
}

// Devices enrols devices, rotates their refresh tokens, revokes them, and
// verifies access tokens against revocation. It is safe for concurrent use.
type Devices struct {
	ring       *Keyring
	store      domain.DeviceStore
	accessTTL  time.Duration
	refreshTTL time.Duration
	now        func() time.Time

	// Revocation answers are cached this long per device, so a revoked
	// device fails on every instance within that time without a database
	// read on every request.
	cacheTTL time.Duration
	mu       sync.Mutex
	cache    map[string]revocationEntry

	external   *External
	retryGrace time.Duration
}

type revocationEntry struct {
	revoked bool
	at      time.Time
}

// DevicesConfig tunes Devices.
type DevicesConfig struct {
	AccessTTL  time.Duration // default 15 min
	RefreshTTL time.Duration // default 60 days: refresh tokens outlive weeks offline
	CacheTTL   time.Duration // default 500 ms
	// RetryGrace is how long after a refresh the same refresh token may be
	// presented again and get the same successor (a response lost on a cut
	// connection) instead of revoking the family. Default 2 min.
	RetryGrace time.Duration
	Now        func() time.Time
	// External verifies tokens of configured external issuers (nil: none).
	External *External
}

// NewDevices returns the device service.
func NewDevices(ring *Keyring, store domain.DeviceStore, cfg DevicesConfig) *Devices {
	if cfg.AccessTTL <= 0 {
		cfg.AccessTTL = 15 * time.Minute
	}
	if cfg.RefreshTTL <= 0 {
		cfg.RefreshTTL = 60 * 24 * time.Hour
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = 500 * time.Millisecond
	}
	if cfg.RetryGrace <= 0 {
		cfg.RetryGrace = 2 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Devices{ring: ring, store: store, accessTTL: cfg.AccessTTL, refreshTTL: cfg.RefreshTTL,
		cacheTTL: cfg.CacheTTL, now: cfg.Now, cache: map[string]revocationEntry{}, external: cfg.External, retryGrace: cfg.RetryGrace}
}

// Tokens is what a device receives at enrolment and at each refresh.
type Tokens struct {
	DeviceID         string
	Unit             string
	Contingent       string
	AccessToken      string
	AccessExpiresAt  time.Time
	RefreshToken     string
	RefreshExpiresAt time.Time
}

// codeAlphabet is Crockford's base32: no I, L, O or U to misread.
const codeAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// NewEnrollmentCode creates a one-time code for a device of unit, valid for
// ttl, and returns it (XXXX-XXXX-XXXX). Only its hash is stored.
func (d *Devices) NewEnrollmentCode(ctx context.Context, unit, contingent, by string, ttl time.Duration) (string, error) {
	if unit == "" || ttl <= 0 {
		return "", errors.New("auth: an enrolment code needs a unit and a positive lifetime")
	}
	var raw [12]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	var b strings.Builder
	for i, c := range raw {
		if i > 0 && i%4 == 0 {
			b.WriteByte('-')
		}
		b.WriteByte(codeAlphabet[int(c)%len(codeAlphabet)])
	}
	code := b.String()
	now := d.now().UTC()
	err := d.store.AddEnrollmentCode(ctx, domain.EnrollmentCode{
		Hash: hashCode(code), Unit: unit, Contingent: contingent, CreatedBy: by, CreatedAt: now, ExpiresAt: now.Add(ttl),
	})
	if err != nil {
		return "", err
	}
	return code, nil
}

// hashCode normalises a code (case, dashes, spaces) and hashes it.
func hashCode(code string) string {
	norm := strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(code))
	sum := sha256.Sum256([]byte(norm))
	return hex.EncodeToString(sum[:])
}

// Enroll exchanges a one-time code for a new device id and its tokens.
func (d *Devices) Enroll(ctx context.Context, code, label string) (Tokens, error) {
	if len(code) == 0 || len(code) > 64 || len(label) > 128 {
		return Tokens{}, domain.ErrEnrollmentCode
	}
	now := d.now().UTC()
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Tokens{}, err
	}
	devID := "dev-" + strings.ToLower(hex.EncodeToString(id[:]))
	first := domain.RefreshToken{JTI: uuid.NewString(), Family: uuid.NewString(), DeviceID: devID, IssuedAt: now, ExpiresAt: now.Add(d.refreshTTL)}
	dev, err := d.store.Enroll(ctx, hashCode(code), domain.Device{ID: devID, Label: label}, first, now)
	if err != nil {
		return Tokens{}, err
	}
	return d.tokens(dev, first)
}

// Refresh spends a refresh token and returns a new access token and the next
// refresh token of its family. A token presented twice revokes its family.
func (d *Devices) Refresh(ctx context.Context, token string) (Tokens, error) {
	c, err := d.verifyRefresh(token)
	if err != nil {
		return Tokens{}, err
	}
	now := d.now().UTC()
	next := domain.RefreshToken{JTI: uuid.NewString(), IssuedAt: now, ExpiresAt: now.Add(d.refreshTTL)}
	dev, issued, err := d.store.RotateRefresh(ctx, c.ID, next, now, d.retryGrace)
	if err != nil {
		return Tokens{}, err
	}
	if dev.ID != c.Subject || issued.Family != c.Family {
		return Tokens{}, domain.ErrRefreshInvalid
	}
	// A retried refresh gets the successor it was first given: Ed25519
	// signatures are deterministic, so re-signing the same claims with the
	// same key gives the very same token.
	return d.tokens(dev, issued)
}

func (d *Devices) tokens(dev domain.Device, refresh domain.RefreshToken) (Tokens, error) {
	access, err := d.ring.Issue(domain.Identity{Subject: dev.ID, Role: domain.RoleDevice, Unit: dev.Unit, Contingent: dev.Contingent}, d.accessTTL)
	if err != nil {
		return Tokens{}, err
	}
	rt, err := d.issueRefresh(refresh)
	if err != nil {
		return Tokens{}, err
	}
	return Tokens{
		DeviceID: dev.ID, Unit: dev.Unit, Contingent: dev.Contingent,
		AccessToken: access, AccessExpiresAt: d.now().UTC().Add(d.accessTTL),
		RefreshToken: rt, RefreshExpiresAt: refresh.ExpiresAt,
	}, nil
}

func (d *Devices) issueRefresh(t domain.RefreshToken) (string, error) {
	key, err := d.ring.signer(d.ring.cfg.Now())
	if err != nil {
		return "", err
	}
	claims := refreshClaims{
		Family: t.Family,
		Type:   TypeRefresh,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: d.ring.cfg.Issuer, Subject: t.DeviceID, Audience: jwt.ClaimStrings{d.ring.cfg.Audience},
			ExpiresAt: jwt.NewNumericDate(t.ExpiresAt), NotBefore: jwt.NewNumericDate(t.IssuedAt),
			IssuedAt: jwt.NewNumericDate(t.IssuedAt), ID: t.JTI,
		},
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = key.KID
	s, err := tok.SignedString(key.Private)
	if err != nil {
		return "", fmt.Errorf("auth: sign refresh token: %w", err)
	}
	return s, nil
}

func (d *Devices) verifyRefresh(token string) (refreshClaims, error) {
	var c refreshClaims
	if token == "" || len(token) > MaxTokenLen {
		return c, domain.ErrRefreshInvalid
	}
	if _, err := d.ring.parser.ParseWithClaims(token, &c, d.ring.keyFor); err != nil {
		return refreshClaims{}, domain.ErrRefreshInvalid
	}
	if c.Type != TypeRefresh || c.ID == "" || c.Family == "" || c.Subject == "" {
		return refreshClaims{}, domain.ErrRefreshInvalid
	}
	return c, nil
}

// Revoke revokes a device: an administrator may revoke any, a supervisor
// those of its contingent (all, for a supervisor of every contingent). The
// device's tokens fail within the revocation cache time on every instance;
// what it already synced stays.
func (d *Devices) Revoke(ctx context.Context, actor domain.Identity, deviceID string) (domain.Device, error) {
	dev, err := d.store.Device(ctx, deviceID)
	if err != nil {
		return domain.Device{}, err
	}
	allowed := actor.Role == domain.RoleAdmin ||
		actor.Role == domain.RoleSupervisor && dev != nil && (actor.Contingent == "" || actor.Contingent == dev.Contingent)
	if !allowed {
		// The same answer whether or not the device exists.
		return domain.Device{}, domain.Errorf(domain.CodeNotFound, "no device %q in your scope", deviceID)
	}
	if dev == nil && !vvValidDevice(deviceID) {
		return domain.Device{}, domain.Errorf(domain.CodeNotFound, "no device %q in your scope", deviceID)
	}
	// An administrator may revoke a device that was never enrolled (a token
	// minted with "fieldsync token"): it is recorded as revoked.
	out, err := d.store.RevokeDevice(ctx, deviceID, actor.Subject, d.now().UTC())
	if err != nil {
		return domain.Device{}, err
	}
	d.mu.Lock()
	d.cache[deviceID] = revocationEntry{revoked: true, at: d.now()}
	d.mu.Unlock()
	return out, nil
}

func vvValidDevice(id string) bool { return vv.ValidNodeID(id) && vv.NodeID(id) != vv.Server }

// Verify checks an access token (Keyring.Verify) and, for a device, that it
// is not revoked. Devices that were never enrolled (tokens an administrator
// minted with "fieldsync token") have no row until an administrator revokes
// them.
func (d *Devices) Verify(token string) (domain.Identity, error) {
	if d.external != nil {
		// Tokens of a configured external issuer go to its keys; every
		// other token must be fieldsync's own.
		if iss, err := unverifiedIssuer(token); err == nil && iss != d.ring.cfg.Issuer && d.external.Knows(iss) {
			return d.external.Verify(token)
		}
	}
	id, err := d.ring.Verify(token)
	if err != nil || id.Role != domain.RoleDevice {
		return id, err
	}
	revoked, err := d.revoked(id.Subject)
	if err != nil {
		return domain.Identity{}, err
	}
	if revoked {
		return domain.Identity{}, &domain.RevokedError{Identity: id}
	}
	return id, nil
}

func (d *Devices) revoked(deviceID string) (bool, error) {
	now := d.now()
	d.mu.Lock()
	e, ok := d.cache[deviceID]
	d.mu.Unlock()
	if ok && now.Sub(e.at) < d.cacheTTL {
		return e.revoked, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	dev, err := d.store.Device(ctx, deviceID)
	if err != nil {
		return false, err
	}
	r := dev != nil && dev.Revoked()
	d.mu.Lock()
	if len(d.cache) > 100_000 {
		d.cache = map[string]revocationEntry{} // bound memory under a flood of device ids
	}
	d.cache[deviceID] = revocationEntry{revoked: r, at: now}
	d.mu.Unlock()
	return r, nil
}
