package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/fieldsync/fieldsync/internal/domain"
)

// ProblemTypeBase prefixes a problem's code to make its type URI: every
// code has its own type, so a client may switch on either.
const ProblemTypeBase = "https://fieldsync.dev/problems/"

// ContentTypeProblem is the media type of error responses (RFC 9457).
const ContentTypeProblem = "application/problem+json"

// RetryAfterSeconds is the Retry-After of every 503: short, because the
// usual causes (a database restart, a network blip, migrations finishing)
// pass in seconds and devices sync in short windows.
const RetryAfterSeconds = "2"

// Transport-level codes that have no domain.Error: fiber and fasthttp
// produce them before any fieldsync code runs. They belong in domain's code
// list; they live here until it has them.
const (
	codeBadRequest      = "bad_request"       // 400: a request that is not HTTP fiber can parse
	codeRateLimited     = "rate_limited"      // 429: reserved for rate limiting
	codeHeadersTooLarge = "headers_too_large" // 431: request headers over fiber's read buffer
)

// Fixed details: an internal error's own text never reaches the client.
const (
	internalErrorDetail  = "an internal error occurred; quote the request id when reporting it"
	unavailableRetryHint = "the service is unavailable; retry shortly"
)

// statusOf maps each code to its HTTP status. A *domain.Error whose code is
// missing here is a bug (an unmapped code) and answers 500.
var statusOf = map[string]int{
	domain.CodeInvalidJSON:     http.StatusBadRequest,
	domain.CodeInvalidGzip:     http.StatusBadRequest,
	domain.CodeInvalidParam:    http.StatusBadRequest,
	domain.CodeInvalidCursor:   http.StatusBadRequest,
	codeBadRequest:             http.StatusBadRequest,
	domain.CodeUnauthorized:    http.StatusUnauthorized,
	domain.CodeForbidden:       http.StatusForbidden,
	domain.CodeNotFound:        http.StatusNotFound,
	domain.CodeMethodNotAllow:  http.StatusMethodNotAllowed,
	domain.CodeTimeout:         http.StatusRequestTimeout,
	domain.CodeBodyTooLarge:    http.StatusRequestEntityTooLarge,
	domain.CodeTooManyChanges:  http.StatusRequestEntityTooLarge,
	domain.CodeUnsupportedType: http.StatusUnsupportedMediaType,
	domain.CodeInvalidChangeID: http.StatusUnprocessableEntity,
	domain.CodeInvalidBody:     http.StatusUnprocessableEntity,
	domain.CodeNotResolvable:   http.StatusUnprocessableEntity,
	domain.CodeConflictClosed:  http.StatusConflict,
	domain.CodeAlreadySigned:   http.StatusConflict,
	codeRateLimited:            http.StatusTooManyRequests,
	codeHeadersTooLarge:        http.StatusRequestHeaderFieldsTooLarge,
	domain.CodeUnavailable:     http.StatusServiceUnavailable,
	domain.CodeNotReady:        http.StatusServiceUnavailable,
	domain.CodeInternal:        http.StatusInternalServerError,
}

// titles are the problems' short, fixed summaries (RFC 9457: the title does
// not change from occurrence to occurrence; detail does).
var titles = map[string]string{
	domain.CodeInvalidJSON:     "Invalid JSON body",
	domain.CodeInvalidGzip:     "Invalid gzip body",
	domain.CodeInvalidParam:    "Invalid parameter",
	domain.CodeInvalidCursor:   "Invalid cursor",
	codeBadRequest:             "Bad request",
	domain.CodeUnauthorized:    "Unauthorized",
	domain.CodeForbidden:       "Forbidden",
	domain.CodeNotFound:        "Not found",
	domain.CodeMethodNotAllow:  "Method not allowed",
	domain.CodeTimeout:         "Request timeout",
	domain.CodeBodyTooLarge:    "Body too large",
	domain.CodeTooManyChanges:  "Too many changes",
	domain.CodeUnsupportedType: "Unsupported media type",
	domain.CodeInvalidChangeID: "Invalid change id",
	domain.CodeInvalidBody:     "Invalid body values",
	domain.CodeNotResolvable:   "Cannot resolve so",
	domain.CodeConflictClosed:  "Conflict already closed",
	domain.CodeAlreadySigned:   "Already signed off",
	codeRateLimited:            "Too many requests",
	codeHeadersTooLarge:        "Request headers too large",
	domain.CodeUnavailable:     "Service unavailable",
	domain.CodeNotReady:        "Not ready",
	domain.CodeInternal:        "Internal error",
}

// fiberCodes maps the statuses of fiber's own errors (route not found,
// method not allowed, body over the wire limit, read timeout, unparsable
// request) to codes, with a detail of our own: fiber's messages echo the
// path or, for parse errors, fasthttp's read buffer.
var fiberCodes = map[int]struct{ code, detail string }{
	http.StatusBadRequest:                  {codeBadRequest, "the request is not valid HTTP"},
	http.StatusNotFound:                    {domain.CodeNotFound, "no route matches the request path"},
	http.StatusMethodNotAllowed:            {domain.CodeMethodNotAllow, "the route does not allow this method; see the Allow header"},
	http.StatusRequestTimeout:              {domain.CodeTimeout, "the request did not arrive in time"},
	http.StatusRequestEntityTooLarge:       {domain.CodeBodyTooLarge, "the request body is over the limit"},
	http.StatusUnsupportedMediaType:        {domain.CodeUnsupportedType, "the request's media type is not supported"},
	http.StatusTooManyRequests:             {codeRateLimited, "too many requests; retry later"},
	http.StatusRequestHeaderFieldsTooLarge: {codeHeadersTooLarge, "the request headers are too large"},
	http.StatusServiceUnavailable:          {domain.CodeUnavailable, unavailableRetryHint},
}

// problem is an RFC 9457 problem document with fieldsync's extension
// members code and request_id.
type problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	Code      string `json:"code"`
	Instance  string `json:"instance,omitempty"`
	RequestID string `json:"request_id"`
}

// panicError is a recovered panic: internal, logged with its stack.
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.value) }

// classify returns the code and detail err answers with, and whether it is
// internal (a bug, to log).
func classify(err error) (code, detail string, internal bool) {
	var (
		pe *panicError
		de *domain.Error
		fe *fiber.Error
	)
	switch {
	case errors.As(err, &pe):
		return domain.CodeInternal, internalErrorDetail, true
	case errors.As(err, &de):
		if _, known := statusOf[de.Code]; !known || de.Code == domain.CodeInternal {
			return domain.CodeInternal, internalErrorDetail, true
		}
		return de.Code, de.Message, false
	case errors.As(err, &fe):
		if m, ok := fiberCodes[fe.Code]; ok {
			return m.code, m.detail, false
		}
		if fe.Code >= 400 && fe.Code < 500 {
			return codeBadRequest, "the request cannot be served", false
		}
		return domain.CodeInternal, internalErrorDetail, true
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		// The handler timeout passed (or the server is shutting down):
		// nothing was committed, and the device should simply retry.
		return domain.CodeUnavailable, unavailableRetryHint, false
	}
	return domain.CodeInternal, internalErrorDetail, true
}

// handleError is the app's one error handler: every error of a handler, a
// middleware or fiber itself becomes a problem document here. Only internal
// errors are logged, once, with the request id; their text never reaches
// the client.
func (s *server) handleError(c *fiber.Ctx, err error) error {
	code, detail, internal := classify(err)
	status := statusOf[code]
	rid := requestIDOf(c)
	if internal {
		attrs := []slog.Attr{
			slog.String("request_id", rid),
			slog.String("method", c.Method()),
			slog.String("route", routeOf(c)),
			slog.String("error", err.Error()),
		}
		var pe *panicError
		if errors.As(err, &pe) {
			attrs = append(attrs, slog.String("stack", string(pe.stack)))
		}
		s.log.LogAttrs(context.Background(), slog.LevelError, "internal error", attrs...)
	}

	switch status {
	case http.StatusServiceUnavailable:
		c.Set(fiber.HeaderRetryAfter, RetryAfterSeconds)
	case http.StatusUnauthorized:
		// RFC 6750 §3: a 401 names the scheme. authenticate may have set a
		// more precise challenge already.
		if len(c.Response().Header.Peek(fiber.HeaderWWWAuthenticate)) == 0 {
			c.Set(fiber.HeaderWWWAuthenticate, bearerChallenge)
		}
	}
	body, merr := json.Marshal(problem{
		Type:      ProblemTypeBase + code,
		Title:     titles[code],
		Status:    status,
		Detail:    detail,
		Code:      code,
		Instance:  c.Path(),
		RequestID: rid,
	})
	if merr != nil {
		return merr // cannot happen: every member is a string or an int
	}
	// A handler that failed halfway may have set these for a response that
	// is not being sent.
	c.Response().Header.Del(fiber.HeaderContentEncoding)
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set(fiber.HeaderContentType, ContentTypeProblem)
	return c.Status(status).Send(body)
}
