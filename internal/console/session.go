package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// Cookie names. Both are scoped to /console: the API under /v1 never
// receives them, and never needs to (it takes bearer tokens only).
const (
	// sessionCookie holds the supervisor's token.
	sessionCookie = "fieldsync_console"
	// nonceCookie holds a random value that binds the sign-in form's CSRF
	// token before there is a session.
	nonceCookie = "fieldsync_console_signin"
	cookiePath  = "/console"
	// nonceTTL is how long a sign-in form stays usable.
	nonceTTL = time.Hour
	// maxTokenLen keeps the cookie under the 4096 bytes browsers store
	// (fieldsync's own tokens are a few hundred bytes).
	maxTokenLen = 3800
)

// CSRF token purposes: a token made for one cannot stand in for the other.
const (
	purposeSession = "session"
	purposeSignIn  = "sign-in"
)

// csrfKey makes and checks CSRF tokens: HMAC-SHA256 under a secret key of a
// purpose and the value it binds (the session cookie, or the sign-in
// nonce). A cross-site page can make the browser send the cookie with a
// POST (SameSite=Strict stops that in current browsers, not in every one,
// nor from a sibling subdomain) but cannot read the cookie or a page, so it
// cannot compute the token.
type csrfKey []byte

func newCSRFKey() csrfKey {
	k := make([]byte, 32)
	_, _ = rand.Read(k) // crypto/rand.Read never fails (it aborts the program instead)
	return k
}

func (k csrfKey) token(purpose, bound string) string {
	m := hmac.New(sha256.New, k)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(bound))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// valid reports whether got is the token of purpose for bound, in constant
// time. An empty bound value (no cookie) is never valid.
func (k csrfKey) valid(purpose, bound, got string) bool {
	if bound == "" || got == "" {
		return false
	}
	return hmac.Equal([]byte(k.token(purpose, bound)), []byte(got))
}

// claims are the few claims of a token the console reads for display and
// for the cookie's lifetime. They are read without verifying the signature:
// the console only ever reads them from a token the API has just accepted
// (sign-in) or will check again on every call; they grant nothing.
type claims struct {
	Subject string `json:"sub"`
	Expires int64  `json:"exp"`
}

// peekClaims decodes the payload of a JWT.
func peekClaims(token string) (claims, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return claims{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return claims{}, false
	}
	var c claims
	if json.Unmarshal(b, &c) != nil {
		return claims{}, false
	}
	return c, true
}

// cleanToken trims what a paste may add around a token: whitespace, and a
// "Bearer " prefix copied from a header.
func cleanToken(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 7 && strings.EqualFold(s[:7], "bearer ") {
		s = strings.TrimSpace(s[7:])
	}
	return s
}

// secure reports whether the browser reached us over TLS (directly, or
// through a proxy that says so), so cookies get the Secure attribute.
func secure(c *fiber.Ctx) bool { return c.Protocol() == "https" }

// setSession stores the token in the session cookie, expiring with the
// token. Max-Age rather than Expires: it counts from when the browser gets
// it, so a tablet whose clock is wrong still drops the cookie on time.
func setSession(c *fiber.Ctx, token string, exp, now time.Time) {
	ck := &fiber.Cookie{
		Name: sessionCookie, Value: token, Path: cookiePath,
		Secure: secure(c), HTTPOnly: true, SameSite: fiber.CookieSameSiteStrictMode,
	}
	if exp.IsZero() {
		ck.SessionOnly = true // a token without exp: for the browser session only
	} else {
		ck.MaxAge = max(1, int(exp.Sub(now).Seconds()))
	}
	c.Cookie(ck)
}

// clearCookie tells the browser to drop a cookie.
func clearCookie(c *fiber.Ctx, name string) {
	c.Cookie(&fiber.Cookie{
		Name: name, Value: "", Path: cookiePath, Expires: fasthttp.CookieExpireDelete,
		Secure: secure(c), HTTPOnly: true, SameSite: fiber.CookieSameSiteStrictMode,
	})
}

// signInNonce returns the sign-in nonce from its cookie, or sets a new one.
func signInNonce(c *fiber.Ctx) string {
	if n := c.Cookies(nonceCookie); n != "" {
		return strings.Clone(n)
	}
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	n := base64.RawURLEncoding.EncodeToString(b)
	c.Cookie(&fiber.Cookie{
		Name: nonceCookie, Value: n, Path: cookiePath, MaxAge: int(nonceTTL.Seconds()),
		Secure: secure(c), HTTPOnly: true, SameSite: fiber.CookieSameSiteStrictMode,
	})
	return n
}
