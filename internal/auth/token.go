package auth

import (
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// TypeAccess is the typ claim of access tokens. Refresh tokens (a later
// issue) carry another typ, so that one can never stand in for the other.
const TypeAccess = "access"

// MaxTokenLen bounds the tokens Verify parses; fieldsync's own tokens are a
// few hundred bytes, and parsing costs base64 and JSON work.
const MaxTokenLen = 8 << 10

// maxClaimLen bounds sub, unit and contingent: they end up in logs, history
// rows and scope comparisons.
const maxClaimLen = 256

// Claims are the claims of a fieldsync access token: the registered ones
// (iss, sub, aud, exp, nbf, iat, jti) and fieldsync's own.
type Claims struct {
	Role       string `json:"role"`
	Unit       string `json:"unit,omitempty"`
	Contingent string `json:"contingent,omitempty"`
	Type       string `json:"typ"`
	// Observe lets a partner token post corridor observations.
	Observe bool `json:"obs,omitempty"`
	jwt.RegisteredClaims
}

// Issue signs an access token for id, valid from now for ttl, with a fresh
// jti (id.TokenID is ignored). It refuses an identity Verify would reject,
// so the server never hands out a token it will not take back.
func (k *Keyring) Issue(id domain.Identity, ttl time.Duration) (string, error) {
	if ttl <= 0 {
		return "", fmt.Errorf("auth: token lifetime %v is not positive", ttl)
	}
	if err := checkIdentity(id); err != nil {
		return "", fmt.Errorf("auth: cannot issue a token: %s", err.Message)
	}
	now := k.cfg.Now()
	key, err := k.signer(now)
	if err != nil {
		return "", err
	}
	claims := Claims{
		Role:       string(id.Role),
		Unit:       id.Unit,
		Contingent: id.Contingent,
		Type:       TypeAccess,
		Observe:    id.Observes,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    k.cfg.Issuer,
			Subject:   id.Subject,
			Audience:  jwt.ClaimStrings{k.cfg.Audience},
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        uuid.NewString(),
		},
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = key.KID
	s, err := tok.SignedString(key.Private)
	if err != nil {
		return "", fmt.Errorf("auth: sign token: %w", err)
	}
	return s, nil
}

// Verify checks an access token and returns the identity it carries. Any
// failure is a *domain.Error with code domain.CodeUnauthorized; the message
// names the class of failure (expired, not yet valid, not valid) and never
// the token.
func (k *Keyring) Verify(token string) (domain.Identity, error) {
	if token == "" || len(token) > MaxTokenLen {
		return domain.Identity{}, errInvalid()
	}
	var c Claims
	if _, err := k.parser.ParseWithClaims(token, &c, k.keyFor); err != nil {
		// c may be partly filled even on failure: never read it here.
		switch {
		case errors.Is(err, jwt.ErrTokenExpired):
			return domain.Identity{}, unauthorized("the token has expired")
		case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
			return domain.Identity{}, unauthorized("the token is not valid yet")
		}
		return domain.Identity{}, errInvalid()
	}
	if c.Type != TypeAccess {
		return domain.Identity{}, unauthorized("the token is not an access token")
	}
	id := domain.Identity{
		Subject:    c.Subject,
		Role:       domain.Role(c.Role),
		Unit:       c.Unit,
		Contingent: c.Contingent,
		TokenID:    c.ID,
		Observes:   c.Observe,
	}
	if err := checkIdentity(id); err != nil {
		return domain.Identity{}, err
	}
	return id, nil
}

// keyFor is the parser's keyfunc: the public key the token's kid names. It
// returns ed25519.PublicKey by value, the type golang-jwt's EdDSA verifier
// requires (a pointer fails with ErrInvalidKeyType).
func (k *Keyring) keyFor(t *jwt.Token) (any, error) {
	kid, ok := t.Header["kid"].(string)
	if !ok || kid == "" {
		return nil, errors.New("token has no kid")
	}
	key := k.keys.Load().byKID[kid]
	if key == nil {
		k.reloadOnMiss()
		if key = k.keys.Load().byKID[kid]; key == nil {
			return nil, errors.New("token names an unknown kid")
		}
	}
	return key.Public, nil
}

// checkIdentity checks the claims fieldsync relies on. A device's subject
// becomes its version-vector node id, so it must be a valid node id and
// never the server's own node: a device token with sub "srv" would write as
// the server.
func checkIdentity(id domain.Identity) *domain.Error {
	switch {
	case !id.Role.Valid():
		return unauthorized("the token has no valid role")
	case id.Subject == "" || !printable(id.Subject):
		return unauthorized("the token has no valid subject")
	case !printable(id.Unit) || !printable(id.Contingent):
		return unauthorized("the token's unit or contingent is not valid")
	}
	if id.Observes && id.Role != domain.RolePartner {
		return unauthorized("only partner tokens may carry obs")
	}
	if id.Pushes() {
		if !vv.ValidNodeID(id.Subject) || vv.NodeID(id.Subject) == vv.Server {
			return unauthorized("the token's subject is not a valid device id")
		}
		if id.Role == domain.RoleDevice && id.Unit == "" {
			return unauthorized("a device token must name its unit")
		}
	}
	return nil
}

// printable reports whether s is short, valid UTF-8 without control
// characters: claims end up in logs and database rows.
func printable(s string) bool {
	if len(s) > maxClaimLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

func unauthorized(msg string) *domain.Error {
	return &domain.Error{Code: domain.CodeUnauthorized, Message: msg}
}

// errInvalid is the answer for every failure not worth telling apart: a bad
// signature, an unknown key, a wrong issuer or audience. Distinguishing them
// would only help someone forging tokens. (A new value each time: callers
// own the errors they get.)
func errInvalid() *domain.Error { return unauthorized("the token is not valid") }
