package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/fieldsync/fieldsync/internal/domain"
)

// ExternalIssuer is an identity provider whose tokens fieldsync accepts (a
// humanitarian agency's or the national police's), by its public keys. Its
// tokens are mapped to one role and scope: an issuer is trusted for what
// the configuration grants it, never for role claims of its own.
type ExternalIssuer struct {
	Issuer     string `json:"issuer"`         // the iss its tokens carry
	Audience   string `json:"audience"`       // the aud they must carry for fieldsync
	JWKSURL    string `json:"jwks_url"`       // where its key set is fetched
	JWKSFile   string `json:"jwks_file"`      // or a file holding it
	Role       string `json:"role"`           // partner or supervisor
	Contingent string `json:"contingent"`     // the scope granted (supervisors)
	Prefix     string `json:"subject_prefix"` // prepended to sub, so ids never collide with fieldsync's
	Observe    bool   `json:"observe"`        // partners of this issuer may post corridor observations
}

// LoadExternalIssuers reads a JSON array of issuers from path.
func LoadExternalIssuers(path string) ([]ExternalIssuer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: external issuers: %w", err)
	}
	var out []ExternalIssuer
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("auth: external issuers %s: %w", path, err)
	}
	for _, e := range out {
		if e.Issuer == "" || e.Audience == "" || (e.JWKSURL == "" && e.JWKSFile == "") {
			return nil, fmt.Errorf("auth: external issuer %q needs issuer, audience and jwks_url or jwks_file", e.Issuer)
		}
		if r := domain.Role(e.Role); r != domain.RolePartner && r != domain.RoleSupervisor {
			return nil, fmt.Errorf("auth: external issuer %q: role must be partner or supervisor, got %q", e.Issuer, e.Role)
		}
	}
	return out, nil
}

// externalKey is one public key of an issuer, with the one algorithm it may
// verify.
type externalKey struct {
	alg string
	key crypto.PublicKey
}

// External verifies tokens of configured external issuers. On a kid it does
// not know it fetches the issuer's key set again, at most once per cool-down,
// so a rotation at the provider is picked up while forged kids cost little.
type External struct {
	issuers  map[string]*externalIssuer
	leeway   time.Duration
	cooldown time.Duration
	now      func() time.Time
	fetchURL func(ctx context.Context, url string) ([]byte, error)
}

type externalIssuer struct {
	cfg       ExternalIssuer
	mu        sync.Mutex
	keys      map[string]externalKey
	lastFetch time.Time
}

// NewExternal returns a verifier for the given issuers; keys are fetched on
// first use, from jwks_file or through fetchURL (HTTP stays out of this
// package: the caller supplies the client).
func NewExternal(issuers []ExternalIssuer, leeway, cooldown time.Duration, now func() time.Time,
	fetchURL func(ctx context.Context, url string) ([]byte, error)) *External {
	if cooldown <= 0 {
		cooldown = 5 * time.Minute
	}
	if now == nil {
		now = time.Now
	}
	x := &External{issuers: map[string]*externalIssuer{}, leeway: leeway, cooldown: cooldown, now: now, fetchURL: fetchURL}
	for _, e := range issuers {
		x.issuers[e.Issuer] = &externalIssuer{cfg: e, keys: map[string]externalKey{}}
	}
	return x
}

// Knows reports whether iss is a configured issuer.
func (x *External) Knows(iss string) bool { _, ok := x.issuers[iss]; return ok }

// Verify checks a token of a configured issuer and maps it to an identity.
func (x *External) Verify(token string) (domain.Identity, error) {
	iss, err := unverifiedIssuer(token)
	if err != nil {
		return domain.Identity{}, errInvalid()
	}
	is := x.issuers[iss]
	if is == nil {
		return domain.Identity{}, errInvalid()
	}
	var claims jwt.RegisteredClaims
	var alg string
	keyfunc := func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("no kid")
		}
		k, ok := x.key(is, kid)
		if !ok {
			return nil, errors.New("unknown kid")
		}
		// One algorithm per key: a token may not pick another one (an
		// RSA key used as an HMAC secret, say).
		if t.Method.Alg() != k.alg {
			return nil, errors.New("algorithm does not match the key")
		}
		alg = k.alg
		return k.key, nil
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{"RS256", "ES256", "EdDSA"}),
		jwt.WithExpirationRequired(), jwt.WithIssuer(is.cfg.Issuer), jwt.WithAudience(is.cfg.Audience),
		jwt.WithIssuedAt(), jwt.WithLeeway(x.leeway), jwt.WithTimeFunc(x.now),
	)
	if _, err := parser.ParseWithClaims(token, &claims, keyfunc); err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return domain.Identity{}, unauthorized("the token has expired")
		}
		return domain.Identity{}, errInvalid()
	}
	_ = alg
	id := domain.Identity{
		Subject: is.cfg.Prefix + claims.Subject, Role: domain.Role(is.cfg.Role),
		Contingent: is.cfg.Contingent, TokenID: claims.ID,
		Observes: is.cfg.Observe && domain.Role(is.cfg.Role) == domain.RolePartner,
	}
	if claims.Subject == "" {
		return domain.Identity{}, unauthorized("the token has no valid subject")
	}
	if err := checkIdentity(id); err != nil {
		return domain.Identity{}, err
	}
	return id, nil
}

// unverifiedIssuer reads iss without verifying, only to pick the issuer
// whose keys will verify the token.
func unverifiedIssuer(token string) (string, error) {
	if len(token) > MaxTokenLen {
		return "", errors.New("token too long")
	}
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &c); err != nil {
		return "", err
	}
	return c.Issuer, nil
}

// key returns the issuer's key for kid, fetching the key set when kid is
// unknown and the cool-down has passed.
func (x *External) key(is *externalIssuer, kid string) (externalKey, bool) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if k, ok := is.keys[kid]; ok {
		return k, true
	}
	if !is.lastFetch.IsZero() && x.now().Sub(is.lastFetch) < x.cooldown {
		return externalKey{}, false
	}
	is.lastFetch = x.now()
	keys, err := x.fetch(is.cfg)
	if err != nil {
		return externalKey{}, false // the old keys stay; the token fails as unknown
	}
	is.keys = keys
	k, ok := keys[kid]
	return k, ok
}

func (x *External) fetch(cfg ExternalIssuer) (map[string]externalKey, error) {
	var body []byte
	if cfg.JWKSFile != "" {
		b, err := os.ReadFile(cfg.JWKSFile)
		if err != nil {
			return nil, err
		}
		body = b
	} else {
		if x.fetchURL == nil {
			return nil, errors.New("jwks: no way to fetch URLs")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b, err := x.fetchURL(ctx, cfg.JWKSURL)
		if err != nil {
			return nil, err
		}
		body = b
	}
	return parseJWKS(body)
}

// parseJWKS reads RSA (RS256), EC P-256 (ES256) and Ed25519 (EdDSA) public
// keys; keys of other kinds, or without kid, are skipped.
func parseJWKS(b []byte) (map[string]externalKey, error) {
	var set struct {
		Keys []struct {
			Kty, Crv, Kid, Alg, Use, N, E, X, Y string
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, err
	}
	dec := base64.RawURLEncoding.DecodeString
	out := map[string]externalKey{}
	for _, k := range set.Keys {
		if k.Kid == "" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		switch {
		case k.Kty == "RSA" && (k.Alg == "" || k.Alg == "RS256"):
			n, err1 := dec(k.N)
			e, err2 := dec(k.E)
			if err1 != nil || err2 != nil || len(n) < 256 { // at least 2048-bit
				continue
			}
			out[k.Kid] = externalKey{alg: "RS256", key: &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}}
		case k.Kty == "EC" && k.Crv == "P-256" && (k.Alg == "" || k.Alg == "ES256"):
			xb, err1 := dec(k.X)
			yb, err2 := dec(k.Y)
			if err1 != nil || err2 != nil {
				continue
			}
			pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(xb), Y: new(big.Int).SetBytes(yb)}
			if !pub.Curve.IsOnCurve(pub.X, pub.Y) { //nolint:staticcheck // validating untrusted input
				continue
			}
			out[k.Kid] = externalKey{alg: "ES256", key: pub}
		case k.Kty == "OKP" && k.Crv == "Ed25519" && (k.Alg == "" || k.Alg == "EdDSA"):
			xb, err := dec(k.X)
			if err != nil || len(xb) != ed25519.PublicKeySize {
				continue
			}
			out[k.Kid] = externalKey{alg: "EdDSA", key: ed25519.PublicKey(xb)}
		}
	}
	return out, nil
}
