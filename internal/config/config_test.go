package config_test

import (
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/config"
)

func parse(t *testing.T, env map[string]string, args ...string) (config.Config, error) {
	t.Helper()
	c := config.Default()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	if err := c.Bind(fs, func(k string) string { return env[k] }); err != nil {
		return c, err
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	return c, c.Validate()
}

func TestDefaultsAreValid(t *testing.T) {
	c, err := parse(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxChanges != 500 || c.MaxBodyBytes != 4<<20 || c.MaxClockSkew != time.Minute || c.IdempotencyRetention != 90*24*time.Hour {
		t.Fatalf("defaults differ from the protocol: %+v", c)
	}
}

func TestFlagsWinOverEnvironmentOverDefaults(t *testing.T) {
	env := map[string]string{"FIELDSYNC_MAX_CHANGES": "100", "FIELDSYNC_MAX_BODY_BYTES": "2048", "FIELDSYNC_ADDR": ":9000"}
	c, err := parse(t, env, "-max-changes", "50")
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxChanges != 50 || c.MaxBodyBytes != 2048 || c.Addr != ":9000" {
		t.Fatalf("got max_changes=%d max_body=%d addr=%s", c.MaxChanges, c.MaxBodyBytes, c.Addr)
	}
}

func TestInvalidValuesAreRefusedBeforeAnythingOpens(t *testing.T) {
	cases := map[string]map[string]string{
		"not a number":           {"FIELDSYNC_MAX_CHANGES": "many"},
		"zero changes":           {"FIELDSYNC_MAX_CHANGES": "0"},
		"bad duration":           {"FIELDSYNC_MAX_CLOCK_SKEW": "soon"},
		"retention too short":    {"FIELDSYNC_IDEMPOTENCY_RETENTION": "1h"},
		"default above max":      {"FIELDSYNC_PULL_DEFAULT_LIMIT": "2000"},
		"unknown log level":      {"FIELDSYNC_LOG_LEVEL": "loud"},
		"body limit too small":   {"FIELDSYNC_MAX_BODY_BYTES": "10"},
		"bad boolean":            {"FIELDSYNC_AUTO_MIGRATE": "perhaps"},
		"empty database url":     {"FIELDSYNC_DATABASE_URL": " "},
		"token ttl out of range": {"FIELDSYNC_ACCESS_TOKEN_TTL": "72h"},
		"no sqlite page cache":   {"FIELDSYNC_SQLITE_CACHE_MIB": "0"},
		"negative sqlite map":    {"FIELDSYNC_SQLITE_MMAP_MIB": "-1"},
	}
	for name, env := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := parse(t, env); err == nil {
				t.Fatalf("%v accepted", env)
			}
		})
	}
}

func TestThePrintedConfigurationMasksThePassword(t *testing.T) {
	c := config.Default()
	c.DatabaseURL = "postgres://fieldsync:s3cret-pw@db:5432/fieldsync?sslmode=disable"
	out := fmt.Sprint(c.LogAttrs()...)
	if strings.Contains(out, "s3cret-pw") {
		t.Fatalf("password printed: %s", out)
	}
	if !strings.Contains(c.MaskedDatabaseURL(), "fieldsync:xxxxx@db") {
		t.Fatalf("masked url = %s", c.MaskedDatabaseURL())
	}
}
