package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/fieldsync/fieldsync/internal/auth"
	"github.com/fieldsync/fieldsync/internal/config"
	"github.com/fieldsync/fieldsync/internal/domain"
)

// keyring opens the database and the signing keys for an administration
// command. The schema must be current: administration never migrates.
func (m *Main) openKeyring(ctx context.Context) error {
	if err := m.open(ctx); err != nil {
		return err
	}
	ok, err := m.store.SchemaCurrent(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("the database schema is behind this binary; run fieldsync migrate first")
	}
	m.keyring, err = auth.NewKeyring(ctx, m.store, auth.Config{
		Issuer: m.Config.JWTIssuer, Audience: m.Config.JWTAudience, Leeway: leeway(m.Config.TokenLeeway),
	})
	return err
}

// adminFlags is the flag set of an administration command: the server's
// configuration flags plus the command's own, which define adds.
func adminFlags(name string, getenv func(string) string, stderr io.Writer, define func(fs *flag.FlagSet)) (*flag.FlagSet, *config.Config, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config.Default()
	if err := cfg.Bind(fs, getenv); err != nil {
		return nil, nil, err
	}
	define(fs)
	return fs, &cfg, nil
}

// runAdmin validates the configuration, opens the database and the keys,
// and runs fn with them.
func runAdmin(ctx context.Context, cfg *config.Config, stdout io.Writer, fn func(m *Main) error) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	m := &Main{Config: *cfg, Stdout: stdout}
	if err := m.openKeyring(ctx); err != nil {
		return err
	}
	defer m.store.Close()
	return fn(m)
}

func checkTTL(ttl time.Duration) error {
	if ttl <= 0 || ttl > 720*time.Hour {
		return fmt.Errorf("-ttl must be between 1s and 720h, got %s", ttl)
	}
	return nil
}

// keysCmd runs "fieldsync keys rotate": add a new signing key; tokens signed
// with older keys keep verifying.
func keysCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "rotate" {
		fmt.Fprintln(stderr, "usage: fieldsync keys rotate [flags]")
		return flag.ErrHelp
	}
	m, err := parseMain("keys rotate", args[1:], getenv, stdout, stderr)
	if err != nil {
		return err
	}
	if err := m.openKeyring(ctx); err != nil {
		return err
	}
	defer m.store.Close()
	kid, err := m.keyring.Rotate(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "new signing key %s; tokens signed with older keys keep verifying\n", kid)
	return nil
}

// tokenCmd runs "fieldsync token": mint a token for tooling (a supervisor's
// console, a partner's feed reader, an administrator's script). The token is
// printed to standard output only.
func tokenCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var role, sub, unit, contingent *string
	var ttl *time.Duration
	var observe *bool
	fs, cfg, err := adminFlags("fieldsync token", getenv, stderr, func(fs *flag.FlagSet) {
		role = fs.String("role", "", "supervisor, partner, admin or device")
		sub = fs.String("sub", "", "subject: a user, client or device id")
		unit = fs.String("unit", "", "unit (devices)")
		contingent = fs.String("contingent", "", "contingent (devices and supervisors; empty: all contingents)")
		ttl = fs.Duration("ttl", time.Hour, "token lifetime (at most 720h)")
		observe = fs.Bool("observe", false, "partners: may post corridor observations")
	})
	if err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	id := domain.Identity{Subject: *sub, Role: domain.Role(*role), Unit: *unit, Contingent: *contingent, Observes: *observe}
	if !id.Role.Valid() {
		return fmt.Errorf("-role must be supervisor, partner, admin or device, got %q", *role)
	}
	if *sub == "" {
		return errors.New("-sub is required")
	}
	if err := checkTTL(*ttl); err != nil {
		return err
	}
	return runAdmin(ctx, cfg, stdout, func(m *Main) error {
		if !m.keyring.CanSign() {
			return errors.New("no signing key; run fieldsync keys rotate")
		}
		tok, err := m.keyring.Issue(id, *ttl)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, tok)
		return nil
	})
}

// deviceCmd runs "fieldsync device enroll-code": a one-time code a device of
// the unit exchanges at POST /v1/devices/enroll. The code is printed to
// standard output only; the database keeps its hash.
func deviceCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "enroll-code" {
		fmt.Fprintln(stderr, "usage: fieldsync device enroll-code -unit UNIT [-contingent C] [-ttl 24h] [flags]")
		return flag.ErrHelp
	}
	var unit, contingent, by *string
	var ttl *time.Duration
	fs, cfg, err := adminFlags("fieldsync device enroll-code", getenv, stderr, func(fs *flag.FlagSet) {
		unit = fs.String("unit", "", "the unit the device belongs to (required)")
		contingent = fs.String("contingent", "", "the unit's contingent")
		ttl = fs.Duration("ttl", 24*time.Hour, "how long the code stays valid (at most 720h)")
		by = fs.String("by", "admin", "who issued the code, for the record")
	})
	if err != nil {
		return err
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *unit == "" {
		return errors.New("-unit is required")
	}
	if err := checkTTL(*ttl); err != nil {
		return err
	}
	return runAdmin(ctx, cfg, stdout, func(m *Main) error {
		devices := auth.NewDevices(m.keyring, m.store, auth.DevicesConfig{AccessTTL: cfg.AccessTokenTTL, RefreshTTL: cfg.RefreshTokenTTL})
		code, err := devices.NewEnrollmentCode(ctx, *unit, *contingent, *by, *ttl)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, code)
		return nil
	})
}

// leeway converts the configured token leeway to auth.Config's: there, 0
// means "the default", while a configured 0 means none.
func leeway(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
