package api

import (
	"context"
	"errors"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"

	"github.com/fieldsync/fieldsync/internal/domain"
)

// readyTimeout bounds a readiness check: a probe that hangs is as bad as
// one that fails, and orchestrators time out probes after a few seconds.
const readyTimeout = 2 * time.Second

// healthz answers while the process runs: liveness, not readiness. It
// never looks at the database, so a database outage never gets a healthy
// server restarted.
func (s *server) healthz(c *fiber.Ctx) error {
	return sendJSON(c, []byte(`{"status":"ok"}`))
}

// readyz answers 200 when the server can serve sync traffic, 503 (with
// Retry-After) while the database is unreachable or its schema is behind.
func (s *server) readyz(c *fiber.Ctx) error {
	if s.deps.Ready != nil {
		ctx, cancel := context.WithTimeout(c.UserContext(), readyTimeout)
		defer cancel()
		if err := s.deps.Ready(ctx); err != nil {
			var de *domain.Error
			if errors.As(err, &de) && (de.Code == domain.CodeNotReady || de.Code == domain.CodeUnavailable) {
				return de
			}
			// Not ready for a reason Ready did not classify: still a 503,
			// not a 500, since a probe failing is not a bug.
			return domain.Errorf(domain.CodeUnavailable, "the server is not ready; retry shortly")
		}
	}
	return sendJSON(c, []byte(`{"status":"ready"}`))
}

// openAPI serves the spec the server implements.
func (s *server) openAPI(c *fiber.Ctx) error {
	if len(s.deps.OpenAPI) == 0 {
		return domain.Errorf(domain.CodeNotFound, "this server carries no OpenAPI document")
	}
	c.Set(fiber.HeaderContentType, "application/yaml")
	return c.Send(s.deps.OpenAPI)
}

// jwks serves the public keys tokens are signed with. Caches may keep it a
// few minutes: a rotated-in key signs only tokens issued after it, and
// verifiers fetch the set again when they meet an unknown kid.
func (s *server) jwks(c *fiber.Ctx) error {
	if s.deps.JWKS == nil {
		return domain.Errorf(domain.CodeNotFound, "this server publishes no key set")
	}
	b, err := s.deps.JWKS()
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Set(fiber.HeaderCacheControl, "public, max-age=300")
	return c.Send(b)
}

// metrics serves GET /metrics (Prometheus text format) to administrators:
// the figures describe the whole deployment's traffic.
func (s *server) metrics(c *fiber.Ctx) error {
	id, ok := IdentityFrom(c)
	if !ok {
		return errors.New("api: metrics route without authentication")
	}
	if id.Role != domain.RoleAdmin {
		return domain.Errorf(domain.CodeForbidden, "only administrators read the metrics")
	}
	if s.deps.Metrics == nil {
		return domain.Errorf(domain.CodeNotFound, "metrics are not served by this instance")
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return adaptor.HTTPHandler(s.deps.Metrics.Handler())(c)
}
