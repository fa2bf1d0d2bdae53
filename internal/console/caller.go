package console

import (
	"net"
	"sync"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// caller runs API requests in process through the Fiber app's own handler:
// the request goes through the same middleware (request id, access log,
// authentication, rate limit) and handlers as one from the network, and
// the response is read back from the fasthttp context. No socket, no TLS,
// no second copy of the API.
type caller struct {
	app     *fiber.App
	once    sync.Once
	handler fasthttp.RequestHandler
}

// apiRequest is one in-process API request.
type apiRequest struct {
	method string
	// target is the path and query, e.g. /v1/conflicts?status=open.
	target string
	// token is the caller's bearer token; never logged.
	token string
	// body, when not nil, is sent as application/json.
	body []byte
	// requestID is passed on as X-Request-ID, so the API's log lines and
	// problems carry the id of the console request that caused them.
	requestID string
	remote    net.Addr
}

// do runs r and returns the status and the body. The request carries no
// Accept-Encoding, so the body is never compressed.
func (c *caller) do(r apiRequest) (int, []byte) {
	// The handler is taken once, on the first request: by then every route
	// is registered (Mount runs before the server starts), and later calls
	// need not take the app's lock.
	c.once.Do(func() { c.handler = c.app.Handler() })

	var req fasthttp.Request
	req.Header.SetMethod(r.method)
	req.SetRequestURI(r.target)
	req.Header.SetHost("console.internal")
	req.Header.Set(fiber.HeaderAuthorization, "Bearer "+r.token)
	if r.requestID != "" {
		req.Header.Set(fiber.HeaderXRequestID, r.requestID)
	}
	if r.body != nil {
		req.Header.SetContentType(fiber.MIMEApplicationJSON)
		req.SetBody(r.body)
	}
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, r.remote, nil)
	c.handler(&ctx)

	body := ctx.Response.Body()
	if len(ctx.Response.Header.ContentEncoding()) > 0 {
		// Not expected (no Accept-Encoding was sent); decode rather than
		// hand compressed bytes to the JSON decoder.
		if b, err := ctx.Response.BodyUncompressed(); err == nil {
			body = b
		}
	}
	return ctx.Response.StatusCode(), append([]byte(nil), body...)
}
