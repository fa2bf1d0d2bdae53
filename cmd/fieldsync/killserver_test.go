package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/auth"
	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/internal/store"
	"github.com/fieldsync/fieldsync/internal/store/dbtest"
)

// killBatch is one push request of the kill test: ten new patrol logs.
type killBatch struct {
	device string
	ids    []string // change ids
	body   []byte
	acked  bool
}

// A server process is killed with SIGKILL 100 times while four devices push
// to it; in some cycles it kills itself between a push's commit and its
// answer. After every kill, straight from the database: every batch that
// got a 200 is fully there, every other batch is there entirely or not at
// all (never half). Every unanswered batch is sent again after the restart
// until it gets a 200. At the end every change is in the history exactly
// once.
func TestServerKilledDuringPushesLosesAndDuplicatesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("100 server restarts")
	}
	ctx := context.Background()
	var url string
	if db, ok := dbtest.Postgres(t); ok {
		url = db.URL
	} else {
		url = filepath.Join(t.TempDir(), "fieldsync.db")
	}
	st, err := store.Open(ctx, url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	ring, err := auth.NewKeyring(ctx, st, auth.Config{Issuer: "fieldsync", Audience: "fieldsync"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ring.EnsureSigningKey(ctx); err != nil {
		t.Fatal(err)
	}
	procs, err := startServers(ctx, 1, []string{"FIELDSYNC_DATABASE_URL=" + url, "FIELDSYNC_RATE_LIMIT_DEVICE=0", childCrash + "=0.05"})
	if err != nil {
		t.Fatal(err)
	}
	defer procs.stop()

	const devices, perBatch, cycles = 4, 10, 100
	tokens := make([]string, devices)
	for d := range tokens {
		if tokens[d], err = ring.Issue(domain.Identity{Subject: fmt.Sprintf("dev-k%d", d), Role: domain.RoleDevice, Unit: "KEN-1", Contingent: "KEN"}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	var batches []*killBatch
	next := make([]int, devices)
	newBatch := func(d int) *killBatch {
		dev := fmt.Sprintf("dev-k%d", d)
		b := &killBatch{device: dev}
		var changes []map[string]any
		for j := 0; j < perBatch; j++ {
			id := fmt.Sprintf("%s-b%d-c%d", dev, next[d], j)
			b.ids = append(b.ids, id)
			changes = append(changes, map[string]any{"change_id": id, "collection": "patrol_logs", "id": "log-" + id,
				"vv": map[string]int{dev: 1}, "hlc": fmt.Sprintf("%d-0-%s", time.Now().UnixMilli(), dev),
				"fields": map[string]any{"unit": "KEN-1", "status": "active"}})
		}
		next[d]++
		b.body, _ = json.Marshal(map[string]any{"changes": changes})
		batches = append(batches, b)
		return b
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	push := func(d int, b *killBatch) bool {
		req, _ := http.NewRequest(http.MethodPost, procs.url(0)+"/v1/sync/push", bytes.NewReader(b.body))
		req.Header.Set("Authorization", "Bearer "+tokens[d])
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return false
		}
		var out struct {
			Results []struct{ Status string } `json:"results"`
		}
		if json.Unmarshal(body, &out) != nil || len(out.Results) != perBatch {
			return false // a body cut short is no answer
		}
		for _, r := range out.Results {
			if r.Status != "applied" && r.Status != "duplicate" {
				t.Errorf("a change of %s answered %s", b.device, r.Status)
			}
		}
		return true
	}
	// counts reads, from the database, how many versions each change id has.
	counts := func() map[string]int {
		var rows []struct {
			ChangeID string
			N        int
		}
		if err := st.DB().Raw(`SELECT change_id, COUNT(*) AS n FROM record_versions GROUP BY change_id`).Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for _, r := range rows {
			out[r.ChangeID] = r.N
		}
		return out
	}
	pending := make([][]*killBatch, devices) // unanswered batches, per device, to send again
	rng := rand.New(rand.NewPCG(11, 12))
	committedUnanswered, crashedInside := 0, 0
	for cycle := 0; cycle < cycles; cycle++ {
		if cycle > 0 {
			if err := procs.start(ctx, 0); err != nil {
				t.Fatalf("cycle %d: %v", cycle, err)
			}
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		for d := 0; d < devices; d++ {
			wg.Add(1)
			go func(d int) {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					mu.Lock()
					var b *killBatch
					if len(pending[d]) > 0 {
						b, pending[d] = pending[d][0], pending[d][1:]
					} else {
						b = newBatch(d)
					}
					mu.Unlock()
					ok := push(d, b)
					mu.Lock()
					if ok {
						b.acked = true
					} else {
						pending[d] = append([]*killBatch{b}, pending[d]...)
					}
					mu.Unlock()
					if !ok {
						select {
						case <-stop:
							return
						case <-procs.done[0]:
							return // the server died (killed itself after a commit)
						case <-time.After(5 * time.Millisecond):
						}
					}
				}
			}(d)
		}
		select {
		case <-time.After(time.Duration(20+rng.IntN(130)) * time.Millisecond):
		case <-procs.done[0]:
			crashedInside++
		}
		procs.kill(0)
		close(stop)
		wg.Wait()
		got := counts()
		for _, b := range batches {
			n := 0
			for _, id := range b.ids {
				if got[id] > 1 {
					t.Fatalf("cycle %d: change %s is in the history %d times", cycle, id, got[id])
				}
				n += got[id]
			}
			switch {
			case b.acked && n != perBatch:
				t.Fatalf("cycle %d: a batch of %s got a 200 but %d of its %d changes are stored", cycle, b.device, n, perBatch)
			case n != 0 && n != perBatch:
				t.Fatalf("cycle %d: half a batch of %s is stored (%d of %d)", cycle, b.device, n, perBatch)
			}
		}
		for d := range pending {
			for _, b := range pending[d] {
				if got[b.ids[0]] == 1 && !b.acked {
					committedUnanswered++
				}
			}
		}
	}
	// Every unanswered batch again, until it is answered.
	if err := procs.start(ctx, 0); err != nil {
		t.Fatal(err)
	}
	procs.kill(0)
	procs.env = procs.env[:len(procs.env)-1] // no more crashes: the last round must finish
	if err := procs.start(ctx, 0); err != nil {
		t.Fatal(err)
	}
	for d := range pending {
		for _, b := range pending[d] {
			for attempt := 0; !push(d, b); attempt++ {
				if attempt > 20 {
					t.Fatalf("a batch of %s is never answered", b.device)
				}
				time.Sleep(50 * time.Millisecond)
			}
			b.acked = true
		}
	}
	got := counts()
	total := 0
	for _, b := range batches {
		for _, id := range b.ids {
			if got[id] != 1 {
				t.Fatalf("change %s is in the history %d times at the end", id, got[id])
			}
			total++
		}
	}
	if len(got) != total {
		t.Fatalf("the history holds %d change ids, the devices sent %d", len(got), total)
	}
	t.Logf("%d kills (%d by the server itself between a commit and its answer); %d batches (%d changes), each stored exactly once; %d batch-cycles ended committed but unanswered",
		cycles, crashedInside, len(batches), total, committedUnanswered)
	if crashedInside == 0 || committedUnanswered == 0 {
		t.Fatalf("no kill fell between a commit and its answer (%d self-kills, %d committed-unanswered): the test did not test that", crashedInside, committedUnanswered)
	}
}
