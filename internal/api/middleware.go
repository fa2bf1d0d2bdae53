package api

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/fieldsync/fieldsync/internal/domain"
)

// HeaderRequestID carries the request id: taken from the request when it
// is a sane token (a device may correlate its own logs), generated
// otherwise, and always echoed in the response and in problem documents.
const HeaderRequestID = "X-Request-ID"

// maxRequestIDLen bounds a client-supplied request id.
const maxRequestIDLen = 128

// bearerChallenge is the WWW-Authenticate of a 401 (RFC 6750).
const bearerChallenge = `Bearer realm="fieldsync"`

// Locals keys; unexported types so no other package can collide with them.
type (
	requestIDKey struct{}
	identityKey  struct{}
)

// RequestID returns the request's id.
func RequestID(c *fiber.Ctx) string { return requestIDOf(c) }

// IdentityFrom returns the identity authenticate verified for the request.
func IdentityFrom(c *fiber.Ctx) (domain.Identity, bool) {
	id, ok := c.Locals(identityKey{}).(domain.Identity)
	return id, ok
}

func (s *server) requestID(c *fiber.Ctx) error {
	id := c.Get(HeaderRequestID)
	if validRequestID(id) {
		id = strings.Clone(id) // the header's bytes belong to fasthttp's buffer
	} else {
		id = uuid.NewString()
	}
	c.Locals(requestIDKey{}, id)
	c.Set(HeaderRequestID, id)
	return c.Next()
}

// requestIDOf returns the request id, creating one for errors fiber raises
// before any middleware has run (body over the wire limit, read timeout).
func requestIDOf(c *fiber.Ctx) string {
	if id, ok := c.Locals(requestIDKey{}).(string); ok {
		return id
	}
	id := uuid.NewString()
	c.Locals(requestIDKey{}, id)
	c.Set(HeaderRequestID, id)
	return id
}

// validRequestID admits ids that are safe to log and echo: short, from a
// conservative alphabet.
func validRequestID(s string) bool {
	if s == "" || len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

// accessLog logs one line per request: method, route pattern (never the
// URL, whose query may carry cursors), status, duration, request id, and the
// caller's subject and role. It runs the error handler itself, as fiber's
// logger middleware does, so that the status it logs is the one sent.
func (s *server) accessLog(c *fiber.Ctx) error {
	start := s.now()
	if err := c.Next(); err != nil {
		if herr := s.handleError(c, err); herr != nil {
			_ = c.SendStatus(fiber.StatusInternalServerError)
		}
	}
	route, status, took := routeOf(c), c.Response().StatusCode(), s.now().Sub(start)
	if s.deps.Metrics != nil {
		// The method's bytes are fasthttp's, reused by the next request;
		// the metric keeps its labels for good.
		s.deps.Metrics.ObserveRequest(route, strings.Clone(c.Method()), status, took)
	}
	attrs := []slog.Attr{
		slog.String("method", c.Method()),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Duration("duration", took),
		slog.String("request_id", requestIDOf(c)),
	}
	if id, ok := IdentityFrom(c); ok {
		attrs = append(attrs, slog.String("sub", id.Subject), slog.String("role", string(id.Role)))
	}
	level := slog.LevelInfo
	if (route == "/healthz" || route == "/readyz") && status < 500 {
		level = slog.LevelDebug // probes every few seconds would drown the log
	}
	s.log.LogAttrs(context.Background(), level, "request", attrs...)
	return nil
}

// routeOf names the route that served c, or "-" when none did (a 404, or an
// error before routing): the raw path is not logged.
func routeOf(c *fiber.Ctx) string {
	if r := c.Route(); r != nil && r.Method != "USE" && len(r.Handlers) > 0 {
		return r.Path
	}
	return "-"
}

// recoverPanic turns a panic below it into an internal error, with the
// stack for the log: no panic reaches a client, or kills the server.
func (s *server) recoverPanic(c *fiber.Ctx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{value: r, stack: debug.Stack()}
		}
	}()
	return c.Next()
}

// authenticate requires a valid bearer token and puts its identity in the
// request's locals.
func (s *server) authenticate(c *fiber.Ctx) error {
	h := c.Get(fiber.HeaderAuthorization)
	if h == "" {
		return domain.Errorf(domain.CodeUnauthorized, "the request needs an Authorization: Bearer token")
	}
	scheme, token, ok := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		c.Set(fiber.HeaderWWWAuthenticate, bearerChallenge+`, error="invalid_request"`)
		return domain.Errorf(domain.CodeUnauthorized, "the Authorization header must be: Bearer <token>")
	}
	id, err := s.deps.Verifier.Verify(token)
	if err != nil {
		var revoked *domain.RevokedError
		if errors.As(err, &revoked) {
			s.holdRevoked(c, revoked.Identity)
		}
		if domain.ErrorCode(err) == domain.CodeUnauthorized {
			c.Set(fiber.HeaderWWWAuthenticate, bearerChallenge+`, error="invalid_token"`)
		}
		return err
	}
	c.Locals(identityKey{}, id)
	return c.Next()
}

// holdRevoked keeps a revoked device's push for review (DOMAIN.md: a lost or
// captured device's data is evidence), without merging it. Best effort: the
// answer is 401 whatever happens here.
func (s *server) holdRevoked(c *fiber.Ctx, id domain.Identity) {
	if s.deps.Holder == nil || c.Method() != fiber.MethodPost || c.Path() != "/v1/sync/push" {
		return
	}
	if checkJSON(c.Get(fiber.HeaderContentType)) != nil {
		return
	}
	changes, err := parsePush(c.Get(fiber.HeaderContentEncoding), c.Request().Body(), s.cfg.BodyLimit, s.cfg.MaxChanges)
	if err != nil || len(changes) == 0 {
		return
	}
	ctx, cancel := s.requestContext(c)
	defer cancel()
	if err := s.deps.Holder.Hold(ctx, id, changes); err != nil {
		s.log.Warn("could not hold a revoked device's push", slog.String("request_id", requestIDOf(c)), slog.String("error", err.Error()))
	}
}
