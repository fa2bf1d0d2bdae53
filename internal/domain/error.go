// Package domain holds fieldsync's server-side vocabulary: the identity a
// request acts as, the records and changes it moves (the sync engine's types),
// the store and service interfaces, and the one error type every layer uses.
// It imports only the standard library and sync/*.
package domain

import (
	"errors"
	"fmt"
)

// Error codes. They are stable: clients and tests match on them, and the API
// maps each to one HTTP status (internal/api). Per-change codes of push
// results are the engine's (sync/merge Code*) plus CodeOutOfScope.
const (
	CodeInvalidJSON     = "invalid_json"           // 400: the body is not the JSON the route takes
	CodeInvalidGzip     = "invalid_gzip"           // 400: a gzip body that does not inflate
	CodeInvalidParam    = "invalid_parameter"      // 400: a query or path parameter out of its domain
	CodeInvalidCursor   = "invalid_cursor"         // 400: a pull cursor that does not parse
	CodeInvalidChangeID = "invalid_change_id"      // 422: a change without a usable change_id
	CodeUnsupportedType = "unsupported_media_type" // 415: not JSON, or an encoding other than gzip
	CodeBodyTooLarge    = "body_too_large"         // 413: body over the limit, after decompression
	CodeTooManyChanges  = "too_many_changes"       // 413: more changes than a push may carry
	CodeUnauthorized    = "unauthorized"           // 401: no valid token
	CodeForbidden       = "forbidden"              // 403: the token's role may not use the route
	CodeNotFound        = "not_found"              // 404
	CodeMethodNotAllow  = "method_not_allowed"     // 405
	CodeTimeout         = "timeout"                // 408: the request body did not arrive in time
	CodeUnavailable     = "unavailable"            // 503: the database is unreachable; retry
	CodeNotReady        = "not_ready"              // 503: the schema is behind the binary
	CodeInternal        = "internal"               // 500: a bug; logged with the request id
	CodeRateLimited     = "rate_limited"           // 429: over the caller's request rate; see Retry-After
	CodeOutOfScope      = "out_of_scope"           // push result: another unit's record or a collection the role may not write
)

// Error is an error a client can act on: a stable code and a readable
// message. Anything else that reaches the API is internal.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err's *Error, CodeInternal when it has none.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrUnavailable wraps errors of a database that cannot be reached (network,
// restart, too many connections): the request may be retried.
var ErrUnavailable = &Error{Code: CodeUnavailable, Message: "the database is unavailable; retry shortly"}
