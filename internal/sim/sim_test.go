package sim_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/api"
	"github.com/fieldsync/fieldsync/internal/auth"
	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/internal/review"
	"github.com/fieldsync/fieldsync/internal/sim"
	"github.com/fieldsync/fieldsync/internal/store/dbtest"
	"github.com/fieldsync/fieldsync/internal/syncer"
	"github.com/fieldsync/fieldsync/sync/hlc"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// A small field operation through a faulty link, on both databases: every
// device ends with the server's state for its scope, nothing pending,
// nothing refused.
func TestSimulatedOperationConverges(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db dbtest.DB) {
		ctx := context.Background()
		ring, err := auth.NewKeyring(ctx, db.Store, auth.Config{})
		if err != nil {
			t.Fatal(err)
		}
		if err := ring.EnsureSigningKey(ctx); err != nil {
			t.Fatal(err)
		}
		svc := syncer.New(db.Store, hlc.NewClock(vv.Server, func() int64 { return time.Now().UnixMilli() }, 60_000), time.Now, syncer.Config{})
		app := api.New(api.Config{}, api.Deps{Syncer: svc, Verifier: ring, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Review: review.New(db.Store, db.Store.Get, time.Now, 0), Decisions: svc})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = app.Listener(ln) }()
		defer func() { _ = app.Shutdown() }()
		upstream := "http://" + ln.Addr().String()
		proxy := sim.NewProxy(upstream, 0.15, 7)
		front := httptest.NewServer(proxy)
		defer front.Close()
		reader, err := ring.Issue(domain.Identity{Subject: "sim-reader", Role: domain.RoleSupervisor}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := sim.Run(ctx, sim.Config{
			Devices: 8, Units: 3, Edits: 40, Seed: 7, Dir: t.TempDir(), Upstream: upstream, ReaderToken: reader,
			Token: func(device, unit string) (string, error) {
				return ring.Issue(domain.Identity{Subject: device, Role: domain.RoleDevice, Unit: unit, Contingent: sim.ContingentOf(unit)}, time.Hour)
			},
		}, front.URL, proxy)
		if err != nil {
			t.Fatal(err)
		}
		t.Log(rep)
		if rep.Audit == nil || rep.Audit.Versions != rep.Edits+rep.Resolutions || len(rep.Audit.ConflictsByRule) == 0 {
			t.Fatalf("the acknowledged-set check did not run over every edit: %s", rep)
		}
		if !rep.OK() {
			t.Fatalf("divergent %v, missing %v, pending %d, rejected %d", rep.Divergent, rep.Missing, rep.Pending, rep.Rejected)
		}
		if rep.CutBefore+rep.CutAfter+rep.Duplicated == 0 || rep.Records == 0 || rep.Edits < 200 {
			t.Fatalf("the run did not exercise what it claims: %s", rep)
		}
	})
}
