package api

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/fieldsync/fieldsync/internal/domain"
)

// rateLimit counts the caller's requests in fixed windows shared by every
// server instance (Fiber's own limiter counts per process, so three
// instances would allow three times the limit). Over the limit the answer is
// 429 with Retry-After set to the end of the window. If the counter cannot be
// reached the request goes on: the database being down fails the request
// anyway, and a limiter must not turn a blip into an outage of its own.
func (s *server) rateLimit(c *fiber.Ctx) error {
	id, ok := IdentityFrom(c)
	limit := s.cfg.RateLimits[id.Role]
	if !ok || limit <= 0 || s.deps.RateCounter == nil {
		return c.Next()
	}
	secs := int64(s.cfg.RateWindow / time.Second)
	if secs < 1 {
		secs = 1
	}
	now := s.now().Unix()
	window := now / secs
	ctx, cancel := context.WithTimeout(c.UserContext(), 2*time.Second)
	defer cancel()
	n, err := s.deps.RateCounter.Hit(ctx, string(id.Role)+":"+id.Subject, window)
	if err != nil {
		s.log.Warn("rate limit counter unavailable; request allowed", slog.String("request_id", requestIDOf(c)), slog.String("error", err.Error()))
		return c.Next()
	}
	if n > int64(limit) {
		c.Set(fiber.HeaderRetryAfter, strconv.FormatInt(max(1, (window+1)*secs-now), 10))
		return domain.Errorf(domain.CodeRateLimited, "more than %d requests in %s; retry after the window ends", limit, s.cfg.RateWindow)
	}
	return c.Next()
}
