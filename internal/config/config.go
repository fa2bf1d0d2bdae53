// Package config holds fieldsync's configuration: defaults, FIELDSYNC_*
// environment variables and command-line flags (flags win over the
// environment, the environment over defaults), validation before anything is
// opened, and a printable form with secrets masked.
package config

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config is the server's configuration.
type Config struct {
	Addr        string // listen address
	DatabaseURL string // a postgres:// URL, or an SQLite file path
	AutoMigrate bool   // apply pending migrations at serve start
	Dev         bool   // development mode: create a signing key and print a device token

	MaxChanges           int           // changes per push
	MaxBodyBytes         int64         // push body, after decompression
	MaxClockSkew         time.Duration // how far ahead a device stamp may be before it is clamped
	MaxVVEntries         int           // entries in a change's version vector
	IdempotencyRetention time.Duration // how long change ids are remembered
	CorridorMaxAge       time.Duration // default corridor max age before its status reads stale
	PullDefaultLimit     int
	PullMaxLimit         int

	ReadTimeout     time.Duration
	WriteTimeout    time.Duration
	IdleTimeout     time.Duration
	ShutdownTimeout time.Duration

	JWTIssuer       string
	JWTAudience     string
	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration // refresh tokens outlive weeks offline
	TokenLeeway     time.Duration

	ExternalIssuers      string        // path of a JSON file of external token issuers ("" for none)
	ExternalJWKSCooldown time.Duration // least time between two key-set fetches of one issuer

	RateLimitDevice     int // requests per minute per device (0: unlimited)
	RateLimitPartner    int // requests per minute per partner client
	RateLimitSupervisor int // requests per minute per supervisor

	DBMaxConns int
	// SQLite's page cache and memory-mapped window, in MiB: bigger reads
	// faster and holds more of the server's memory (docs/benchmarks.md).
	SQLiteCacheMiB int
	SQLiteMmapMiB  int
	LogLevel       string // debug, info, warn, error
	LogFormat      string // json or text

	// PprofAddr, when set, serves net/http/pprof on this loopback address
	// (an operator's flag: only who can start the process can turn it on).
	PprofAddr string

	// ConsoleKey keys the console's CSRF tokens; every instance behind one
	// load balancer needs the same (empty: a random key per process).
	ConsoleKey string
}

// Default returns the defaults: an embedded SQLite file in the working
// directory and the protocol's limits.
func Default() Config {
	return Config{
		Addr:                 ":8080",
		DatabaseURL:          "fieldsync.db",
		AutoMigrate:          true,
		MaxChanges:           500,
		MaxBodyBytes:         4 << 20,
		MaxClockSkew:         60 * time.Second,
		MaxVVEntries:         256,
		IdempotencyRetention: 90 * 24 * time.Hour,
		CorridorMaxAge:       6 * time.Hour,
		PullDefaultLimit:     500,
		PullMaxLimit:         1000,
		ReadTimeout:          30 * time.Second,
		WriteTimeout:         30 * time.Second,
		IdleTimeout:          120 * time.Second,
		ShutdownTimeout:      20 * time.Second,
		JWTIssuer:            "fieldsync",
		JWTAudience:          "fieldsync",
		AccessTokenTTL:       15 * time.Minute,
		RefreshTokenTTL:      60 * 24 * time.Hour,
		TokenLeeway:          30 * time.Second,
		ExternalJWKSCooldown: 5 * time.Minute,
		RateLimitDevice:      300,
		RateLimitPartner:     120,
		RateLimitSupervisor:  600,
		DBMaxConns:           16,
		SQLiteCacheMiB:       16,
		LogLevel:             "info",
		LogFormat:            "json",
	}
}

// Bind registers the configuration's flags on fs, each defaulting to the
// FIELDSYNC_* environment variable when set, else to c's value.
func (c *Config) Bind(fs *flag.FlagSet, getenv func(string) string) error {
	var errs []error
	str := func(p *string, name, env, usage string) {
		if v := getenv(env); v != "" {
			*p = v
		}
		fs.StringVar(p, name, *p, usage+" ("+env+")")
	}
	boolean := func(p *bool, name, env, usage string) {
		if v := getenv(env); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not a boolean", env, v))
			}
			*p = b
		}
		fs.BoolVar(p, name, *p, usage+" ("+env+")")
	}
	integer := func(p *int, name, env, usage string) {
		if v := getenv(env); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not a whole number", env, v))
			}
			*p = n
		}
		fs.IntVar(p, name, *p, usage+" ("+env+")")
	}
	dur := func(p *time.Duration, name, env, usage string) {
		if v := getenv(env); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not a duration (e.g. 90s, 15m, 2160h)", env, v))
			}
			*p = d
		}
		fs.DurationVar(p, name, *p, usage+" ("+env+")")
	}
	str(&c.Addr, "addr", "FIELDSYNC_ADDR", "listen address")
	str(&c.DatabaseURL, "database-url", "FIELDSYNC_DATABASE_URL", "postgres:// URL, or an SQLite file path")
	boolean(&c.AutoMigrate, "auto-migrate", "FIELDSYNC_AUTO_MIGRATE", "apply pending migrations at start")
	boolean(&c.Dev, "dev", "FIELDSYNC_DEV", "development mode: create a signing key and print a device token")
	integer(&c.MaxChanges, "max-changes", "FIELDSYNC_MAX_CHANGES", "most changes in one push")
	if v := getenv("FIELDSYNC_MAX_BODY_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("FIELDSYNC_MAX_BODY_BYTES: %q is not a whole number", v))
		}
		c.MaxBodyBytes = n
	}
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", c.MaxBodyBytes, "largest push body after decompression, in bytes (FIELDSYNC_MAX_BODY_BYTES)")
	dur(&c.MaxClockSkew, "max-clock-skew", "FIELDSYNC_MAX_CLOCK_SKEW", "how far ahead of the server a device clock may be before its stamps are clamped")
	integer(&c.MaxVVEntries, "max-vv-entries", "FIELDSYNC_MAX_VV_ENTRIES", "most entries in a change's version vector")
	dur(&c.IdempotencyRetention, "idempotency-retention", "FIELDSYNC_IDEMPOTENCY_RETENTION", "how long change ids are remembered")
	dur(&c.CorridorMaxAge, "corridor-max-age", "FIELDSYNC_CORRIDOR_MAX_AGE", "default age after which a corridor status reads stale")
	integer(&c.PullDefaultLimit, "pull-default-limit", "FIELDSYNC_PULL_DEFAULT_LIMIT", "records per pull page when the client sets no limit")
	integer(&c.PullMaxLimit, "pull-max-limit", "FIELDSYNC_PULL_MAX_LIMIT", "largest pull page")
	dur(&c.ReadTimeout, "read-timeout", "FIELDSYNC_READ_TIMEOUT", "time to read a request")
	dur(&c.WriteTimeout, "write-timeout", "FIELDSYNC_WRITE_TIMEOUT", "time to write a response")
	dur(&c.IdleTimeout, "idle-timeout", "FIELDSYNC_IDLE_TIMEOUT", "keep-alive idle time")
	dur(&c.ShutdownTimeout, "shutdown-timeout", "FIELDSYNC_SHUTDOWN_TIMEOUT", "time to finish in-flight requests on SIGTERM")
	str(&c.JWTIssuer, "jwt-issuer", "FIELDSYNC_JWT_ISSUER", "iss of the tokens this server issues and accepts")
	str(&c.JWTAudience, "jwt-audience", "FIELDSYNC_JWT_AUDIENCE", "aud of the tokens this server issues and accepts")
	dur(&c.AccessTokenTTL, "access-token-ttl", "FIELDSYNC_ACCESS_TOKEN_TTL", "lifetime of access tokens")
	dur(&c.RefreshTokenTTL, "refresh-token-ttl", "FIELDSYNC_REFRESH_TOKEN_TTL", "lifetime of device refresh tokens (they must outlast weeks offline)")
	dur(&c.TokenLeeway, "token-leeway", "FIELDSYNC_TOKEN_LEEWAY", "clock leeway when checking exp, nbf and iat")
	str(&c.ExternalIssuers, "external-issuers", "FIELDSYNC_EXTERNAL_ISSUERS", "JSON file of external token issuers (partners' identity providers)")
	dur(&c.ExternalJWKSCooldown, "external-jwks-cooldown", "FIELDSYNC_EXTERNAL_JWKS_COOLDOWN", "least time between two key-set fetches of one external issuer")
	integer(&c.RateLimitDevice, "rate-limit-device", "FIELDSYNC_RATE_LIMIT_DEVICE", "requests per minute per device, across instances (0: unlimited)")
	integer(&c.RateLimitPartner, "rate-limit-partner", "FIELDSYNC_RATE_LIMIT_PARTNER", "requests per minute per partner client, across instances (0: unlimited)")
	integer(&c.RateLimitSupervisor, "rate-limit-supervisor", "FIELDSYNC_RATE_LIMIT_SUPERVISOR", "requests per minute per supervisor, across instances (0: unlimited)")
	integer(&c.DBMaxConns, "db-max-conns", "FIELDSYNC_DB_MAX_CONNS", "PostgreSQL connection pool size")
	integer(&c.SQLiteCacheMiB, "sqlite-cache-mib", "FIELDSYNC_SQLITE_CACHE_MIB", "SQLite page cache in MiB")
	integer(&c.SQLiteMmapMiB, "sqlite-mmap-mib", "FIELDSYNC_SQLITE_MMAP_MIB", "SQLite memory-mapped reads in MiB (0: off; mapped pages count in the process's memory)")
	str(&c.LogLevel, "log-level", "FIELDSYNC_LOG_LEVEL", "debug, info, warn or error")
	str(&c.LogFormat, "log-format", "FIELDSYNC_LOG_FORMAT", "json or text")
	str(&c.ConsoleKey, "console-key", "FIELDSYNC_CONSOLE_KEY", "secret (32+ characters) keying the console's form tokens; the same on every instance (empty: random per process)")
	str(&c.PprofAddr, "pprof-addr", "FIELDSYNC_PPROF_ADDR", "serve Go profiles (net/http/pprof) on this loopback address, e.g. 127.0.0.1:6060 (empty: off)")
	return errors.Join(errs...)
}

// Validate checks every value before anything is opened.
func (c *Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(strings.TrimSpace(c.Addr) != "", "addr must not be empty")
	check(strings.TrimSpace(c.DatabaseURL) != "", "database-url must not be empty")
	check(c.MaxChanges >= 1 && c.MaxChanges <= 100_000, "max-changes must be 1..100000, got %d", c.MaxChanges)
	check(c.MaxBodyBytes >= 1024 && c.MaxBodyBytes <= 1<<30, "max-body-bytes must be 1 KiB..1 GiB, got %d", c.MaxBodyBytes)
	check(c.MaxClockSkew >= 0, "max-clock-skew must not be negative")
	check(c.MaxVVEntries >= 2 && c.MaxVVEntries <= 4096, "max-vv-entries must be 2..4096, got %d", c.MaxVVEntries)
	check(c.IdempotencyRetention >= 24*time.Hour, "idempotency-retention must be at least 24h (devices retry after days offline), got %s", c.IdempotencyRetention)
	check(c.CorridorMaxAge > 0, "corridor-max-age must be positive")
	check(c.PullMaxLimit >= 1 && c.PullMaxLimit <= 10_000, "pull-max-limit must be 1..10000, got %d", c.PullMaxLimit)
	check(c.PullDefaultLimit >= 1 && c.PullDefaultLimit <= c.PullMaxLimit, "pull-default-limit must be 1..pull-max-limit, got %d", c.PullDefaultLimit)
	check(c.ReadTimeout > 0 && c.WriteTimeout > 0 && c.IdleTimeout > 0, "timeouts must be positive")
	check(c.ShutdownTimeout > 0, "shutdown-timeout must be positive")
	check(c.JWTIssuer != "" && c.JWTAudience != "", "jwt-issuer and jwt-audience must not be empty")
	check(c.AccessTokenTTL >= time.Minute && c.AccessTokenTTL <= 24*time.Hour, "access-token-ttl must be 1m..24h, got %s", c.AccessTokenTTL)
	check(c.RefreshTokenTTL >= 24*time.Hour && c.RefreshTokenTTL <= 365*24*time.Hour, "refresh-token-ttl must be 24h..8760h, got %s", c.RefreshTokenTTL)
	check(c.TokenLeeway >= 0 && c.TokenLeeway <= 5*time.Minute, "token-leeway must be 0..5m, got %s", c.TokenLeeway)
	check(c.ExternalJWKSCooldown > 0, "external-jwks-cooldown must be positive")
	check(c.RateLimitDevice >= 0 && c.RateLimitPartner >= 0 && c.RateLimitSupervisor >= 0, "rate limits must not be negative")
	check(c.DBMaxConns >= 1 && c.DBMaxConns <= 1000, "db-max-conns must be 1..1000, got %d", c.DBMaxConns)
	check(c.SQLiteCacheMiB >= 1 && c.SQLiteCacheMiB <= 65536, "sqlite-cache-mib must be 1..65536, got %d", c.SQLiteCacheMiB)
	check(c.SQLiteMmapMiB >= 0 && c.SQLiteMmapMiB <= 1<<20, "sqlite-mmap-mib must be 0..1048576, got %d", c.SQLiteMmapMiB)
	_, lerr := c.Level()
	check(lerr == nil, "log-level must be debug, info, warn or error, got %q", c.LogLevel)
	check(c.LogFormat == "json" || c.LogFormat == "text", "log-format must be json or text, got %q", c.LogFormat)
	check(c.ConsoleKey == "" || len(c.ConsoleKey) >= 32, "console-key must be at least 32 characters")
	check(c.PprofAddr == "" || loopback(c.PprofAddr), "pprof-addr must be a loopback address such as 127.0.0.1:6060 (profiles reveal memory contents), got %q", c.PprofAddr)
	return errors.Join(errs...)
}

// loopback reports whether addr is host:port with a loopback host.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Level returns the slog level of LogLevel.
func (c *Config) Level() (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(c.LogLevel))
	return l, err
}

// MaskedDatabaseURL returns the database URL with any password replaced.
func (c *Config) MaskedDatabaseURL() string {
	u, err := url.Parse(c.DatabaseURL)
	if err != nil || u.User == nil {
		if strings.Contains(c.DatabaseURL, "password=") {
			return "(masked: contains a password)"
		}
		return c.DatabaseURL
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// LogAttrs returns the configuration as log attributes, secrets masked.
func (c *Config) LogAttrs() []any {
	return []any{
		slog.String("addr", c.Addr),
		slog.String("database_url", c.MaskedDatabaseURL()),
		slog.Bool("auto_migrate", c.AutoMigrate),
		slog.Bool("dev", c.Dev),
		slog.Int("max_changes", c.MaxChanges),
		slog.Int64("max_body_bytes", c.MaxBodyBytes),
		slog.Duration("max_clock_skew", c.MaxClockSkew),
		slog.Int("max_vv_entries", c.MaxVVEntries),
		slog.Duration("idempotency_retention", c.IdempotencyRetention),
		slog.Duration("corridor_max_age", c.CorridorMaxAge),
		slog.Int("pull_default_limit", c.PullDefaultLimit),
		slog.Int("pull_max_limit", c.PullMaxLimit),
		slog.Duration("read_timeout", c.ReadTimeout),
		slog.Duration("write_timeout", c.WriteTimeout),
		slog.Duration("shutdown_timeout", c.ShutdownTimeout),
		slog.String("jwt_issuer", c.JWTIssuer),
		slog.String("jwt_audience", c.JWTAudience),
		slog.Duration("access_token_ttl", c.AccessTokenTTL),
		slog.Duration("refresh_token_ttl", c.RefreshTokenTTL),
		slog.String("external_issuers", c.ExternalIssuers),
		slog.Int("rate_limit_device", c.RateLimitDevice),
		slog.Int("rate_limit_partner", c.RateLimitPartner),
		slog.Int("rate_limit_supervisor", c.RateLimitSupervisor),
		slog.Int("db_max_conns", c.DBMaxConns),
		slog.Int("sqlite_cache_mib", c.SQLiteCacheMiB),
		slog.Int("sqlite_mmap_mib", c.SQLiteMmapMiB),
		slog.String("log_level", c.LogLevel),
		slog.String("pprof_addr", c.PprofAddr),
		slog.Bool("console_key_set", c.ConsoleKey != ""),
	}
}

// FromEnv is a convenience for tools: defaults overlaid with the environment.
func FromEnv() (Config, error) {
	c := Default()
	fs := flag.NewFlagSet("env", flag.ContinueOnError)
	if err := c.Bind(fs, os.Getenv); err != nil {
		return c, err
	}
	return c, c.Validate()
}
