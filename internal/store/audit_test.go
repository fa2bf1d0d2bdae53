package store_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/audit"
	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/internal/store"
	"github.com/fieldsync/fieldsync/internal/store/dbtest"
	"github.com/fieldsync/fieldsync/internal/syncer"
	"github.com/fieldsync/fieldsync/sync/hlc"
	"github.com/fieldsync/fieldsync/sync/vv"
)

type auditRow struct {
	Seq                                          int64
	At                                           time.Time
	Kind, Actor, Subject, Detail, PrevHash, Hash string
}

// seedHistory writes a small operation through the syncer: devices of two
// units pushing logs, entries and corridor reports, with conflicts, a
// resolution and a sign-off; every one of them appends to the audit trail.
func seedHistory(t *testing.T, s *store.Store) {
	t.Helper()
	ctx := context.Background()
	svc := syncer.New(s, hlc.NewClock(vv.Server, func() int64 { return time.Now().UnixMilli() }, 60_000), time.Now, syncer.Config{})
	counters := map[string]int{}
	push := func(dev, unit, collection, id string, seen map[string]int, fields map[string]any) {
		t.Helper()
		counters[dev+id]++
		v := map[string]int{dev: counters[dev+id]}
		for k, c := range seen {
			v[k] = c
		}
		b, _ := json.Marshal(map[string]any{"change_id": fmt.Sprintf("%s-%d-%s", dev, counters[dev+id], id), "collection": collection, "id": id,
			"vv": v, "hlc": fmt.Sprintf("%d-0-%s", time.Now().UnixMilli(), dev), "fields": fields})
		if _, err := svc.Push(ctx, domain.Identity{Subject: dev, Role: domain.RoleDevice, Unit: unit, Contingent: "KEN"}, []json.RawMessage{b}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 6; i++ {
		log := fmt.Sprintf("log-%d", i)
		push("dev-a", "KEN-1", "patrol_logs", log, nil, map[string]any{"unit": "KEN-1", "status": "active", "route": "RN1"})
		push("dev-b", "KEN-1", "patrol_logs", log, nil, map[string]any{"unit": "KEN-1", "status": "planned", "route": "RN2"})
		push("dev-a", "KEN-1", "patrol_logs", log, nil, map[string]any{"summary": fmt.Sprintf("day %d", i)})
		push("dev-c", "KEN-2", "corridors", fmt.Sprintf("seg-%d", i%2), nil, map[string]any{"status": []string{"open", "closed"}[i%2], "verified_at": time.Now().UTC().Format(time.RFC3339)})
	}
	push("dev-a", "KEN-1", "patrol_logs", "log-x", nil, map[string]any{"unit": "KEN-1", "status": "flying"}) // refused
	sup := domain.Identity{Subject: "sup-1", Role: domain.RoleSupervisor, Contingent: "KEN"}
	cs, err := s.Conflicts(ctx, domain.ConflictFilter{Status: "open", Collection: "patrol_logs"})
	if err != nil || len(cs) == 0 {
		t.Fatalf("conflicts: %v %d", err, len(cs))
	}
	if _, _, err := svc.Resolve(ctx, sup, cs[0].ID, syncer.ResolveRequest{Choice: syncer.ChoiceKeep, Reason: "checked"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.SignOff(ctx, sup, "log-1"); err != nil {
		t.Fatal(err)
	}
}

// The audit trail under attack: 1,000 random tamperings of the audit and
// history tables (a changed column, a deleted, reordered, inserted or
// duplicated row, a truncated tail, a chain rebuilt after an edit, a
// changed, deleted or inserted history row), each on the untouched
// original. Verification against a checkpoint of the head must name a
// problem every time, and pass on the original and on a no-op change.
func TestAuditVerifyDetectsEveryTampering(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db dbtest.DB) {
		ctx := context.Background()
		s := db.Store
		seedHistory(t, s)
		var rows []auditRow
		if err := s.DB().Raw(`SELECT seq, at, kind, actor, subject, detail, prev_hash, hash FROM audit_log ORDER BY seq`).Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		var versions []struct {
			Seq, Dot                          int64
			Collection, RecordID, Node, State string
		}
		if err := s.DB().Raw(`SELECT seq, dot, collection, record_id, node, state FROM record_versions ORDER BY seq`).Scan(&versions).Error; err != nil {
			t.Fatal(err)
		}
		kinds := map[string]bool{}
		for _, r := range rows {
			kinds[r.Kind] = true
		}
		if len(rows) < 20 || !kinds["push"] || !kinds["resolve"] || !kinds["sign_off"] || len(versions) < 20 {
			t.Fatalf("the seeded trail is too thin to test: %d entries (%v), %d versions", len(rows), kinds, len(versions))
		}
		n := int64(len(rows))
		pub, priv, _ := ed25519.GenerateKey(nil)
		head, _ := audit.ParseHash(rows[n-1].Hash)
		note, err := audit.SignCheckpoint(audit.Checkpoint{Origin: "fieldsync", Seq: n, Hash: head, At: time.Now()}, "fieldsync-audit", priv)
		if err != nil {
			t.Fatal(err)
		}
		cp, err := audit.OpenCheckpoint(note, "fieldsync-audit", []ed25519.PublicKey{pub})
		if err != nil {
			t.Fatal(err)
		}
		cps := []audit.Checkpoint{cp}
		rep, err := s.VerifyAudit(ctx, cps)
		if err != nil || rep.Err != nil || rep.Entries != n || rep.Versions != int64(len(versions)) {
			t.Fatalf("the untouched trail: %+v %v", rep, err)
		}
		type exec = func(q string, args ...any) error
		rng := rand.New(rand.NewPCG(1, 2))
		pick := func() auditRow { return rows[rng.IntN(len(rows))] }
		flip := func(h string) string {
			b := []byte(h)
			i := rng.IntN(len(b))
			b[i] = "0123456789abcdef"[(indexHex(b[i])+1+rng.IntN(15))%16]
			return string(b)
		}
		// rechain recomputes the hashes of rows from index k on, as an
		// attacker who knows the algorithm would.
		rechain := func(x exec, rs []auditRow, k int) error {
			var prev *audit.Entry
			if k > 0 {
				h, _ := audit.ParseHash(rs[k-1].Hash)
				prev = &audit.Entry{Seq: rs[k-1].Seq, Hash: h}
			}
			for i := k; i < len(rs); i++ {
				e := audit.Next(prev, rs[i].At, rs[i].Kind, rs[i].Actor, rs[i].Subject, []byte(rs[i].Detail))
				if err := x(`UPDATE audit_log SET detail = ?, prev_hash = ?, hash = ? WHERE seq = ?`, rs[i].Detail, e.Prev.String(), e.Hash.String(), rs[i].Seq); err != nil {
					return err
				}
				prev = &e
			}
			return nil
		}
		mutations := []struct {
			name string
			do   func(x exec) error
		}{
			{"change a column", func(x exec) error {
				r := pick()
				switch rng.IntN(7) {
				case 0:
					return x(`UPDATE audit_log SET at = ? WHERE seq = ?`, r.At.Add(time.Duration(1+rng.IntN(1000))*time.Second), r.Seq)
				case 1:
					return x(`UPDATE audit_log SET kind = ? WHERE seq = ?`, r.Kind+"x", r.Seq)
				case 2:
					return x(`UPDATE audit_log SET actor = ? WHERE seq = ?`, "someone-else", r.Seq)
				case 3:
					return x(`UPDATE audit_log SET subject = ? WHERE seq = ?`, r.Subject+"!", r.Seq)
				case 4:
					return x(`UPDATE audit_log SET detail = ? WHERE seq = ?`, r.Detail+" ", r.Seq)
				case 5:
					return x(`UPDATE audit_log SET prev_hash = ? WHERE seq = ?`, flip(r.PrevHash), r.Seq)
				}
				return x(`UPDATE audit_log SET hash = ? WHERE seq = ?`, flip(r.Hash), r.Seq)
			}},
			{"change a column and recompute the row's own hash", func(x exec) error {
				k := rng.IntN(len(rows))
				rs := append([]auditRow(nil), rows...)
				rs[k].Actor = "forger"
				if err := x(`UPDATE audit_log SET actor = ? WHERE seq = ?`, "forger", rs[k].Seq); err != nil {
					return err
				}
				return rechain(x, rs[:k+1], k)
			}},
			{"delete a row", func(x exec) error { return x(`DELETE FROM audit_log WHERE seq = ?`, pick().Seq) }},
			{"swap two rows' seq", func(x exec) error {
				a, b := pick().Seq, pick().Seq
				for a == b {
					b = pick().Seq
				}
				if err := x(`UPDATE audit_log SET seq = -1 WHERE seq = ?`, a); err != nil {
					return err
				}
				if err := x(`UPDATE audit_log SET seq = ? WHERE seq = ?`, a, b); err != nil {
					return err
				}
				return x(`UPDATE audit_log SET seq = ? WHERE seq = -1`, b)
			}},
			{"insert a forged row in the middle", func(x exec) error {
				k := 1 + rng.Int64N(n-1) // the forged row takes seq k+1
				if err := x(`UPDATE audit_log SET seq = -seq WHERE seq > ?`, k); err != nil {
					return err
				}
				if err := x(`UPDATE audit_log SET seq = 1 - seq WHERE seq < 0`); err != nil {
					return err
				}
				h, _ := audit.ParseHash(rows[k-1].Hash)
				e := audit.Next(&audit.Entry{Seq: k, Hash: h}, rows[k-1].At, "push", "dev-forger", "", []byte(`{}`))
				return x(`INSERT INTO audit_log (seq, at, kind, actor, subject, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
					e.Seq, e.At, e.Kind, e.Actor, e.Subject, string(e.Detail), e.Prev.String(), e.Hash.String())
			}},
			{"append a copy of a row", func(x exec) error {
				r := pick()
				return x(`INSERT INTO audit_log (seq, at, kind, actor, subject, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
					n+1, r.At, r.Kind, r.Actor, r.Subject, r.Detail, r.PrevHash, r.Hash)
			}},
			{"append a well-chained row claiming a version that is not there", func(x exec) error {
				h, _ := audit.ParseHash(rows[n-1].Hash)
				detail := `{"versions":[{"collection":"patrol_logs","record_id":"log-9","change_id":"forged","node":"dev-z","dot":1,"digest":"00"}]}`
				e := audit.Next(&audit.Entry{Seq: n, Hash: h}, time.Now(), "push", "dev-z", "", []byte(detail))
				return x(`INSERT INTO audit_log (seq, at, kind, actor, subject, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
					e.Seq, e.At, e.Kind, e.Actor, e.Subject, string(e.Detail), e.Prev.String(), e.Hash.String())
			}},
			{"truncate the tail", func(x exec) error { return x(`DELETE FROM audit_log WHERE seq > ?`, n-1-rng.Int64N(5)) }},
			{"rebuild the chain after an edit", func(x exec) error {
				k := rng.IntN(len(rows))
				rs := append([]auditRow(nil), rows...)
				rs[k].Subject = "rewritten"
				if err := x(`UPDATE audit_log SET subject = ? WHERE seq = ?`, "rewritten", rs[k].Seq); err != nil {
					return err
				}
				return rechain(x, rs, k)
			}},
			{"change a history row", func(x exec) error {
				v := versions[rng.IntN(len(versions))]
				return x(`UPDATE record_versions SET state = ? WHERE seq = ?`, v.State[:len(v.State)-1]+` }`, v.Seq)
			}},
			{"delete a history row", func(x exec) error {
				return x(`DELETE FROM record_versions WHERE seq = ?`, versions[rng.IntN(len(versions))].Seq)
			}},
			{"insert a history row", func(x exec) error {
				v := versions[rng.IntN(len(versions))]
				return x(`INSERT INTO record_versions (collection, record_id, change_id, subject, node, dot, hlc, outcome, change, state, received_at)
					SELECT collection, record_id, 'forged', subject, node, dot + 1000, hlc, outcome, change, state, received_at FROM record_versions WHERE seq = ?`, v.Seq)
			}},
		}
		ran := map[string]int{}
		for trial := 0; trial < 1000; trial++ {
			m := mutations[rng.IntN(len(mutations))]
			ran[m.name]++
			rep, err := s.TamperedAudit(ctx, m.do, cps)
			if err != nil {
				t.Fatalf("trial %d (%s): %v", trial, m.name, err)
			}
			if rep.Err == nil {
				t.Fatalf("trial %d: %q went undetected", trial, m.name)
			}
		}
		for _, m := range mutations {
			if ran[m.name] == 0 {
				t.Fatalf("mutation %q never ran", m.name)
			}
		}
		// The control: a change that changes nothing verifies.
		rep, err = s.TamperedAudit(ctx, func(x exec) error { return x(`UPDATE audit_log SET actor = actor`) }, cps)
		if err != nil || rep.Err != nil {
			t.Fatalf("a no-op update was reported: %v %v", err, rep.Err)
		}
		t.Logf("1,000 tamperings, all detected: %v", ran)
	})
}

func indexHex(c byte) int {
	if c >= 'a' {
		return int(c-'a') + 10
	}
	return int(c - '0')
}
