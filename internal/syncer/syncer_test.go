package syncer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/internal/store/dbtest"
	"github.com/fieldsync/fieldsync/internal/syncer"
	"github.com/fieldsync/fieldsync/sync/hlc"
	"github.com/fieldsync/fieldsync/sync/merge"
	"github.com/fieldsync/fieldsync/sync/vv"
)

func newService(t *testing.T, db dbtest.DB) *syncer.Service {
	t.Helper()
	now := func() int64 { return time.Now().UnixMilli() }
	return syncer.New(db.Store, hlc.NewClock(vv.Server, now, 60_000), time.Now, syncer.Config{})
}

func device(name, unit string) domain.Identity {
	return domain.Identity{Subject: name, Role: domain.RoleDevice, Unit: unit, Contingent: "KEN"}
}

// change builds one push change as a device would send it.
func change(id, collection, rec string, v map[string]uint64, node string, fields map[string]any) json.RawMessage {
	m := map[string]any{
		"change_id": id, "collection": collection, "id": rec, "vv": v,
		"hlc": fmt.Sprintf("%d-0-%s", time.Now().UnixMilli(), node), "fields": fields,
	}
	b, _ := json.Marshal(m)
	return b
}

func push(t *testing.T, s *syncer.Service, id domain.Identity, changes ...json.RawMessage) *domain.PushResponse {
	t.Helper()
	resp, err := s.Push(context.Background(), id, changes)
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	return resp
}

// recordOf returns the record a pull served, decoding it when the service
// passed the stored bytes through.
func recordOf(t *testing.T, rv domain.RecordView) *merge.Record {
	t.Helper()
	if rv.Record != nil {
		return rv.Record
	}
	var rec merge.Record
	if err := rec.UnmarshalJSON(rv.Raw); err != nil {
		t.Fatalf("pulled record does not decode: %v", err)
	}
	return &rec
}

func pullAll(t *testing.T, s *syncer.Service, id domain.Identity, from domain.Cursor) ([]*merge.Record, domain.Cursor) {
	t.Helper()
	var out []*merge.Record
	cur := from
	for {
		resp, err := s.Pull(context.Background(), id, domain.PullRequest{Cursor: cur, Limit: 50})
		if err != nil {
			t.Fatalf("pull: %v", err)
		}
		for _, rv := range resp.Records {
			out = append(out, recordOf(t, rv))
		}
		cur = resp.Cursor
		if !resp.HasMore {
			return out, cur
		}
	}
}

func count(t *testing.T, db dbtest.DB, table string) int64 {
	t.Helper()
	var n int64
	if err := db.Store.DB().Raw("SELECT count(*) FROM " + table).Scan(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPushThenPullReturnsTheMergedRecord(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db dbtest.DB) {
		s := newService(t, db)
		dev := device("dev-7Q2", "KEN-3")
		resp := push(t, s, dev, change("c1", "patrol_logs", "log-1", map[string]uint64{"dev-7Q2": 1}, "dev-7Q2",
			map[string]any{"unit": "KEN-3", "status": "active", "route": "RN1 north"}))
		if got := resp.Results[0]; got.Status != merge.Applied || got.Record == nil || string(got.Record.Record.Value("route")) != `"RN1 north"` {
			t.Fatalf("push result = %+v", got)
		}
		recs, cur := pullAll(t, s, dev, domain.Cursor{})
		if len(recs) != 1 || recs[0].ID != "log-1" {
			t.Fatalf("pull = %d records", len(recs))
		}
		if !recs[0].Equal(resp.Results[0].Record.Record) {
			t.Fatalf("pulled record differs from the pushed result")
		}
		if more, _ := pullAll(t, s, dev, cur); len(more) != 0 {
			t.Fatalf("pull from the last cursor returned %d records, want 0", len(more))
		}
		// Another unit's device sees nothing of it.
		if other, _ := pullAll(t, s, device("dev-X", "KEN-4"), domain.Cursor{}); len(other) != 0 {
			t.Fatalf("a KEN-4 device pulled %d KEN-3 records", len(other))
		}
	})
}

func TestReplayingAPushChangesNothing(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db dbtest.DB) {
		s := newService(t, db)
		dev := device("dev-1", "KEN-3")
		batch := []json.RawMessage{
			change("a1", "patrol_logs", "log-1", map[string]uint64{"dev-1": 1}, "dev-1", map[string]any{"unit": "KEN-3", "status": "planned"}),
			change("a2", "patrol_logs", "log-1", map[string]uint64{"dev-1": 2}, "dev-1", map[string]any{"status": "active"}),
			change("a3", "corridors", "rn1", map[string]uint64{"dev-1": 1}, "dev-1", map[string]any{"status": "open"}),
			change("a4", "patrol_logs", "log-1", map[string]uint64{"dev-1": 3}, "dev-1", map[string]any{"status": "bogus"}),
		}
		first := push(t, s, dev, batch...)
		want := []merge.Outcome{merge.Applied, merge.Applied, merge.Applied, merge.Rejected}
		for i, r := range first.Results {
			if r.Status != want[i] {
				t.Fatalf("first push result %d = %s (%s), want %s", i, r.Status, r.Message, want[i])
			}
		}
		tables := []string{"records", "record_versions", "seen_changes", "rejections", "conflicts"}
		before := map[string]int64{}
		for _, tb := range tables {
			before[tb] = count(t, db, tb)
		}
		state, _ := pullAll(t, s, dev, domain.Cursor{})
		for round := 0; round < 3; round++ {
			again := push(t, s, dev, batch...)
			for i, r := range again.Results {
				wantAgain := merge.Duplicate
				if want[i] == merge.Rejected {
					wantAgain = merge.Rejected
				}
				if r.Status != wantAgain || r.Code != first.Results[i].Code {
					t.Fatalf("replay %d result %d = %s %s, want %s %s", round, i, r.Status, r.Code, wantAgain, first.Results[i].Code)
				}
			}
		}
		for _, tb := range tables {
			if n := count(t, db, tb); n != before[tb] {
				t.Fatalf("replays changed %s: %d rows, want %d", tb, n, before[tb])
			}
		}
		after, _ := pullAll(t, s, dev, domain.Cursor{})
		if len(after) != len(state) {
			t.Fatalf("replays changed the state: %d records, want %d", len(after), len(state))
		}
		for i := range after {
			if !after[i].Equal(state[i]) {
				t.Fatalf("replays changed %s", after[i].ID)
			}
		}
	})
}

func TestConcurrentEditsMergeAndOpenAConflict(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db dbtest.DB) {
		s := newService(t, db)
		a, b := device("dev-A", "KEN-3"), device("dev-B", "KEN-3")
		push(t, s, a, change("c1", "corridors", "rn1", map[string]uint64{"dev-A": 1}, "dev-A", map[string]any{"status": "open"}))
		// B pulls the corridor, then both report offline.
		push(t, s, b, change("c2", "corridors", "rn1", map[string]uint64{"dev-A": 1, "dev-B": 1}, "dev-B", map[string]any{"status": "closed", "reason": "barricade"}))
		res := push(t, s, a, change("c3", "corridors", "rn1", map[string]uint64{"dev-A": 2}, "dev-A", map[string]any{"status": "open", "reason": "clear"}))
		r := res.Results[0]
		if r.Status != merge.Merged || string(r.Record.Record.Value("status")) != `"closed"` {
			t.Fatalf("concurrent open vs closed: %s status %s, want merged closed", r.Status, r.Record.Record.Value("status"))
		}
		var rows []struct {
			Field          string
			Rule           string
			ReviewRequired bool
			Vals           string
			Status         string
		}
		if err := db.Store.DB().Raw("SELECT field, rule, review_required, vals, status FROM conflicts WHERE record_id = 'rn1' ORDER BY field").Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		if len(rows) != 2 || rows[1].Field != "status" || rows[1].Rule != "most_restrictive" || !rows[1].ReviewRequired || rows[1].Status != "open" {
			t.Fatalf("conflicts = %+v, want reason (later_hlc) and status (most_restrictive, review)", rows)
		}
		if !strings.Contains(rows[1].Vals, `"open"`) || !strings.Contains(rows[1].Vals, `"closed"`) {
			t.Fatalf("status conflict keeps %s, want both values", rows[1].Vals)
		}
	})
}

func TestOutOfScopeLooksTheSameWhetherOrNotTheRecordExists(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db dbtest.DB) {
		s := newService(t, db)
		push(t, s, device("dev-1", "KEN-3"), change("c1", "patrol_logs", "log-1", map[string]uint64{"dev-1": 1}, "dev-1", map[string]any{"unit": "KEN-3", "status": "active"}))
		intruder := device("dev-9", "KEN-4")
		res := push(t, s, intruder,
			change("x1", "patrol_logs", "log-1", map[string]uint64{"dev-9": 1}, "dev-9", map[string]any{"notes": "mine"}),
			change("x2", "patrol_logs", "log-404", map[string]uint64{"dev-9": 1}, "dev-9", map[string]any{"unit": "KEN-3", "status": "active"}))
		for _, r := range res.Results {
			if r.Status != merge.Rejected || r.Code != domain.CodeOutOfScope || r.Record != nil {
				t.Fatalf("%s: %s %s record=%v, want rejected out_of_scope without record", r.ChangeID, r.Status, r.Code, r.Record != nil)
			}
		}
		if res.Results[0].Message != res.Results[1].Message {
			t.Fatalf("messages differ for existing and missing records: %q vs %q", res.Results[0].Message, res.Results[1].Message)
		}
		if n := count(t, db, "rejections"); n != 2 {
			t.Fatalf("rejections = %d, want both kept", n)
		}
	})
}

func TestABatchWithoutChangeIDsWritesNothing(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db dbtest.DB) {
		s := newService(t, db)
		dev := device("dev-1", "KEN-3")
		_, err := s.Push(context.Background(), dev, []json.RawMessage{
			change("ok-1", "corridors", "rn1", map[string]uint64{"dev-1": 1}, "dev-1", map[string]any{"status": "open"}),
			json.RawMessage(`{"collection":"corridors","id":"rn2"}`),
		})
		if domain.ErrorCode(err) != domain.CodeInvalidChangeID {
			t.Fatalf("err = %v, want invalid_change_id", err)
		}
		for _, tb := range []string{"records", "record_versions", "seen_changes", "rejections"} {
			if n := count(t, db, tb); n != 0 {
				t.Fatalf("%s has %d rows after a refused batch", tb, n)
			}
		}
	})
}

func TestAClockFarAheadIsClamped(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db dbtest.DB) {
		s := newService(t, db)
		dev := device("dev-1", "KEN-3")
		future := time.Now().Add(30 * 24 * time.Hour).UnixMilli()
		raw := fmt.Sprintf(`{"change_id":"f1","collection":"corridors","id":"rn1","vv":{"dev-1":1},"hlc":"%d-0-dev-1","fields":{"status":"open"}}`, future)
		res := push(t, s, dev, json.RawMessage(raw))
		r := res.Results[0]
		if !r.ClockClamped || r.Status != merge.Applied {
			t.Fatalf("result = %+v, want applied and clock_clamped", r)
		}
		f, _ := r.Record.Record.Field("status")
		if w := f.Writes[f.Kept]; w.HLC.Wall >= future || w.HLC.Node != "dev-1" {
			t.Fatalf("stored stamp %s, want the server's time with node dev-1", w.HLC)
		}
		if res.ServerHLC.Wall >= future {
			t.Fatalf("server clock jumped to the device's wrong time: %s", res.ServerHLC)
		}
	})
}

// Concurrent pushers on many connections and a puller that keeps pulling:
// the pulled set must equal the committed set, with no record missed.
func TestPullMissesNoCommittedChangeUnderConcurrentPushes(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db dbtest.DB) {
		s := newService(t, db)
		const pushers, batches, perBatch = 8, 12, 10
		var wg sync.WaitGroup
		committed := make(chan string, pushers*batches*perBatch)
		errs := make(chan error, pushers)
		for p := 0; p < pushers; p++ {
			wg.Add(1)
			go func(p int) {
				defer wg.Done()
				node := fmt.Sprintf("dev-%d", p)
				dev := device(node, "KEN-3")
				for b := 0; b < batches; b++ {
					var chs []json.RawMessage
					var ids []string
					for i := 0; i < perBatch; i++ {
						id := fmt.Sprintf("log-%d-%d-%d", p, b, i)
						ids = append(ids, id)
						chs = append(chs, change(fmt.Sprintf("c-%s", id), "patrol_logs", id, map[string]uint64{node: 1}, node,
							map[string]any{"unit": "KEN-3", "status": "active"}))
					}
					// Every pusher also edits one shared corridor, so batches
					// contend for the same lock.
					chs = append(chs, change(fmt.Sprintf("s-%d-%d", p, b), "corridors", fmt.Sprintf("shared-%d", b%3), map[string]uint64{node: 1 + uint64(b/3)}, node,
						map[string]any{"status": "restricted"}))
					resp, err := s.Push(context.Background(), dev, chs)
					if err != nil {
						errs <- err
						return
					}
					for i, r := range resp.Results[:perBatch] {
						if r.Status != merge.Applied {
							errs <- fmt.Errorf("%s: %s %s", ids[i], r.Status, r.Message)
							return
						}
						committed <- ids[i]
					}
				}
			}(p)
		}
		admin := domain.Identity{Subject: "admin", Role: domain.RoleAdmin}
		pulled := map[string]bool{}
		cur := domain.Cursor{}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		pulls := 0
	loop:
		for {
			select {
			case <-done:
				break loop
			default:
			}
			resp, err := s.Pull(context.Background(), admin, domain.PullRequest{Cursor: cur, Limit: 37, Collections: []string{"patrol_logs"}})
			if err != nil {
				t.Fatal(err)
			}
			pulls++
			for _, r := range resp.Records {
				pulled[recordOf(t, r).ID] = true
			}
			cur = resp.Cursor
		}
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// Everything is committed now: pull to the end from where the
		// puller stopped, never from the start.
		for {
			resp, err := s.Pull(context.Background(), admin, domain.PullRequest{Cursor: cur, Limit: 37, Collections: []string{"patrol_logs"}})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range resp.Records {
				pulled[recordOf(t, r).ID] = true
			}
			cur = resp.Cursor
			if !resp.HasMore {
				break
			}
		}
		close(committed)
		n := 0
		for id := range committed {
			n++
			if !pulled[id] {
				t.Errorf("committed record %s was never pulled", id)
			}
		}
		if n != pushers*batches*perBatch || len(pulled) != n {
			t.Fatalf("committed %d, pulled %d distinct, want %d each", n, len(pulled), pushers*batches*perBatch)
		}
		// No lost update on the contended corridors: each holds every
		// pusher's last counter, and every edit has its history row.
		for k := 0; k < 3; k++ {
			sr, err := db.Store.Get(context.Background(), domain.Key{Collection: "corridors", ID: fmt.Sprintf("shared-%d", k)})
			if err != nil || sr == nil {
				t.Fatalf("shared-%d: %v", k, err)
			}
			for p := 0; p < pushers; p++ {
				if got := sr.Record.VV.Get(vv.NodeID(fmt.Sprintf("dev-%d", p))); got != batches/3 {
					t.Fatalf("shared-%d holds dev-%d at %d, want %d: an update was lost", k, p, got, batches/3)
				}
			}
		}
		var versions int64
		if err := db.Store.DB().Raw("SELECT count(*) FROM record_versions WHERE collection = 'corridors'").Scan(&versions).Error; err != nil {
			t.Fatal(err)
		}
		if versions != pushers*batches {
			t.Fatalf("%d corridor versions, want %d", versions, pushers*batches)
		}
		t.Logf("%d records, %d pulls during the pushes", n, pulls)
	})
}

func TestPullHidesWhatTheCallerMayNotSee(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db dbtest.DB) {
		s := newService(t, db)
		dev := device("dev-1", "KEN-3")
		push(t, s, dev,
			change("e1", "patrol_entries", "entry-1", map[string]uint64{"dev-1": 1}, "dev-1", map[string]any{
				"patrol_id": "0b9f6c1e-6a55-4c1c-9d0e-2f1f0f5d3a11", "unit": "KEN-3", "kind": "community_contact",
				"occurred_at": "2026-11-28T05:00:00Z", "text": "met a resident", "contact_name": "CANARY-NAME-7731"}),
			change("c1", "corridors", "rn1", map[string]uint64{"dev-1": 1}, "dev-1", map[string]any{
				"status": "open", "notes": "CANARY-NOTE-2210", "verified_at": time.Now().UTC().Format(time.RFC3339)}))
		raw := func(id domain.Identity) string {
			t.Helper()
			resp, err := s.Pull(context.Background(), id, domain.PullRequest{Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for _, rv := range resp.Records {
				b.Write(recordOf(t, rv).AppendJSON(nil))
			}
			return b.String()
		}
		if got := raw(dev); !strings.Contains(got, "CANARY-NAME-7731") || !strings.Contains(got, "CANARY-NOTE-2210") {
			t.Fatalf("the authoring unit must see its own contact and corridor notes: %s", got)
		}
		sup := domain.Identity{Subject: "sup-1", Role: domain.RoleSupervisor, Contingent: "KEN"}
		if got := raw(sup); !strings.Contains(got, "CANARY-NAME-7731") {
			t.Fatalf("the unit's supervisor must see the contact: %s", got)
		}
		admin := domain.Identity{Subject: "admin-1", Role: domain.RoleAdmin}
		if got := raw(admin); strings.Contains(got, "CANARY-NAME") || strings.Contains(got, "contact_name") || !strings.Contains(got, "entry-1") {
			t.Fatalf("an administrator sees the entry but never the contact's identity: %s", got)
		}
		otherSup := domain.Identity{Subject: "sup-2", Role: domain.RoleSupervisor, Contingent: "JAM"}
		if got := raw(otherSup); strings.Contains(got, "entry-1") {
			t.Fatalf("a JAM supervisor pulled a KEN entry: %s", got)
		}
		partner := domain.Identity{Subject: "agency-1", Role: domain.RolePartner}
		got := raw(partner)
		if strings.Contains(got, "entry-1") || strings.Contains(got, "CANARY") || strings.Contains(got, `"notes"`) || !strings.Contains(got, `"rn1"`) {
			t.Fatalf("a partner sees corridors without internal fields, nothing else: %s", got)
		}
	})
}

// The server is the engine's trust boundary: a device writes as itself and
// claims only versions the server issued.
func TestADeviceCannotWriteAsAnotherNodeOrClaimUnseenVersions(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db dbtest.DB) {
		s := newService(t, db)
		a, b := device("dev-A", "KEN-3"), device("dev-B", "KEN-3")
		push(t, s, a, change("a1", "corridors", "rn1", map[string]uint64{"dev-A": 1}, "dev-A", map[string]any{"status": "open"}))
		res := push(t, s, b,
			// B stamps its edit as A's.
			change("b1", "corridors", "rn1", map[string]uint64{"dev-A": 2}, "dev-A", map[string]any{"status": "closed"}),
			// B claims to have seen A's 50th edit, which would make A's real
			// next edits look like regressions.
			change("b2", "corridors", "rn1", map[string]uint64{"dev-A": 50, "dev-B": 1}, "dev-B", map[string]any{"reason": "x"}),
			// B claims a server version, which would block sign-offs.
			change("b3", "corridors", "rn1", map[string]uint64{"dev-A": 1, "dev-B": 1, "srv": 9}, "dev-B", map[string]any{"reason": "y"}))
		want := []string{merge.CodeInvalidHLC, merge.CodeInvalidVV, merge.CodeInvalidVV}
		for i, r := range res.Results {
			if r.Status != merge.Rejected || r.Code != want[i] {
				t.Fatalf("%s: %s %s, want rejected %s", r.ChangeID, r.Status, r.Code, want[i])
			}
		}
		// A's real next edit still applies.
		r := push(t, s, a, change("a2", "corridors", "rn1", map[string]uint64{"dev-A": 2}, "dev-A", map[string]any{"status": "restricted"})).Results[0]
		if r.Status != merge.Applied {
			t.Fatalf("A's next edit: %s %s", r.Status, r.Message)
		}
	})
}

// Replays interleaved with new pushes, in any order, leave the state a
// clean run leaves, and each replay answers duplicate.
func TestReplaysInterleavedWithOtherPushesLeaveTheSameState(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db dbtest.DB) {
		a, b := device("dev-A", "KEN-3"), device("dev-B", "KEN-3")
		batchA := []json.RawMessage{
			change("a1", "patrol_logs", "log-1", map[string]uint64{"dev-A": 1}, "dev-A", map[string]any{"unit": "KEN-3", "status": "planned"}),
			change("a2", "corridors", "rn1", map[string]uint64{"dev-A": 1}, "dev-A", map[string]any{"status": "open"}),
		}
		batchB := []json.RawMessage{
			change("b1", "patrol_logs", "log-1", map[string]uint64{"dev-A": 1, "dev-B": 1}, "dev-B", map[string]any{"status": "active"}),
			change("b2", "corridors", "rn1", map[string]uint64{"dev-B": 1}, "dev-B", map[string]any{"status": "closed"}),
		}
		batchC := []json.RawMessage{
			change("a3", "patrol_logs", "log-1", map[string]uint64{"dev-A": 2}, "dev-A", map[string]any{"route": "RN1"}),
		}
		clean := dbtest.SQLite(t)
		sc := newService(t, clean)
		push(t, sc, a, batchA...)
		push(t, sc, b, batchB...)
		push(t, sc, a, batchC...)
		want, _ := pullAll(t, sc, domain.Identity{Subject: "admin", Role: domain.RoleAdmin}, domain.Cursor{})

		s := newService(t, db)
		push(t, s, a, batchA...)
		push(t, s, b, batchB...)
		seenC := false
		for _, step := range []struct {
			id    domain.Identity
			batch []json.RawMessage
		}{{a, batchA}, {a, batchC}, {b, batchB}, {a, batchA}, {a, batchC}, {b, batchB}} {
			resp := push(t, s, step.id, step.batch...)
			for _, r := range resp.Results {
				// a3 is new the first time batch C comes; every other
				// answer is a replay.
				if r.ChangeID == "a3" && !seenC {
					seenC = true
					if r.Status != merge.Merged { // A had not seen B's edit
						t.Fatalf("a3 first delivery: %s", r.Status)
					}
					continue
				}
				if r.Status != merge.Duplicate {
					t.Fatalf("replayed %s: %s, want duplicate", r.ChangeID, r.Status)
				}
			}
		}
		got, _ := pullAll(t, s, domain.Identity{Subject: "admin", Role: domain.RoleAdmin}, domain.Cursor{})
		if len(got) != len(want) {
			t.Fatalf("%d records, want %d", len(got), len(want))
		}
		byID := map[string]*merge.Record{}
		for _, r := range want {
			byID[r.ID] = r
		}
		for _, r := range got {
			if w := byID[r.ID]; w == nil || !bytes.Equal(r.AppendJSON(nil), w.AppendJSON(nil)) {
				t.Fatalf("%s differs from a clean run:\n%s\n%s", r.ID, r.AppendJSON(nil), w.AppendJSON(nil))
			}
		}
	})
}
