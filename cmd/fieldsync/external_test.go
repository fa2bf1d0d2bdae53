package main

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/fieldsync/fieldsync/internal/config"
)

// idp is a partner's identity provider on loopback: it serves its key set
// and signs tokens; keys can be added (a rotation at the provider).
type idp struct {
	mu   sync.Mutex
	keys map[string]*rsa.PrivateKey
	srv  *httptest.Server
}

func newIDP(t *testing.T) *idp {
	t.Helper()
	p := &idp{keys: map[string]*rsa.PrivateKey{}}
	p.addKey(t, "k1")
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		var keys []map[string]string
		for kid, k := range p.keys {
			keys = append(keys, map[string]string{
				"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
				"n": base64.RawURLEncoding.EncodeToString(k.N.Bytes()),
				"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes()),
			})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) addKey(t *testing.T, kid string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.keys[kid] = k
	p.mu.Unlock()
}

func (p *idp) token(t *testing.T, kid string, claims jwt.MapClaims) string {
	t.Helper()
	p.mu.Lock()
	k := p.keys[kid]
	p.mu.Unlock()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A humanitarian agency's identity provider: its tokens read corridors as
// a partner, by its own keys, and a key it rotates in is picked up.
func TestExternalIssuerTokensActAsTheirConfiguredRole(t *testing.T) {
	p := newIDP(t)
	dir := t.TempDir()
	issuers := filepath.Join(dir, "issuers.json")
	cfgJSON := `[{"issuer":"https://idp.agency.test","audience":"fieldsync","jwks_url":"` + p.srv.URL + `","role":"partner","subject_prefix":"agency:"}]`
	if err := os.WriteFile(issuers, []byte(cfgJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.DatabaseURL = filepath.Join(dir, "fieldsync.db")
	cfg.Dev = true
	cfg.ExternalIssuers = issuers
	cfg.ExternalJWKSCooldown = 300 * time.Millisecond
	var out syncBuffer
	base, stop, done := startMain(t, cfg, &out)
	defer func() { stop(); <-done }()
	spec := loadSpec(t)

	// A device reports a corridor (with an internal note) and a patrol log.
	dev := &client{t: t, base: base, spec: spec, token: devToken(t, out.String())}
	push := []byte(`{"changes":[{"change_id":"x1","collection":"corridors","id":"rn1","vv":{"dev-demo":1},"hlc":"1764300000000-0-dev-demo","fields":{"status":"restricted","notes":"INTERNAL-NOTE"}},
		{"change_id":"x2","collection":"patrol_logs","id":"log-1","vv":{"dev-demo":1},"hlc":"1764300000001-0-dev-demo","fields":{"unit":"KEN-3","status":"active"}}]}`)
	if status, body := dev.do("POST", "/v1/sync/push", push, nil); status != 200 {
		t.Fatalf("push = %d %s", status, body)
	}

	now := time.Now()
	claims := func(extra map[string]any) jwt.MapClaims {
		c := jwt.MapClaims{"iss": "https://idp.agency.test", "aud": "fieldsync", "sub": "analyst-7",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "role": "admin"}
		for k, v := range extra {
			c[k] = v
		}
		return c
	}
	partner := &client{t: t, base: base, spec: spec, token: p.token(t, "k1", claims(nil))}
	status, body := partner.do("GET", "/v1/sync/pull", nil, nil)
	if status != 200 || !strings.Contains(string(body), `"rn1"`) || strings.Contains(string(body), "log-1") || strings.Contains(string(body), "INTERNAL-NOTE") {
		t.Fatalf("a partner token (whatever role it claims) reads corridors without internal fields: %d %s", status, body)
	}
	if status, _ := partner.do("POST", "/v1/sync/push", push, nil); status != 403 {
		t.Fatalf("a partner push = %d, want 403", status)
	}

	for name, tok := range map[string]string{
		"wrong audience": p.token(t, "k1", claims(map[string]any{"aud": "someone-else"})),
		"expired":        p.token(t, "k1", claims(map[string]any{"exp": now.Add(-time.Hour).Unix()})),
		"no expiry":      p.token(t, "k1", jwt.MapClaims{"iss": "https://idp.agency.test", "aud": "fieldsync", "sub": "a"}),
		"HS256 keyed with the provider's public key": func() string {
			p.mu.Lock()
			n := p.keys["k1"].N.Bytes()
			p.mu.Unlock()
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil))
			tok.Header["kid"] = "k1"
			s, _ := tok.SignedString(n)
			return s
		}(),
	} {
		c := &client{t: t, base: base, spec: spec, token: tok}
		if status, _ := c.do("GET", "/v1/sync/pull", nil, nil); status != 401 {
			t.Fatalf("%s: %d, want 401", name, status)
		}
	}

	// The provider rotates in a new key: after the cool-down, its tokens
	// verify without a restart.
	p.addKey(t, "k2")
	time.Sleep(350 * time.Millisecond)
	rotated := &client{t: t, base: base, spec: spec, token: p.token(t, "k2", claims(nil))}
	if status, body := rotated.do("GET", "/v1/sync/pull", nil, nil); status != 200 {
		t.Fatalf("a token signed with the provider's new key = %d %s", status, body)
	}
}
