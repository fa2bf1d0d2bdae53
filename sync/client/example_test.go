package client_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/fieldsync/fieldsync/internal/api"
	"github.com/fieldsync/fieldsync/internal/auth"
	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/internal/store"
	"github.com/fieldsync/fieldsync/internal/syncer"
	"github.com/fieldsync/fieldsync/sync/client"
	"github.com/fieldsync/fieldsync/sync/hlc"
	"github.com/fieldsync/fieldsync/sync/merge"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// A field app edits offline, then syncs. (The example starts a fieldsync
// server on loopback so that it runs on its own; a field app only needs the
// server's URL and a device token from enrolment.)
func Example() {
	base, token, stop := exampleServer()
	defer stop()
	dir, _ := os.MkdirTemp("", "fieldsync-example")
	defer os.RemoveAll(dir)

	ctx := context.Background()
	c, err := client.Open(filepath.Join(dir, "device.db"), client.Config{
		BaseURL: base,
		Device:  "dev-7q2",
		Token:   func(context.Context) (string, error) { return token, nil },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	// Offline: the edit is stored and queued in one local transaction.
	rec, err := c.Edit(ctx, "patrol_logs", "0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11", []merge.FieldValue{
		{Name: "unit", Value: []byte(`"KEN-3"`)},
		{Name: "status", Value: []byte(`"active"`)},
		{Name: "route", Value: []byte(`"RN1 north"`)},
	}, false)
	if err != nil {
		fmt.Println(err)
		return
	}
	pending, _ := c.Pending()
	fmt.Println("local status:", string(rec.Value("status")), "pending:", pending)

	// A link comes up: push the outbox, pull what changed.
	st, err := c.Sync(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	pending, _ = c.Pending()
	fmt.Println("pushed:", st.Pushed, "rejected:", st.Rejected, "pulled:", st.Pulled, "pending:", pending)
	// Output:
	// local status: "active" pending: 1
	// pushed: 1 rejected: 0 pulled: 1 pending: 0
}

// exampleServer runs the fieldsync server on loopback with a fresh SQLite
// database and returns its URL and a device token.
func exampleServer() (string, string, func()) {
	dir, _ := os.MkdirTemp("", "fieldsync-example-server")
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(dir, "server.db"), store.Options{})
	if err != nil {
		panic(err)
	}
	if _, err := st.Migrate(ctx); err != nil {
		panic(err)
	}
	ring, err := auth.NewKeyring(ctx, st, auth.Config{})
	if err != nil {
		panic(err)
	}
	if err := ring.EnsureSigningKey(ctx); err != nil {
		panic(err)
	}
	tok, err := ring.Issue(domain.Identity{Subject: "dev-7q2", Role: domain.RoleDevice, Unit: "KEN-3", Contingent: "KEN"}, time.Hour)
	if err != nil {
		panic(err)
	}
	svc := syncer.New(st, hlc.NewClock(vv.Server, func() int64 { return time.Now().UnixMilli() }, 60_000), time.Now, syncer.Config{})
	app := api.New(api.Config{}, api.Deps{Syncer: svc, Verifier: ring, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() { _ = app.Listener(ln) }()
	return "http://" + ln.Addr().String(), tok, func() {
		_ = app.Shutdown()
		_ = st.Close()
		_ = os.RemoveAll(dir)
	}
}
