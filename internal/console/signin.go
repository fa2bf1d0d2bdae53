package console

import (
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
)

type signInData struct {
	CSRF string
}

// signInForm serves the sign-in page. Its form is bound to a nonce cookie,
// so another site cannot sign the browser in with a token of its choosing.
func (h *console) signInForm(c *fiber.Ctx) error {
	v := &view{Title: "Sign in", Data: signInData{CSRF: h.key.token(purposeSignIn, signInNonce(c))}}
	switch c.Query("m") {
	case msgSignedOut:
		v.Notice = "You are signed out."
	case msgEnded:
		v.Error = &banner{Code: "unauthorized", Text: "Your session ended: the token expired or was revoked. Sign in again with a fresh supervisor token."}
	}
	return h.render(c, nil, fiber.StatusOK, "sign-in", v)
}

// signIn checks the pasted token by asking the API for the conflict queue,
// and keeps it in the session cookie when the API agrees. The token is
// never echoed back, logged or put in a URL.
func (h *console) signIn(c *fiber.Ctx) error {
	nonce := strings.Clone(c.Cookies(nonceCookie))
	if !h.key.valid(purposeSignIn, nonce, c.FormValue("csrf")) {
		v := &view{Title: "Sign in", Error: csrfBanner()}
		v.Data = signInData{CSRF: h.key.token(purposeSignIn, signInNonce(c))}
		return h.render(c, nil, fiber.StatusForbidden, "sign-in", v)
	}
	fail := func(status int, b *banner) error {
		v := &view{Title: "Sign in", Error: b, Data: signInData{CSRF: h.key.token(purposeSignIn, nonce)}}
		return h.render(c, nil, status, "sign-in", v)
	}
	token := strings.Clone(cleanToken(c.FormValue("token")))
	switch {
	case token == "":
		return fail(fiber.StatusUnprocessableEntity, &banner{Code: "missing_token", Text: "Paste your supervisor token."})
	case len(token) > maxTokenLen:
		return fail(fiber.StatusUnprocessableEntity, &banner{Code: "token_too_long", Text: "This token is too long for a browser cookie; ask for a fieldsync supervisor token."})
	}
	cl, ok := peekClaims(token)
	if !ok {
		return fail(fiber.StatusUnprocessableEntity, &banner{Code: "not_a_token", Text: "This is not a token: a token is three parts separated by dots. Paste the whole line that fieldsync token printed."})
	}
	err := h.client(c, token).Probe()
	if p, isProblem := problemOf(err); isProblem {
		b := &banner{Code: p.Code, Text: p.Detail, RequestID: p.RequestID}
		switch p.Status {
		case fiber.StatusUnauthorized:
			b.Text = "The server did not accept this token (expired, revoked, or not signed by this server): " + p.Detail
		case fiber.StatusForbidden:
			b.Text = "This is not a supervisor token. Device and partner tokens cannot use the console; ask an administrator for one made with: fieldsync token -role supervisor -sub YOU -contingent YOURS."
		}
		return fail(p.Status, b)
	}
	if err != nil {
		return fail(fiber.StatusInternalServerError, h.fail(c, err))
	}
	var exp time.Time
	if cl.Expires > 0 {
		exp = time.Unix(cl.Expires, 0)
	}
	setSession(c, token, exp, h.now())
	clearCookie(c, nonceCookie)
	return c.Redirect(Prefix+"/logs", fiber.StatusSeeOther)
}

// signOut drops the session cookie. It is a POST with the session's CSRF
// token, so another site cannot sign a supervisor out.
func (h *console) signOut(c *fiber.Ctx) error {
	token := c.Cookies(sessionCookie)
	if token != "" && !h.key.valid(purposeSession, token, c.FormValue("csrf")) {
		return h.render(c, nil, fiber.StatusForbidden, "error", &view{Title: "Form expired", Error: csrfBanner()})
	}
	clearCookie(c, sessionCookie)
	return h.toSignIn(c, msgSignedOut)
}
