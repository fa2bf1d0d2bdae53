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
	fs := flag.NewFlagSet("fieldsync token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config.Default()
	if err := cfg.Bind(fs, getenv); err != nil {
		return err
	}
	role := fs.String("role", "", "supervisor, partner, admin or device")
	sub := fs.String("sub", "", "subject: a user, client or device id")
	unit := fs.String("unit", "", "unit (devices)")
	contingent := fs.String("contingent", "", "contingent (devices and supervisors; empty: all contingents)")
	ttl := fs.Duration("ttl", time.Hour, "token lifetime (at most 720h)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	id := domain.Identity{Subject: *sub, Role: domain.Role(*role), Unit: *unit, Contingent: *contingent}
	if !id.Role.Valid() {
		return fmt.Errorf("-role must be supervisor, partner, admin or device, got %q", *role)
	}
	if *sub == "" {
		return errors.New("-sub is required")
	}
	if *ttl <= 0 || *ttl > 720*time.Hour {
		return fmt.Errorf("-ttl must be between 1s and 720h, got %s", *ttl)
	}
	m := &Main{Config: cfg, Stdout: stdout}
	if err := m.openKeyring(ctx); err != nil {
		return err
	}
	defer m.store.Close()
	if !m.keyring.CanSign() {
		return errors.New("no signing key; run fieldsync keys rotate")
	}
	tok, err := m.keyring.Issue(id, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// deviceCmd runs "fieldsync device enroll-code": a one-time code a device of
// the unit exchanges at POST /v1/devices/enroll. The code is printed to
// standard output only; the database keeps its hash.
func deviceCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "enroll-code" {
		fmt.Fprintln(stderr, "usage: fieldsync device enroll-code -unit UNIT [-contingent C] [-ttl 24h] [flags]")
		return flag.ErrHelp
	}
	fs := flag.NewFlagSet("fieldsync device enroll-code", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config.Default()
	if err := cfg.Bind(fs, getenv); err != nil {
		return err
	}
	unit := fs.String("unit", "", "the unit the device belongs to (required)")
	contingent := fs.String("contingent", "", "the unit's contingent")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the code stays valid (at most 720h)")
	by := fs.String("by", "admin", "who issued the code, for the record")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if *unit == "" {
		return errors.New("-unit is required")
	}
	if *ttl <= 0 || *ttl > 720*time.Hour {
		return fmt.Errorf("-ttl must be between 1s and 720h, got %s", *ttl)
	}
	m := &Main{Config: cfg, Stdout: stdout}
	if err := m.openKeyring(ctx); err != nil {
		return err
	}
	defer m.store.Close()
	devices := auth.NewDevices(m.keyring, m.store, auth.DevicesConfig{AccessTTL: cfg.AccessTokenTTL, RefreshTTL: cfg.RefreshTokenTTL})
	code, err := devices.NewEnrollmentCode(ctx, *unit, *contingent, *by, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", code)
	return nil
}

// leeway converts the configured token leeway to auth.Config's: there, 0
// means "the default", while a configured 0 means none.
func leeway(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
