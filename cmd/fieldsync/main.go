// Command fieldsync is the fieldsync server and its administration tool.
//
//	fieldsync serve    run the HTTP server (embedded SQLite by default)
//	fieldsync migrate  apply pending database migrations and exit
//	fieldsync keys rotate  add a new token signing key
//	fieldsync token    mint a token for tooling (supervisor, partner, admin)
//	fieldsync device enroll-code  a one-time enrolment code for a unit's device
//	fieldsync version  print the version
//
// Every flag has a FIELDSYNC_* environment variable; run a subcommand with
// -h for the list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Version is set at build time (-ldflags "-X main.Version=...").
var Version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "fieldsync:", err)
		}
		os.Exit(2)
	}
}

const usage = `fieldsync: the offline-first sync backend for field operations

usage:
  fieldsync serve [flags]    run the server (embedded SQLite unless FIELDSYNC_DATABASE_URL is a postgres:// URL)
  fieldsync migrate [flags]  apply pending migrations and exit
  fieldsync keys rotate      add a new token signing key (older keys keep verifying)
  fieldsync token -role R -sub S [-unit U] [-contingent C] [-ttl 1h]
                             mint a token for tooling, printed to standard output
  fieldsync device enroll-code -unit U [-contingent C] [-ttl 24h]
                             a one-time code a device exchanges at POST /v1/devices/enroll
  fieldsync audit verify [-checkpoint FILE]... [-jwks FILE]
                             recompute the audit chain and check the record history against it
  fieldsync audit checkpoint print a signed head of the audit chain, to keep off the server
  fieldsync sim [-devices 20 -edits 100 -faults 0.1 -seed N]
                             simulated devices through a faulty link; checks convergence
  fieldsync bench [-records 100000 -push-batches 125 -devices 8 -json] [-load]
                             measure the server against the raw limits of its database; -load: the load test
  fieldsync version          print the version

Run "fieldsync serve -h" for the flags and their FIELDSYNC_* variables.
`

// run parses the subcommand and its configuration, then runs it. Parsing
// stays apart from running so tests build a Main by hand.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "serve":
		m, err := parseMain("serve", args[1:], getenv, stdout, stderr)
		if err != nil {
			return err
		}
		return m.Run(ctx)
	case "migrate":
		m, err := parseMain("migrate", args[1:], getenv, stdout, stderr)
		if err != nil {
			return err
		}
		return m.Migrate(ctx)
	case "keys":
		return keysCmd(ctx, args[1:], getenv, stdout, stderr)
	case "token":
		return tokenCmd(ctx, args[1:], getenv, stdout, stderr)
	case "device":
		return deviceCmd(ctx, args[1:], getenv, stdout, stderr)
	case "audit":
		return auditCmd(ctx, args[1:], getenv, stdout, stderr)
	case "sim":
		return simCmd(ctx, args[1:], getenv, stdout, stderr)
	case "bench":
		return benchCmd(ctx, args[1:], getenv, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "fieldsync", Version)
		return nil
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
