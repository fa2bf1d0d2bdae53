package console

import (
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
)

// Prefix is where the console is served.
const Prefix = "/console"

// Config configures the console.
type Config struct {
	// Logger receives the console's own internal errors (never a token);
	// nil means slog.Default(). API requests are logged by the API.
	Logger *slog.Logger
	// Now is the clock for ages and the week of the corridor report; nil
	// means time.Now.
	Now func() time.Time
	// CSRFKey keys the CSRF tokens. Nil draws a random key at start, so
	// forms rendered before a restart, or by another instance, are refused
	// with a request to reload; set the same key on every instance behind
	// a load balancer to avoid that.
	CSRFKey []byte
}

// console is the mounted console's state.
type console struct {
	api   *caller
	key   csrfKey
	log   *slog.Logger
	now   func() time.Time
	views *views
}

// Mount serves the console under /console/ on app, over app's own API
// routes. Call it after the API routes are registered and before the app
// serves.
func Mount(app *fiber.App, cfg Config) {
	h := &console{api: &caller{app: app}, key: csrfKey(cfg.CSRFKey), log: cfg.Logger, now: cfg.Now, views: loadViews()}
	if len(h.key) == 0 {
		h.key = newCSRFKey()
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.now == nil {
		h.now = time.Now
	}

	g := app.Group(Prefix, securityHeaders)
	app.Get(Prefix, func(c *fiber.Ctx) error { return c.Redirect(Prefix+"/", fiber.StatusSeeOther) })
	g.Get("/", func(c *fiber.Ctx) error { return c.Redirect(Prefix+"/logs", fiber.StatusSeeOther) })
	g.Get("/static/"+h.views.cssName, h.stylesheet)
	g.Get("/sign-in", h.signInForm)
	g.Post("/sign-in", h.signIn)
	g.Post("/sign-out", h.signOut)
	g.Get("/logs", h.authed(h.logs))
	g.Get("/logs/:id", h.authed(h.logDetail))
	g.Post("/logs/:id/sign-off", h.authed(h.signOff))
	g.Get("/history/:collection/:id", h.authed(h.history))
	g.Get("/conflicts", h.authed(h.conflicts))
	g.Get("/conflicts/:id", h.authed(h.conflictDetail))
	g.Post("/conflicts/:id/resolve", h.authed(h.resolve))
	g.Get("/rejections", h.authed(h.rejections))
	g.Get("/corridors", h.authed(h.corridors))
	// Anything else under /console is an HTML 404, not the API's JSON one.
	g.Use(h.notFound)
}

// securityHeaders sets the headers of every console response. Pages hold
// one supervisor's view at one moment: no cache keeps them.
func securityHeaders(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentSecurityPolicy, "default-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'")
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Next()
}

// session is a signed-in request: the supervisor's client and the CSRF
// token its forms carry.
type session struct {
	api     *Client
	subject string
	csrf    string
}

type pageFunc func(c *fiber.Ctx, s *session) error

// authed runs f for a request with a session cookie, after checking the
// CSRF token of a POST; without a cookie it sends the browser to sign-in.
// Whether the token is still good is the API's to say, on every call.
func (h *console) authed(f pageFunc) fiber.Handler {
	return func(c *fiber.Ctx) error {
		token := strings.Clone(c.Cookies(sessionCookie))
		if token == "" {
			if c.Method() == fiber.MethodGet {
				return h.toSignIn(c, "")
			}
			return h.toSignIn(c, msgEnded)
		}
		if c.Method() == fiber.MethodPost && !h.key.valid(purposeSession, token, c.FormValue("csrf")) {
			return h.render(c, nil, fiber.StatusForbidden, "error", &view{Title: "Form expired", Error: csrfBanner()})
		}
		cl, _ := peekClaims(token)
		s := &session{api: h.client(c, token), subject: cl.Subject, csrf: h.key.token(purposeSession, token)}
		if err := f(c, s); err != nil {
			return h.render(c, s, fiber.StatusInternalServerError, "error", &view{Title: "Error", Error: h.fail(c, err)})
		}
		return nil
	}
}

// client returns the API as the token's holder, for this request.
func (h *console) client(c *fiber.Ctx, token string) *Client {
	return &Client{call: h.api, token: token, requestID: requestID(c), remote: c.Context().RemoteAddr()}
}

// requestID is the id the API's request-id middleware gave this request.
func requestID(c *fiber.Ctx) string {
	return strings.Clone(string(c.Response().Header.Peek(fiber.HeaderXRequestID)))
}

// Messages the sign-in page shows, named in its query (never free text).
const (
	msgSignedOut = "signed_out"
	msgEnded     = "ended"
)

// toSignIn sends the browser to the sign-in page.
func (h *console) toSignIn(c *fiber.Ctx, msg string) error {
	target := Prefix + "/sign-in"
	if msg != "" {
		target += "?m=" + url.QueryEscape(msg)
	}
	return c.Redirect(target, fiber.StatusSeeOther)
}

func (h *console) notFound(c *fiber.Ctx) error {
	if p := c.Path(); p != Prefix && !strings.HasPrefix(p, Prefix+"/") {
		return c.Next() // "/consolex" is not ours: the API's 404
	}
	return h.render(c, nil, fiber.StatusNotFound, "error", &view{Title: "Not found",
		Error: &banner{Code: "not_found", Text: "There is no console page at this address."}})
}
