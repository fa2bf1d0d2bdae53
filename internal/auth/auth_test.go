package auth_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/fieldsync/fieldsync/internal/auth"
	"github.com/fieldsync/fieldsync/internal/domain"
)

// t0 is the tests' wall clock.
var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// memKeys is an in-memory domain.KeyStore: the ring's only collaborator.
type memKeys struct {
	mu    sync.Mutex
	keys  []domain.SigningKey
	reads int
	fail  error
}

func (m *memKeys) SigningKeys(context.Context) ([]domain.SigningKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	if m.fail != nil {
		return nil, m.fail
	}
	return slices.Clone(m.keys), nil
}

func (m *memKeys) AddSigningKey(_ context.Context, k domain.SigningKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys = append(m.keys, k)
	return nil
}

func (m *memKeys) readCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reads
}

// clock is a settable time source.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.set(t)
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func genKey(t *testing.T, created time.Time) domain.SigningKey {
	t.Helper()
	k, err := auth.GenerateKey(created)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newRing returns a ring over a store holding keys, on clock c.
func newRing(t *testing.T, c *clock, store *memKeys, cfg auth.Config) *auth.Keyring {
	t.Helper()
	cfg.Now = c.now
	r, err := auth.NewKeyring(context.Background(), store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// validClaims are the claims of a good device token at t0.
func validClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"iss":        auth.DefaultIssuer,
		"aud":        []string{auth.DefaultAudience},
		"sub":        "dev-7Q2",
		"exp":        t0.Add(time.Hour).Unix(),
		"iat":        t0.Add(-time.Minute).Unix(),
		"nbf":        t0.Add(-time.Minute).Unix(),
		"jti":        "4f1c2c1e-8a55-4c1c-9d0e-2f1f0f5d3a11",
		"role":       "device",
		"unit":       "KEN-3",
		"contingent": "KEN",
		"typ":        auth.TypeAccess,
	}
}

// sign signs claims with method and key, with kid in the header unless it
// is empty.
func sign(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func with(mut func(jwt.MapClaims)) jwt.MapClaims {
	c := validClaims()
	mut(c)
	return c
}

func TestVerifyRoundTrip(t *testing.T) {
	c := newClock(t0)
	store := &memKeys{keys: []domain.SigningKey{genKey(t, t0.Add(-time.Hour))}}
	ring := newRing(t, c, store, auth.Config{})
	for _, id := range []domain.Identity{
		{Subject: "dev-7Q2", Role: domain.RoleDevice, Unit: "KEN-3", Contingent: "KEN"},
		{Subject: "sup.alice", Role: domain.RoleSupervisor, Contingent: "JAM"},
		{Subject: "sup.all", Role: domain.RoleSupervisor},
		{Subject: "agency:ocha", Role: domain.RolePartner},
		{Subject: "admin", Role: domain.RoleAdmin},
	} {
		t.Run(string(id.Role)+"/"+id.Subject, func(t *testing.T) {
			tok, err := ring.Issue(id, 15*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ring.Verify(tok)
			if err != nil {
				t.Fatal(err)
			}
			if got.TokenID == "" {
				t.Error("verified identity has no token id (jti)")
			}
			got.TokenID = ""
			if got != id || id != got {
				t.Errorf("Verify(Issue(%+v)) = %+v", id, got)
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	c := newClock(t0)
	key := genKey(t, t0.Add(-time.Hour))
	store := &memKeys{keys: []domain.SigningKey{key}}
	ring := newRing(t, c, store, auth.Config{})
	other := genKey(t, t0)

	good := sign(t, jwt.SigningMethodEdDSA, key.Private, key.KID, validClaims())
	if _, err := ring.Verify(good); err != nil {
		t.Fatalf("the table's base token does not verify: %v", err)
	}
	parts := strings.Split(good, ".")
	tamperedClaims := validClaims()
	tamperedClaims["role"] = "admin"
	payload, _ := json.Marshal(tamperedClaims)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]

	cases := []struct {
		name  string
		token string
	}{
		{"empty token", ""},
		{"garbage", "not-a-jwt"},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, key.KID, validClaims())},
		{"HS256 keyed with the public key bytes", sign(t, jwt.SigningMethodHS256, []byte(key.Public), key.KID, validClaims())},
		{"signed by another key under the known kid", sign(t, jwt.SigningMethodEdDSA, other.Private, key.KID, validClaims())},
		{"expired", sign(t, jwt.SigningMethodEdDSA, key.Private, key.KID, with(func(c jwt.MapClaims) { c["exp"] = t0.Add(-2 * time.Minute).Unix() }))},
		{"nbf in the future", sign(t, jwt.SigningMethodEdDSA, key.Private, key.KID, with(func(c jwt.MapClaims) { c["nbf"] = t0.Add(2 * time.Minute).Unix() }))},
		{"iat in the future", sign(t, jwt.SigningMethodEdDSA, key.Private, key.KID, with(func(c jwt.MapClaims) { c["iat"] = t0.Add(2 * time.Minute).Unix() }))},
		{"wrong aud", sign(t, jwt.SigningMethodEdDSA, key.Private, key.KID, with(func(c jwt.MapClaims) { c["aud"] = "other-api" }))},
		{"missing aud", sign(t, jwt.SigningMethodEdDSA, key.Private, key.KID, with(func(c jwt.MapClaims) { delete(c, "aud") }))},
		{"wrong iss", sign(t, jwt.SigningMethodEdDSA, key.Private, key.KID, with(func(c jwt.MapClaims) { c["iss"] = "evil" }))},
		{"missing iss", sign(t, jwt.SigningMethodEdDSA, key.Private, key.KID, with(func(c jwt.MapClaims) { delete(c, "iss") }))},
		{"missing exp", sign(t, jwt.SigningMethodEdDSA, key.Private, key.KID, with(func(c jwt.MapClaims) { delete(c, "exp") }))},
		{"unknown kid", sign(t, jwt.SigningMethodEdDSA, other.Private, other.KID, validClaims())},
		{"missing kid", sign(t, jwt.SigningMethodEdDSA, key.Private, "", validClaims())},
		{"tampered payload", tampered},
		{"typ refresh", sign(t, jwt.SigningMethodEdDSA, key.Private, key.KID, with(func(c jwt.MapClaims) { c["typ"] = "refresh" }))},
		{"missing typ", sign(t, jwt.SigningMethodEdDSA, key.Private, key.KID, with(func(c jwt.MapClaims) { delete(c, "typ") }))},
		{"missing role", sign(t, jwt.SigningMethodEdDSA, key.Private, key.KID, with(func(c jwt.MapClaims) { delete(c, "role") }))},
		{"unknown role", sign(t, jwt.SigningMethodEdDSA, key.Private, key.KID, with(func(c jwt.MapClaims) { c["role"] = "root" }))},
		{"role of the wrong type", sign(t, jwt.SigningMethodEdDSA, key.Private, key.KID, with(func(c jwt.MapClaims) { c["role"] = 1 }))},
		{"missing sub", sign(t, jwt.SigningMethodEdDSA, key.Private, key.KID, with(func(c jwt.MapClaims) { delete(c, "sub") }))},
		{"device without unit", sign(t, jwt.SigningMethodEdDSA, key.Private, key.KID, with(func(c jwt.MapClaims) { delete(c, "unit") }))},
		{"device posing as the server node", sign(t, jwt.SigningMethodEdDSA, key.Private, key.KID, with(func(c jwt.MapClaims) { c["sub"] = "srv" }))},
		{"device id that is not a node id", sign(t, jwt.SigningMethodEdDSA, key.Private, key.KID, with(func(c jwt.MapClaims) { c["sub"] = "dev 7Q2" }))},
		{"control characters in a claim", sign(t, jwt.SigningMethodEdDSA, key.Private, key.KID, with(func(c jwt.MapClaims) { c["contingent"] = "KEN\n" }))},
		{"oversized token", good + strings.Repeat("A", auth.MaxTokenLen)},
	}
	for _, tc := range cases {
		t.Run(tc.name+" is unauthorized", func(t *testing.T) {
			id, err := ring.Verify(tc.token)
			if err == nil {
				t.Fatalf("Verify accepted it: %+v", id)
			}
			t.Log(err)
			var de *domain.Error
			if !errors.As(err, &de) || de.Code != domain.CodeUnauthorized {
				t.Fatalf("Verify error = %v (%T), want a *domain.Error with code %s", err, err, domain.CodeUnauthorized)
			}
			if id != (domain.Identity{}) {
				t.Errorf("Verify returned an identity with its error: %+v", id)
			}
			for _, part := range strings.Split(tc.token, ".") {
				if len(part) > 8 && strings.Contains(err.Error(), part) {
					t.Errorf("the error echoes the token: %q", err.Error())
				}
			}
		})
	}
}

func TestVerifyToleratesSmallSkew(t *testing.T) {
	c := newClock(t0)
	key := genKey(t, t0.Add(-time.Hour))
	ring := newRing(t, c, &memKeys{keys: []domain.SigningKey{key}}, auth.Config{})
	for name, mut := range map[string]func(jwt.MapClaims){
		"exp 10s ago is accepted":            func(c jwt.MapClaims) { c["exp"] = t0.Add(-10 * time.Second).Unix() },
		"nbf 10s ahead is accepted":          func(c jwt.MapClaims) { c["nbf"] = t0.Add(10 * time.Second).Unix() },
		"iat 10s ahead is accepted":          func(c jwt.MapClaims) { c["iat"] = t0.Add(10 * time.Second).Unix() },
		"aud as a single string is accepted": func(c jwt.MapClaims) { c["aud"] = auth.DefaultAudience },
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ring.Verify(sign(t, jwt.SigningMethodEdDSA, key.Private, key.KID, with(mut))); err != nil {
				t.Fatal(err)
			}
		})
	}
	strict := newRing(t, c, &memKeys{keys: []domain.SigningKey{key}}, auth.Config{Leeway: -1})
	tok := sign(t, jwt.SigningMethodEdDSA, key.Private, key.KID, with(func(c jwt.MapClaims) { c["exp"] = t0.Add(-10 * time.Second).Unix() }))
	if _, err := strict.Verify(tok); err == nil {
		t.Error("a ring with no leeway accepted a token expired 10s ago")
	}
}

func TestIssueRefusesWhatVerifyWouldReject(t *testing.T) {
	c := newClock(t0)
	ring := newRing(t, c, &memKeys{keys: []domain.SigningKey{genKey(t, t0)}}, auth.Config{})
	for name, id := range map[string]domain.Identity{
		"no role":             {Subject: "dev-1", Unit: "KEN-3"},
		"no subject":          {Role: domain.RoleAdmin},
		"device without unit": {Subject: "dev-1", Role: domain.RoleDevice},
		"device as srv":       {Subject: "srv", Role: domain.RoleDevice, Unit: "KEN-3"},
	} {
		t.Run(name, func(t *testing.T) {
			if tok, err := ring.Issue(id, time.Minute); err == nil {
				t.Fatalf("Issue(%+v) = %q, want an error", id, tok)
			}
		})
	}
	if _, err := ring.Issue(domain.Identity{Subject: "admin", Role: domain.RoleAdmin}, 0); err == nil {
		t.Error("Issue with a zero lifetime succeeded")
	}
}

// kidOf returns the kid header of a token without verifying it.
func kidOf(t *testing.T, tok string) string {
	t.Helper()
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := parsed.Header["kid"].(string)
	return kid
}

func TestKeyringSignsWithNewestUsableKey(t *testing.T) {
	c := newClock(t0)
	oldest := genKey(t, t0.Add(-3*time.Hour))
	signing := genKey(t, t0.Add(-2*time.Hour))
	retiredKey := genKey(t, t0.Add(-time.Hour))
	retiredAt := t0.Add(-10 * time.Minute)
	retiredKey.RetiredAt = &retiredAt
	publicOnly := genKey(t, t0.Add(-30*time.Minute))
	publicOnly.Private = nil
	store := &memKeys{keys: []domain.SigningKey{publicOnly, oldest, retiredKey, signing}}
	ring := newRing(t, c, store, auth.Config{})

	id := domain.Identity{Subject: "admin", Role: domain.RoleAdmin}
	tok, err := ring.Issue(id, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if got := kidOf(t, tok); got != signing.KID {
		t.Errorf("signed with kid %q, want the newest usable key %q", got, signing.KID)
	}
	// Retired keys no longer sign but still verify what they signed.
	old := sign(t, jwt.SigningMethodEdDSA, retiredKey.Private, retiredKey.KID, validClaims())
	if _, err := ring.Verify(old); err != nil {
		t.Errorf("a token signed by a retired key does not verify: %v", err)
	}
}

func TestRotate(t *testing.T) {
	c := newClock(t0)
	store := &memKeys{}
	ring := newRing(t, c, store, auth.Config{})
	id := domain.Identity{Subject: "dev-7Q2", Role: domain.RoleDevice, Unit: "KEN-3"}

	if ring.CanSign() {
		t.Fatal("an empty ring says it can sign")
	}
	if _, err := ring.Issue(id, time.Minute); !errors.Is(err, auth.ErrNoSigningKey) {
		t.Fatalf("Issue on an empty ring: %v, want ErrNoSigningKey", err)
	}
	if err := ring.EnsureSigningKey(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := ring.EnsureSigningKey(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(store.keys); n != 1 {
		t.Fatalf("EnsureSigningKey twice stored %d keys, want 1", n)
	}
	before, err := ring.Issue(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	c.advance(time.Minute)
	kid, err := ring.Rotate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	after, err := ring.Issue(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got := kidOf(t, after); got != kid {
		t.Errorf("after Rotate, signed with %q, want the new key %q", got, kid)
	}
	for _, tok := range []string{before, after} {
		if _, err := ring.Verify(tok); err != nil {
			t.Errorf("after Rotate, a token does not verify: %v", err)
		}
	}
}

func TestUnknownKIDReloadsAtMostOncePerInterval(t *testing.T) {
	c := newClock(t0)
	store := &memKeys{keys: []domain.SigningKey{genKey(t, t0.Add(-time.Hour))}}
	here := newRing(t, c, store, auth.Config{ReloadOnMiss: time.Minute})
	there := newRing(t, c, store, auth.Config{})
	id := domain.Identity{Subject: "dev-7Q2", Role: domain.RoleDevice, Unit: "KEN-3"}

	// Another instance rotates; this one has not reloaded yet, and its last
	// load is too recent for a miss to reload.
	if _, err := there.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	tok, err := there.Issue(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	reads := store.readCount()
	if _, err := here.Verify(tok); err == nil {
		t.Fatal("verified a token of a key loaded after the interval's reload")
	}
	if store.readCount() != reads {
		t.Error("a miss within the interval read the store")
	}
	c.advance(2 * time.Minute)
	if _, err := here.Verify(tok); err != nil {
		t.Fatalf("after the interval, a miss did not pick up the new key: %v", err)
	}

	// Forged kids after that cost at most one read per interval.
	forged := genKey(t, t0)
	reads = store.readCount()
	for range 20 {
		_, _ = here.Verify(sign(t, jwt.SigningMethodEdDSA, forged.Private, forged.KID, validClaims()))
	}
	if n := store.readCount() - reads; n > 0 {
		t.Errorf("20 forged kids right after a reload read the store %d times, want 0", n)
	}

	off := newRing(t, c, store, auth.Config{ReloadOnMiss: -1})
	if _, err := there.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.advance(time.Hour)
	tok2, err := there.Issue(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := off.Verify(tok2); err == nil {
		t.Error("with ReloadOnMiss off, a miss reloaded")
	}
	if err := off.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := off.Verify(tok2); err != nil {
		t.Errorf("after Reload: %v", err)
	}
}

func TestJWKS(t *testing.T) {
	c := newClock(t0)
	older := genKey(t, t0.Add(-2*time.Hour))
	newer := genKey(t, t0.Add(-time.Hour))
	ring := newRing(t, c, &memKeys{keys: []domain.SigningKey{older, newer}}, auth.Config{})
	b, err := ring.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	want := []domain.SigningKey{newer, older}
	if len(set.Keys) != len(want) {
		t.Fatalf("JWKS has %d keys, want %d: %s", len(set.Keys), len(want), b)
	}
	for i, k := range set.Keys {
		x := base64.RawURLEncoding.EncodeToString(want[i].Public)
		wantJWK := map[string]string{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": want[i].KID, "alg": "EdDSA", "use": "sig"}
		if len(k) != len(wantJWK) {
			t.Errorf("key %d has members %v, want exactly %v", i, k, wantJWK)
		}
		for m, v := range wantJWK {
			if k[m] != v {
				t.Errorf("key %d: %s = %q, want %q", i, m, k[m], v)
			}
		}
	}
	// The key set verifies a token the ring issued.
	tok, err := ring.Issue(domain.Identity{Subject: "admin", Role: domain.RoleAdmin}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := base64.RawURLEncoding.DecodeString(set.Keys[0]["x"])
	parts := strings.Split(tok, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	if !ed25519.Verify(ed25519.PublicKey(pub), []byte(parts[0]+"."+parts[1]), sig) {
		t.Error("the published key does not verify the ring's token")
	}
}

func TestNewKeyringRejectsUnusableKeys(t *testing.T) {
	c := newClock(t0)
	short := genKey(t, t0)
	short.Public = short.Public[:16]
	mismatched := genKey(t, t0)
	mismatched.Private = genKey(t, t0).Private
	wrongAlg := genKey(t, t0)
	wrongAlg.Alg = "RS256"
	twin := genKey(t, t0)
	for name, keys := range map[string][]domain.SigningKey{
		"short public key":         {short},
		"mismatched private key":   {mismatched},
		"another algorithm":        {wrongAlg},
		"two keys with one kid":    {twin, twin},
		"key without kid":          {{Alg: auth.AlgEdDSA, Public: make(ed25519.PublicKey, ed25519.PublicKeySize)}},
		"private key of bad shape": {{KID: "k", Alg: auth.AlgEdDSA, Public: twin.Public, Private: twin.Private[:10]}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := auth.NewKeyring(context.Background(), &memKeys{keys: keys}, auth.Config{Now: c.now}); err == nil {
				t.Fatal("NewKeyring accepted it")
			}
		})
	}
	if _, err := auth.NewKeyring(context.Background(), &memKeys{fail: errors.New("db down")}, auth.Config{Now: c.now}); err == nil {
		t.Error("NewKeyring succeeded on a failing store")
	}
}

func TestReloadFailureKeepsKeys(t *testing.T) {
	c := newClock(t0)
	store := &memKeys{keys: []domain.SigningKey{genKey(t, t0)}}
	ring := newRing(t, c, store, auth.Config{})
	tok, err := ring.Issue(domain.Identity{Subject: "admin", Role: domain.RoleAdmin}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	store.mu.Lock()
	store.fail = errors.New("db down")
	store.mu.Unlock()
	if err := ring.Reload(context.Background()); err == nil {
		t.Fatal("Reload on a failing store succeeded")
	}
	if _, err := ring.Verify(tok); err != nil {
		t.Errorf("after a failed reload: %v", err)
	}
}

func TestGenerateKey(t *testing.T) {
	a, b := genKey(t, t0), genKey(t, t0)
	if a.KID == b.KID || a.KID == "" {
		t.Errorf("kids %q and %q: want distinct, non-empty", a.KID, b.KID)
	}
	if a.Alg != auth.AlgEdDSA || !a.CreatedAt.Equal(t0) || a.RetiredAt != nil {
		t.Errorf("GenerateKey = alg %q created %v retired %v", a.Alg, a.CreatedAt, a.RetiredAt)
	}
	msg := []byte("x")
	if !ed25519.Verify(a.Public, msg, ed25519.Sign(a.Private, msg)) {
		t.Error("the key's halves do not match")
	}
}

func TestConcurrentVerifyAndReload(t *testing.T) {
	c := newClock(t0)
	store := &memKeys{keys: []domain.SigningKey{genKey(t, t0)}}
	ring := newRing(t, c, store, auth.Config{})
	tok, err := ring.Issue(domain.Identity{Subject: "admin", Role: domain.RoleAdmin}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if _, err := ring.Verify(tok); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			if _, err := ring.Rotate(context.Background()); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
}
