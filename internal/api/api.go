package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/compress"

	"github.com/fieldsync/fieldsync/internal/domain"
)

// Defaults of Config (PROTOCOL.md: 500 changes and 4 MiB decompressed per
// push; pages of 500, at most 1000).
const (
	DefaultBodyLimit        = 4 << 20
	DefaultMaxChanges       = 500
	DefaultPullDefaultLimit = 500
	DefaultPullMaxLimit     = 1000
	// Reading a whole request may take long on a 2G or satellite link: a
	// full 4 MiB batch gzipped to a few hundred KiB at ~30 KiB/s is
	// tens of seconds. The read timeout still bounds a slow-loris client.
	DefaultReadTimeout    = 60 * time.Second
	DefaultWriteTimeout   = 60 * time.Second
	DefaultIdleTimeout    = 120 * time.Second
	DefaultHandlerTimeout = 30 * time.Second
)

// Config holds the HTTP layer's limits. Zero values take the defaults.
type Config struct {
	// BodyLimit is the largest push body, in bytes, after decompression.
	BodyLimit int
	// MaxChanges is the most changes one push may carry.
	MaxChanges int
	// PullDefaultLimit is the page size of a pull without limit.
	PullDefaultLimit int
	// PullMaxLimit is the largest limit a pull may ask for.
	PullMaxLimit int
	// ReadTimeout bounds reading one whole request, body included.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one response.
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long (graceful
	// shutdown waits for them otherwise).
	IdleTimeout time.Duration
	// RateLimits is the most requests per RateWindow each role's callers
	// (by subject) may make to /v1 routes; a role absent or at 0 is not
	// limited. Counts are kept in Deps.RateCounter, shared by instances.
	RateLimits map[domain.Role]int
	// RateWindow is the rate-limit window (default one minute).
	RateWindow time.Duration
	// HandlerTimeout bounds the syncer's work for one request; past it the
	// request fails with 503 and nothing is committed, so the device
	// retries the same batch.
	HandlerTimeout time.Duration
}

func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.BodyLimit, DefaultBodyLimit)
	def(&c.MaxChanges, DefaultMaxChanges)
	def(&c.PullMaxLimit, DefaultPullMaxLimit)
	def(&c.PullDefaultLimit, DefaultPullDefaultLimit)
	c.PullDefaultLimit = min(c.PullDefaultLimit, c.PullMaxLimit)
	defDur(&c.ReadTimeout, DefaultReadTimeout)
	defDur(&c.WriteTimeout, DefaultWriteTimeout)
	defDur(&c.IdleTimeout, DefaultIdleTimeout)
	defDur(&c.HandlerTimeout, DefaultHandlerTimeout)
	defDur(&c.RateWindow, time.Minute)
	return c
}

// wireLimit is the largest request body fiber reads off the wire: BodyLimit
// plus what gzip can add to incompressible data (5 bytes per 64 KiB stored
// block and a header), so an honest gzip body at the limit still arrives
// and is measured after inflation.
func (c Config) wireLimit() int { return c.BodyLimit + c.BodyLimit/1024 + 4096 }

// Verifier checks a bearer token (auth.Keyring implements it). Its errors
// are *domain.Error: CodeUnauthorized for a bad token, CodeUnavailable when
// it cannot decide now.
type Verifier interface {
	Verify(token string) (domain.Identity, error)
}

// Holder keeps the changes a revoked device sent, unmerged (syncer.Service).
type Holder interface {
	Hold(ctx context.Context, id domain.Identity, changes []json.RawMessage) error
}

// Deps are the services the HTTP layer calls.
type Deps struct {
	Syncer   domain.Syncer
	Verifier Verifier
	// JWKS returns the public key set served at /.well-known/jwks.json;
	// nil serves 404.
	JWKS func() ([]byte, error)
	// Ready reports whether the server can serve sync traffic: nil, or a
	// *domain.Error with CodeNotReady (schema behind) or CodeUnavailable
	// (database unreachable). nil Ready means always ready.
	Ready func(ctx context.Context) error
	// Holder keeps what a revoked device pushes, for review (nil: dropped).
	Holder Holder
	// RateCounter keeps rate-limit counts (nil: no limits).
	RateCounter domain.RateCounter
	// Devices enrols, refreshes and revokes devices; nil answers those
	// routes with 404.
	Devices DeviceService
	// Review serves the supervisors' reads and Decisions their
	// resolutions and sign-offs; nil answers those routes with 404.
	Review    ReviewReader
	Decisions ReviewWriter
	// Metrics receives every answered request and serves GET /metrics (to
	// administrators); nil serves 404.
	Metrics Metrics
	// OpenAPI is the spec served at /openapi.yaml; empty serves 404.
	OpenAPI []byte
	// Logger receives the access log and internal errors; nil means
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock for request durations; nil means time.Now.
	Now func() time.Time
}

// Metrics is the instrumentation the HTTP layer reports to
// (internal/metrics).
type Metrics interface {
	ObserveRequest(route, method string, status int, d time.Duration)
	Handler() http.Handler
}

// server is the state the handlers share.
type server struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	now  func() time.Time
}

// Route is one method and path the app serves, the path written as in
// openapi.yaml ({name} for parameters).
type Route struct {
	Method string
	Path   string
}

// Routes lists every route New registers (HEAD, which fiber adds for each
// GET, aside). A test keeps it equal to the app's routes; compare it with
// the paths of openapi.yaml.
func Routes() []Route {
	return []Route{
		{fiber.MethodGet, "/healthz"},
		{fiber.MethodGet, "/readyz"},
		{fiber.MethodGet, "/openapi.yaml"},
		{fiber.MethodGet, "/.well-known/jwks.json"},
		{fiber.MethodGet, "/metrics"},
		{fiber.MethodPost, "/v1/devices/enroll"},
		{fiber.MethodPost, "/v1/auth/refresh"},
		{fiber.MethodPost, "/v1/sync/push"},
		{fiber.MethodGet, "/v1/sync/pull"},
		{fiber.MethodPost, "/v1/devices/{id}/revoke"},
		{fiber.MethodGet, "/v1/patrol-logs"},
		{fiber.MethodGet, "/v1/patrol-logs/{id}"},
		{fiber.MethodPost, "/v1/patrol-logs/{id}/sign-off"},
		{fiber.MethodGet, "/v1/records/{collection}/{id}/history"},
		{fiber.MethodGet, "/v1/conflicts"},
		{fiber.MethodGet, "/v1/conflicts/{id}"},
		{fiber.MethodPost, "/v1/conflicts/{id}/resolve"},
		{fiber.MethodGet, "/v1/rejections"},
		{fiber.MethodGet, "/v1/reports/corridors"},
	}
}

// New returns the fieldsync HTTP app. deps.Syncer and deps.Verifier are
// required: New panics without them, at start-up rather than on the first
// request.
func New(cfg Config, deps Deps) *fiber.App {
	if deps.Syncer == nil || deps.Verifier == nil {
		panic("api: New needs Deps.Syncer and Deps.Verifier")
	}
	s := &server{cfg: cfg.withDefaults(), deps: deps, log: deps.Logger, now: deps.Now}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	app := fiber.New(fiber.Config{
		BodyLimit:    s.cfg.wireLimit(),
		ReadTimeout:  s.cfg.ReadTimeout,
		WriteTimeout: s.cfg.WriteTimeout,
		IdleTimeout:  s.cfg.IdleTimeout,
		// The routes are a contract (openapi.yaml): /v1/sync/push/ and
		// /V1/SYNC/PUSH are not it.
		StrictRouting:         true,
		CaseSensitive:         true,
		DisableStartupMessage: true,
		ErrorHandler:          s.handleError,
	})

	// Order matters: the request id first so that every log line and
	// problem has it; the access log wraps everything so that it sees the
	// final status (it runs the error handler itself); recover inside it so
	// a panic becomes an error the access log and error handler see.
	// Responses are compressed for clients that ask; error responses, which
	// the error handler writes after compress has returned, are small and
	// go out plain.
	app.Use(s.requestID, s.accessLog, s.recoverPanic, compress.New(compress.Config{Level: compress.LevelDefault}))

	app.Get("/healthz", s.healthz)
	app.Get("/readyz", s.readyz)
	app.Get("/openapi.yaml", s.openAPI)
	app.Get("/.well-known/jwks.json", s.jwks)
	app.Get("/metrics", s.authenticate, s.metrics)

	// Enrolment and refresh carry their proof in the body, not a bearer
	// token; they are registered before the /v1 group so its
	// authentication never runs for them.
	app.Post("/v1/devices/enroll", s.enroll)
	app.Post("/v1/auth/refresh", s.refresh)

	v1 := app.Group("/v1", s.authenticate, s.rateLimit)
	v1.Post("/sync/push", s.push)
	v1.Get("/sync/pull", s.pull)
	v1.Post("/devices/:id/revoke", s.revoke)
	v1.Get("/patrol-logs", s.patrolLogs)
	v1.Get("/patrol-logs/:id", s.patrolLog)
	v1.Post("/patrol-logs/:id/sign-off", s.signOff)
	v1.Get("/records/:collection/:id/history", s.history)
	v1.Get("/conflicts", s.conflicts)
	v1.Get("/conflicts/:id", s.conflict)
	v1.Post("/conflicts/:id/resolve", s.resolve)
	v1.Get("/rejections", s.rejections)
	v1.Get("/reports/corridors", s.corridorReport)
	return app
}

// requestContext is the context the syncer runs in: bounded by
// HandlerTimeout, because fasthttp never cancels a request's context when
// its client goes away.
func (s *server) requestContext(c *fiber.Ctx) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.UserContext(), s.cfg.HandlerTimeout)
}
