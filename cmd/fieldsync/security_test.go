package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/fieldsync/fieldsync/internal/config"
	"github.com/fieldsync/fieldsync/internal/store"
)

// secInvalidToken is the challenge of a bearer token that does not verify.
const secInvalidToken = `Bearer realm="fieldsync", error="invalid_token"`

// secTokens is what enrolment and refresh answer.
type secTokens struct {
	DeviceID     string `json:"device_id"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

// secForge signs claims as the test says: with any method, key and kid
// ("" leaves the kid out).
func secForge(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("forge a %s token: %v", method.Alg(), err)
	}
	return s
}

// secTamper rewrites one claim of a signed token and keeps its header and
// signature.
func secTamper(t *testing.T, token, claim string, value any) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS compact token: %d parts", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if claims[claim] == value {
		t.Fatalf("claim %s is already %v: tampering would change nothing", claim, value)
	}
	claims[claim] = value
	payload, err = json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

// Every forged, stale, misused or revoked credential is refused by the
// running server over HTTP with 401 and an "unauthorized" problem; bearer
// failures name the Bearer scheme in WWW-Authenticate. A well-formed token
// signed the same way passes, so each refusal is for the one thing its case
// breaks.
func TestSecurityCredentialsAreRefusedWith401(t *testing.T) {
	db, env := preparedDB(t)
	enrollCode := func(ttl string) string {
		t.Helper()
		out, err := runCLI(t, env, "device", "enroll-code", "-unit", "KEN-3", "-contingent", "KEN", "-ttl", ttl)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	reusedCode, familyCode, revokedCode, revokedRefreshCode, racedCode, controlCode := enrollCode("1h"), enrollCode("1h"), enrollCode("1h"), enrollCode("1h"), enrollCode("1h"), enrollCode("1h")
	expiredCode := enrollCode("1s")
	expiredAt := time.Now().Add(time.Second)
	adminTok, err := runCLI(t, env, "token", "-role", "admin", "-sub", "admin-sec")
	if err != nil {
		t.Fatal(err)
	}

	// The server's own signing key, to sign tokens that are wrong in one
	// claim only.
	s, err := store.Open(context.Background(), db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := s.SigningKeys(context.Background())
	_ = s.Close()
	if err != nil || len(keys) != 1 || keys[0].Private == nil {
		t.Fatalf("signing keys: %d, %v", len(keys), err)
	}
	kid, priv := keys[0].KID, keys[0].Private

	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.DatabaseURL = db
	base, stop, done := startMain(t, cfg, &syncBuffer{})
	defer func() { stop(); <-done }()
	spec := loadSpec(t)
	anon := &client{t: t, base: base, spec: spec}
	admin := &client{t: t, base: base, spec: spec, token: strings.TrimSpace(adminTok)}

	// The published public key: the HMAC secret of the key-confusion attack.
	status, body := anon.do("GET", "/.well-known/jwks.json", nil, nil)
	var jwks struct {
		Keys []struct {
			Kid string `json:"kid"`
			X   string `json:"x"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(body, &jwks); status != 200 || err != nil || len(jwks.Keys) != 1 || jwks.Keys[0].Kid != kid {
		t.Fatalf("jwks = %d %s (%v)", status, body, err)
	}
	pubBytes, err := base64.RawURLEncoding.DecodeString(jwks.Keys[0].X)
	if err != nil || !ed25519.PublicKey(pubBytes).Equal(keys[0].Public) {
		t.Fatalf("the jwks x is not the server's public key: %v", err)
	}

	enroll := func(code string) (int, []byte) {
		t.Helper()
		b, _ := json.Marshal(map[string]string{"code": code})
		return anon.do("POST", "/v1/devices/enroll", b, nil)
	}
	mustEnroll := func(code string) secTokens {
		t.Helper()
		status, body := enroll(code)
		var tk secTokens
		if err := json.Unmarshal(body, &tk); status != 200 || err != nil || tk.AccessToken == "" {
			t.Fatalf("enrol = %d %s", status, body)
		}
		return tk
	}
	refresh := func(tok string) (int, []byte) {
		t.Helper()
		b, _ := json.Marshal(map[string]string{"refresh_token": tok})
		return anon.do("POST", "/v1/auth/refresh", b, nil)
	}
	pullWith := func(tok string) (*http.Response, []byte) {
		t.Helper()
		return (&client{t: t, base: base, spec: spec, token: tok}).doFull("GET", "/v1/sync/pull", nil)
	}

	// Claims that verify; each case spoils one thing.
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		now := time.Now()
		c := jwt.MapClaims{
			"iss": cfg.JWTIssuer, "aud": []string{cfg.JWTAudience}, "sub": "dev-forged01",
			"role": "device", "unit": "KEN-3", "contingent": "KEN", "typ": "access",
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "jti": uuid.NewString(),
		}
		if mod != nil {
			mod(c)
		}
		return c
	}
	good := secForge(t, jwt.SigningMethodEdDSA, priv, kid, claims(nil))
	if resp, body := pullWith(good); resp.StatusCode != 200 {
		t.Fatalf("the control token (server key, sound claims) = %d %s: the forgeries below would prove nothing", resp.StatusCode, body)
	}
	_, strangerKey, _ := ed25519.GenerateKey(rand.Reader)

	control := mustEnroll(controlCode)
	if resp, body := pullWith(control.AccessToken); resp.StatusCode != 200 {
		t.Fatalf("an enrolled device's own token = %d %s", resp.StatusCode, body)
	}

	// State the stateful cases share, in table order.
	var family, familyNext secTokens

	for _, tc := range []struct {
		name string
		// challenge is the exact WWW-Authenticate of a bearer failure
		// (RFC 6750 §3); "" for credentials sent in the body, whose 401
		// must still name the Bearer scheme (RFC 9110 §15.5.2).
		challenge string
		try       func(t *testing.T) (*http.Response, []byte)
	}{
		{"a request without Authorization is refused", `Bearer realm="fieldsync"`, func(t *testing.T) (*http.Response, []byte) {
			return pullWith("")
		}},
		{"a Basic Authorization is refused", `Bearer realm="fieldsync", error="invalid_request"`, func(t *testing.T) (*http.Response, []byte) {
			return anon.doHeaders("GET", "/v1/sync/pull", nil, map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:admin"))})
		}},
		{"alg none is refused", secInvalidToken, func(t *testing.T) (*http.Response, []byte) {
			return pullWith(secForge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, kid, claims(nil)))
		}},
		{"HS256 keyed with the server's public key is refused", secInvalidToken, func(t *testing.T) (*http.Response, []byte) {
			return pullWith(secForge(t, jwt.SigningMethodHS256, pubBytes, kid, claims(nil)))
		}},
		{"an expired token is refused", secInvalidToken, func(t *testing.T) (*http.Response, []byte) {
			return pullWith(secForge(t, jwt.SigningMethodEdDSA, priv, kid, claims(func(c jwt.MapClaims) {
				c["iat"], c["nbf"], c["exp"] = time.Now().Add(-time.Hour).Unix(), time.Now().Add(-time.Hour).Unix(), time.Now().Add(-2*time.Minute).Unix()
			})))
		}},
		{"a token without exp is refused", secInvalidToken, func(t *testing.T) (*http.Response, []byte) {
			return pullWith(secForge(t, jwt.SigningMethodEdDSA, priv, kid, claims(func(c jwt.MapClaims) { delete(c, "exp") })))
		}},
		{"a token not valid for minutes yet is refused", secInvalidToken, func(t *testing.T) (*http.Response, []byte) {
			return pullWith(secForge(t, jwt.SigningMethodEdDSA, priv, kid, claims(func(c jwt.MapClaims) {
				c["nbf"] = time.Now().Add(5 * time.Minute).Unix()
			})))
		}},
		{"a token issued minutes in the future is refused", secInvalidToken, func(t *testing.T) (*http.Response, []byte) {
			return pullWith(secForge(t, jwt.SigningMethodEdDSA, priv, kid, claims(func(c jwt.MapClaims) {
				c["iat"] = time.Now().Add(5 * time.Minute).Unix()
			})))
		}},
		{"a token for another audience is refused", secInvalidToken, func(t *testing.T) (*http.Response, []byte) {
			return pullWith(secForge(t, jwt.SigningMethodEdDSA, priv, kid, claims(func(c jwt.MapClaims) { c["aud"] = []string{"partner-portal"} })))
		}},
		{"a token without aud is refused", secInvalidToken, func(t *testing.T) (*http.Response, []byte) {
			return pullWith(secForge(t, jwt.SigningMethodEdDSA, priv, kid, claims(func(c jwt.MapClaims) { delete(c, "aud") })))
		}},
		{"a token from another issuer is refused", secInvalidToken, func(t *testing.T) (*http.Response, []byte) {
			return pullWith(secForge(t, jwt.SigningMethodEdDSA, priv, kid, claims(func(c jwt.MapClaims) { c["iss"] = "https://idp.example.org" })))
		}},
		{"a token under an unknown kid is refused", secInvalidToken, func(t *testing.T) (*http.Response, []byte) {
			return pullWith(secForge(t, jwt.SigningMethodEdDSA, strangerKey, "k-"+uuid.NewString(), claims(nil)))
		}},
		{"a foreign key's signature under the server's kid is refused", secInvalidToken, func(t *testing.T) (*http.Response, []byte) {
			return pullWith(secForge(t, jwt.SigningMethodEdDSA, strangerKey, kid, claims(nil)))
		}},
		{"a token carrying its own key in a jwk header is refused", secInvalidToken, func(t *testing.T) (*http.Response, []byte) {
			tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims(nil))
			tok.Header["kid"] = kid
			tok.Header["jwk"] = map[string]string{"kty": "OKP", "crv": "Ed25519", "kid": kid,
				"x": base64.RawURLEncoding.EncodeToString(strangerKey.Public().(ed25519.PublicKey))}
			signed, err := tok.SignedString(strangerKey)
			if err != nil {
				t.Fatal(err)
			}
			return pullWith(signed)
		}},
		{"a token without kid is refused", secInvalidToken, func(t *testing.T) (*http.Response, []byte) {
			return pullWith(secForge(t, jwt.SigningMethodEdDSA, priv, "", claims(nil)))
		}},
		{"a token whose unit was changed after signing is refused", secInvalidToken, func(t *testing.T) (*http.Response, []byte) {
			return pullWith(secTamper(t, control.AccessToken, "unit", "JAM-1"))
		}},
		{"a token whose role was raised after signing is refused", secInvalidToken, func(t *testing.T) (*http.Response, []byte) {
			return pullWith(secTamper(t, control.AccessToken, "role", "admin"))
		}},
		{"a refresh token as bearer is refused", secInvalidToken, func(t *testing.T) (*http.Response, []byte) {
			return pullWith(control.RefreshToken)
		}},
		{"a token of another typ is refused", secInvalidToken, func(t *testing.T) (*http.Response, []byte) {
			return pullWith(secForge(t, jwt.SigningMethodEdDSA, priv, kid, claims(func(c jwt.MapClaims) { c["typ"] = "id" })))
		}},
		{"a token without typ is refused", secInvalidToken, func(t *testing.T) (*http.Response, []byte) {
			return pullWith(secForge(t, jwt.SigningMethodEdDSA, priv, kid, claims(func(c jwt.MapClaims) { delete(c, "typ") })))
		}},
		{"a device token writing as the server node is refused", secInvalidToken, func(t *testing.T) (*http.Response, []byte) {
			return pullWith(secForge(t, jwt.SigningMethodEdDSA, priv, kid, claims(func(c jwt.MapClaims) { c["sub"] = "srv" })))
		}},
		{"a token with an unknown role is refused", secInvalidToken, func(t *testing.T) (*http.Response, []byte) {
			return pullWith(secForge(t, jwt.SigningMethodEdDSA, priv, kid, claims(func(c jwt.MapClaims) { c["role"] = "superuser" })))
		}},
		{"a revoked device's access token is refused", secInvalidToken, func(t *testing.T) (*http.Response, []byte) {
			dev := mustEnroll(revokedCode)
			if resp, body := pullWith(dev.AccessToken); resp.StatusCode != 200 {
				t.Fatalf("before revocation = %d %s", resp.StatusCode, body)
			}
			if status, body := admin.do("POST", "/v1/devices/"+dev.DeviceID+"/revoke", nil, nil); status != 200 {
				t.Fatalf("revoke = %d %s", status, body)
			}
			deadline := time.Now().Add(2 * time.Second)
			for {
				resp, body := pullWith(dev.AccessToken)
				if resp.StatusCode != 200 || time.Now().After(deadline) {
					return resp, body
				}
				time.Sleep(50 * time.Millisecond)
			}
		}},
		{"a revoked device's refresh token is refused", "", func(t *testing.T) (*http.Response, []byte) {
			dev := mustEnroll(revokedRefreshCode)
			if status, body := admin.do("POST", "/v1/devices/"+dev.DeviceID+"/revoke", nil, nil); status != 200 {
				t.Fatalf("revoke = %d %s", status, body)
			}
			b, _ := json.Marshal(map[string]string{"refresh_token": dev.RefreshToken})
			return anon.doFull("POST", "/v1/auth/refresh", b)
		}},
		{"a reused refresh token is refused", "", func(t *testing.T) (*http.Response, []byte) {
			family = mustEnroll(familyCode)
			status, body := refresh(family.RefreshToken)
			if err := json.Unmarshal(body, &familyNext); status != 200 || err != nil || familyNext.RefreshToken == "" {
				t.Fatalf("first refresh = %d %s", status, body)
			}
			// Its successor is spent too, so presenting the first token
			// again is no lost-response retry: it is a copy.
			status, body = refresh(familyNext.RefreshToken)
			if err := json.Unmarshal(body, &familyNext); status != 200 || err != nil || familyNext.RefreshToken == "" {
				t.Fatalf("second refresh = %d %s", status, body)
			}
			b, _ := json.Marshal(map[string]string{"refresh_token": family.RefreshToken})
			return anon.doFull("POST", "/v1/auth/refresh", b)
		}},
		{"the family's newer refresh token is refused after a reuse", "", func(t *testing.T) (*http.Response, []byte) {
			if familyNext.RefreshToken == "" {
				t.Fatal("the reuse case did not run")
			}
			b, _ := json.Marshal(map[string]string{"refresh_token": familyNext.RefreshToken})
			return anon.doFull("POST", "/v1/auth/refresh", b)
		}},
		{"an access token as refresh token is refused", "", func(t *testing.T) (*http.Response, []byte) {
			b, _ := json.Marshal(map[string]string{"refresh_token": control.AccessToken})
			return anon.doFull("POST", "/v1/auth/refresh", b)
		}},
		{"a forged refresh token is refused", "", func(t *testing.T) (*http.Response, []byte) {
			tok := secForge(t, jwt.SigningMethodEdDSA, strangerKey, kid, claims(func(c jwt.MapClaims) {
				c["typ"], c["fam"], c["sub"] = "refresh", uuid.NewString(), control.DeviceID
			}))
			b, _ := json.Marshal(map[string]string{"refresh_token": tok})
			return anon.doFull("POST", "/v1/auth/refresh", b)
		}},
		{"an enrolment code used twice is refused", "", func(t *testing.T) (*http.Response, []byte) {
			mustEnroll(reusedCode)
			b, _ := json.Marshal(map[string]string{"code": reusedCode})
			return anon.doFull("POST", "/v1/devices/enroll", b)
		}},
		{"an enrolment code raced by eight devices enrols one and refuses the rest", "", func(t *testing.T) (*http.Response, []byte) {
			b, _ := json.Marshal(map[string]string{"code": racedCode})
			type answer struct {
				resp *http.Response
				body []byte
				err  error
			}
			answers := make(chan answer, 8)
			for range 8 {
				go func() {
					resp, err := http.Post(base+"/v1/devices/enroll", "application/json", bytes.NewReader(b))
					if err != nil {
						answers <- answer{err: err}
						return
					}
					defer resp.Body.Close()
					body, err := io.ReadAll(resp.Body)
					answers <- answer{resp, body, err}
				}()
			}
			var ok int
			var refused answer
			for range 8 {
				a := <-answers
				switch {
				case a.err != nil:
					t.Fatal(a.err)
				case a.resp.StatusCode == 200:
					ok++
				default:
					refused = a
				}
			}
			if ok != 1 || refused.resp == nil {
				t.Fatalf("%d of 8 concurrent enrolments with one code succeeded, want exactly 1", ok)
			}
			return refused.resp, refused.body
		}},
		{"an expired enrolment code is refused", "", func(t *testing.T) (*http.Response, []byte) {
			time.Sleep(time.Until(expiredAt.Add(500 * time.Millisecond)))
			b, _ := json.Marshal(map[string]string{"code": expiredCode})
			return anon.doFull("POST", "/v1/devices/enroll", b)
		}},
		{"an unknown enrolment code is refused", "", func(t *testing.T) (*http.Response, []byte) {
			b, _ := json.Marshal(map[string]string{"code": "0000-0000-0000"})
			return anon.doFull("POST", "/v1/devices/enroll", b)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := tc.try(t)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status = %d, want 401: %s", resp.StatusCode, body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
				t.Errorf("Content-Type = %q, want application/problem+json", ct)
			}
			var p struct {
				Code   string `json:"code"`
				Status int    `json:"status"`
				Detail string `json:"detail"`
			}
			if err := json.Unmarshal(body, &p); err != nil || p.Code != "unauthorized" || p.Status != 401 {
				t.Errorf("problem = %s (%v), want code unauthorized, status 401", body, err)
			}
			if strings.Contains(string(body), "eyJ") {
				t.Errorf("the problem echoes a token: %s", body)
			}
			h := resp.Header.Get("WWW-Authenticate")
			if tc.challenge != "" && h != tc.challenge || tc.challenge == "" && !strings.HasPrefix(h, "Bearer ") {
				t.Errorf("WWW-Authenticate = %q, want %q", h, cmp.Or(tc.challenge, "a Bearer challenge"))
			}
		})
	}

	// The refusals hurt no one else: the control device still syncs.
	if resp, body := pullWith(control.AccessToken); resp.StatusCode != 200 {
		t.Fatalf("the control device after the suite = %d %s", resp.StatusCode, body)
	}
}

// FIELDSYNC_TOKEN_LEEWAY=0 is a valid setting (config allows 0..5m) and
// must mean no leeway: a token expired ten seconds ago, or valid only ten
// seconds from now, is refused.
func TestSecurityZeroTokenLeewayToleratesNoSkew(t *testing.T) {
	db, _ := preparedDB(t)
	s, err := store.Open(context.Background(), db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := s.SigningKeys(context.Background())
	_ = s.Close()
	if err != nil || len(keys) != 1 {
		t.Fatalf("signing keys: %d, %v", len(keys), err)
	}
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.DatabaseURL = db
	cfg.TokenLeeway = 0
	if err := cfg.Validate(); err != nil {
		t.Fatalf("a zero leeway is not a valid configuration: %v", err)
	}
	base, stop, done := startMain(t, cfg, &syncBuffer{})
	defer func() { stop(); <-done }()
	spec := loadSpec(t)
	pull := func(mod func(jwt.MapClaims)) int {
		t.Helper()
		now := time.Now()
		c := jwt.MapClaims{
			"iss": cfg.JWTIssuer, "aud": []string{cfg.JWTAudience}, "sub": "admin-1", "role": "admin", "typ": "access",
			"iat": now.Add(-time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Minute).Unix(), "jti": uuid.NewString(),
		}
		mod(c)
		tok := secForge(t, jwt.SigningMethodEdDSA, keys[0].Private, keys[0].KID, c)
		status, _ := (&client{t: t, base: base, spec: spec, token: tok}).do("GET", "/v1/sync/pull", nil, nil)
		return status
	}
	if status := pull(func(jwt.MapClaims) {}); status != 200 {
		t.Fatalf("a sound token = %d", status)
	}
	if status := pull(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-10 * time.Second).Unix() }); status != 401 {
		t.Errorf("with token-leeway 0, a token expired 10 s ago = %d, want 401", status)
	}
	if status := pull(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(10 * time.Second).Unix() }); status != 401 {
		t.Errorf("with token-leeway 0, a token valid only 10 s from now = %d, want 401", status)
	}
}
