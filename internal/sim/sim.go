package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync/sync/client"
	"github.com/fieldsync/fieldsync/sync/merge"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// Config sets up a simulation.
type Config struct {
	Devices  int     // simulated devices (default 20)
	Units    int     // units they are spread over (default 4)
	Edits    int     // edits per device (default 100)
	Seed     uint64  // makes a run reproducible (the server's timing aside)
	Faults   float64 // share of requests the proxy disturbs (default 0.1)
	Dir      string  // where device replicas live
	Scenario string  // "" or "week-offline" (for the command)
	Upstream string  // the server's base URL
	// Token returns a device token for a device of a unit, and ReaderToken
	// a token that reads every record whole, identities included (a
	// supervisor of every contingent), for the final check.
	Token       func(device, unit string) (string, error)
	ReaderToken string
	// Restarts is how many times, at random moments of the run, Restart
	// is called to kill a server process (SIGKILL) and start it again.
	Restarts int
	Restart  func(ctx context.Context, n int) error
}

// Report is what a run did and found.
type Report struct {
	Edits, Pushed, Rejected, Pulled, Retries int
	BytesSent, BytesRecv, BytesRaw           int
	CutBefore, CutAfter, Duplicated, Delayed int64
	Records                                  int
	Divergent                                []string // records a device holds differently from the server
	Missing                                  []string // server records in a device's scope it does not hold
	Pending                                  int      // edits left in outboxes after the final sync
	Restarts                                 int      // server processes killed and started again
	Resolutions                              int      // conflicts a supervisor resolved during the run
	Audit                                    *Audit   // the acknowledged-set check (Run only)
	Wall                                     time.Duration
}

// OK reports whether the run found no divergence and no loss.
func (r *Report) OK() bool {
	return len(r.Divergent) == 0 && len(r.Missing) == 0 && r.Pending == 0 && r.Rejected == 0 && (r.Audit == nil || r.Audit.OK())
}

func (r *Report) String() string {
	return fmt.Sprintf("edits %d, changes pushed %d (rejected %d), records pulled %d, retries %d, "+
		"faults: cut before %d, cut after %d, duplicated %d, delayed %d; bytes sent %d (%.0f%% of %d uncompressed), received %d; "+
		"records %d, divergent %d, missing %d, pending %d; server restarts %d, conflicts resolved by a supervisor %d; wall %s%s",
		r.Edits, r.Pushed, r.Rejected, r.Pulled, r.Retries, r.CutBefore, r.CutAfter, r.Duplicated, r.Delayed,
		r.BytesSent, pct(r.BytesSent, r.BytesRaw), r.BytesRaw, r.BytesRecv, r.Records, len(r.Divergent), len(r.Missing), r.Pending,
		r.Restarts, r.Resolutions, r.Wall.Round(time.Millisecond), r.auditString())
}

func (r *Report) auditString() string {
	if r.Audit == nil {
		return ""
	}
	s := "\n" + r.Audit.String()
	for _, e := range r.Audit.Examples {
		s += "\n  " + e
	}
	return s
}

type device struct {
	id   string
	unit string
	c    *client.Client
}

// Run plays the operation: devices edit patrol logs of their unit together,
// append entries, flip corridor status, and sync at random through the
// faulty proxy; then every device syncs until its outbox is empty, and the
// result is checked against the server.
func Run(ctx context.Context, cfg Config, proxyURL string, proxy *Proxy) (*Report, error) {
	if cfg.Devices <= 0 {
		cfg.Devices = 20
	}
	if cfg.Units <= 0 {
		cfg.Units = 4
	}
	if cfg.Edits <= 0 {
		cfg.Edits = 100
	}
	start := time.Now()
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed+1))
	var devs []*device
	for i := 0; i < cfg.Devices; i++ {
		d := &device{id: fmt.Sprintf("sim-%02d", i), unit: UnitName(i % cfg.Units)}
		tok, err := cfg.Token(d.id, d.unit)
		if err != nil {
			return nil, err
		}
		c, err := client.Open(filepath.Join(cfg.Dir, d.id+".db"), client.Config{
			BaseURL: proxyURL, Device: vv.NodeID(d.id), Attempts: 8, Backoff: 5 * time.Millisecond, MaxBatch: 50,
			Token: func(context.Context) (string, error) { return tok, nil },
		})
		if err != nil {
			return nil, err
		}
		defer c.Close()
		d.c = c
		devs = append(devs, d)
	}
	rep := &Report{}
	wrote := map[string]written{}
	acks := map[string]string{}
	add := func(st client.Stats) {
		for _, a := range st.Acks {
			if prev, ok := acks[a.ChangeID]; !ok || prev == string(merge.Duplicate) {
				acks[a.ChangeID] = a.Status // the first real answer (a replay says duplicate)
			}
		}
		rep.Pushed += st.Pushed
		rep.Rejected += st.Rejected
		rep.Pulled += st.Pulled
		rep.Retries += st.Retries
		rep.BytesSent += st.BytesSent
		rep.BytesRecv += st.BytesRecv
		rep.BytesRaw += st.BytesRaw
	}
	statuses := []string{"planned", "active", "cancelled", "completed"}
	corridor := []string{"open", "restricted", "closed"}
	entry := 0
	steps := cfg.Devices * cfg.Edits
	restartAt := map[int]bool{}
	for len(restartAt) < min(cfg.Restarts, steps) {
		restartAt[rng.IntN(steps)] = true
	}
	for step := 0; step < steps; step++ {
		if restartAt[step] && cfg.Restart != nil {
			if err := cfg.Restart(ctx, rep.Restarts); err != nil {
				return nil, fmt.Errorf("sim: restart a server: %w", err)
			}
			rep.Restarts++
		}
		d := devs[rng.IntN(len(devs))]
		var ch *merge.Change
		var err error
		switch k := rng.IntN(10); {
		case k < 5: // the unit's shared patrol logs
			id := fmt.Sprintf("log-%s-%d", d.unit, rng.IntN(3))
			fields := []merge.FieldValue{{Name: "unit", Value: jsonString(d.unit)}, {Name: "status", Value: jsonString(statuses[rng.IntN(4)])}}
			if rng.IntN(2) == 0 {
				fields = append(fields, merge.FieldValue{Name: "notes", Value: jsonString(fmt.Sprintf("note %d by %s", step, d.id))})
			}
			ch, _, err = d.c.EditChange(ctx, "patrol_logs", id, fields, false)
		case k < 7: // corridor reports
			id := fmt.Sprintf("corridor-%d", rng.IntN(3))
			ch, _, err = d.c.EditChange(ctx, "corridors", id, []merge.FieldValue{
				{Name: "status", Value: jsonString(corridor[rng.IntN(3)])},
				{Name: "verified_at", Value: jsonString(time.Now().UTC().Format(time.RFC3339))},
			}, false)
		case k < 9: // an entry
			entry++
			ch, _, err = d.c.EditChange(ctx, "patrol_entries", fmt.Sprintf("entry-%s-%d", d.id, entry), []merge.FieldValue{
				{Name: "patrol_id", Value: jsonString(fmt.Sprintf("00000000-0000-4000-8000-%012d", rng.IntN(3)))},
				{Name: "unit", Value: jsonString(d.unit)},
				{Name: "kind", Value: jsonString("observation")},
				{Name: "occurred_at", Value: jsonString(time.Now().UTC().Format(time.RFC3339))},
				{Name: "text", Value: jsonString(fmt.Sprintf("observation %d", step))},
			}, false)
		default: // a link comes up
			if rng.IntN(5) == 0 {
				// Now and then a supervisor works the conflict queue.
				n, err := resolveOne(ctx, cfg)
				if err != nil {
					return nil, err
				}
				rep.Resolutions += n
			}
			st, serr := d.c.Sync(ctx)
			add(st)
			_ = serr // a failed sync is a bad link: the outbox waits
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("sim: edit by %s: %w", d.id, err)
		}
		wrote[ch.ChangeID] = written{key: ch.Collection + "/" + ch.ID, device: d.id, node: ch.Node(), dot: ch.Dot()}
		rep.Edits++
	}
	// Everyone gets a good link at last: sync until the outboxes are empty,
	// then once more so every device has read every change.
	for round := 0; round < 2; round++ {
		for _, d := range devs {
			for attempt := 0; ; attempt++ {
				st, err := d.c.Sync(ctx)
				add(st)
				n, _ := d.c.Pending()
				if err == nil && n == 0 {
					break
				}
				if attempt > 50 {
					return nil, fmt.Errorf("sim: %s cannot finish syncing: %v", d.id, err)
				}
			}
		}
	}
	server, err := check(ctx, cfg, devs, rep)
	if err != nil {
		return nil, err
	}
	if rep.Audit, err = audit(ctx, cfg, server, wrote, acks, devs); err != nil {
		return nil, err
	}
	if proxy != nil {
		rep.CutBefore, rep.CutAfter = proxy.Faults.CutBefore.Load(), proxy.Faults.CutAfter.Load()
		rep.Duplicated, rep.Delayed = proxy.Faults.Duplicated.Load(), proxy.Faults.Delayed.Load()
	}
	rep.Wall = time.Since(start)
	return rep, nil
}

// resolveOne has a supervisor resolve the first open conflict of the queue
// by keeping the merged value (acknowledging what cannot take another): a
// server version every device must then pull. It returns how many it
// resolved (0 when the queue is empty or the conflict closed meanwhile).
func resolveOne(ctx context.Context, cfg Config) (int, error) {
	var page struct {
		Conflicts []struct {
			ID string `json:"id"`
		} `json:"conflicts"`
	}
	if err := getJSON(ctx, cfg.Upstream, "/v1/conflicts?status=open&limit=1", cfg.ReaderToken, &page); err != nil {
		return 0, err
	}
	if len(page.Conflicts) == 0 {
		return 0, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.Upstream+"/v1/conflicts/"+page.Conflicts[0].ID+"/resolve",
		strings.NewReader(`{"choice":"keep","reason":"reviewed in the simulation"}`))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+cfg.ReaderToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return 1, nil
	case http.StatusConflict:
		return 0, nil // closed by a write in between
	}
	return 0, fmt.Errorf("sim: resolve: %d %s", resp.StatusCode, body)
}

// contingents are the mission's contingents the simulated units belong to.
var contingents = []string{"KEN", "JAM", "BLZ", "BHS", "GTM", "SLV"}

// UnitName names the simulated unit u: its contingent, a dash, a number
// (KEN-0, JAM-1, ...).
func UnitName(u int) string { return fmt.Sprintf("%s-%d", contingents[u%len(contingents)], u) }

// ContingentOf returns the contingent of a simulated unit.
func ContingentOf(unit string) string {
	c, _, _ := strings.Cut(unit, "-")
	return c
}

func pct(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

func jsonString(s string) []byte { return []byte(strconv.Quote(s)) }

// check compares every device's replica with the server's records in its
// scope, byte for byte.
func check(ctx context.Context, cfg Config, devs []*device, rep *Report) (map[string]*merge.Record, error) {
	server, err := pullAll(ctx, cfg.Upstream, cfg.ReaderToken)
	if err != nil {
		return nil, err
	}
	rep.Records = len(server)
	keys := make([]string, 0, len(server))
	for k := range server {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, d := range devs {
		for _, k := range keys {
			srv := server[k]
			if srv.Collection != "corridors" && string(srv.Value("unit")) != string(jsonString(d.unit)) {
				continue // outside the device's scope
			}
			local, err := d.c.Record(srv.Collection, srv.ID)
			if err != nil {
				return nil, err
			}
			if local == nil {
				rep.Missing = append(rep.Missing, d.id+":"+k)
				continue
			}
			if !bytes.Equal(local.AppendJSON(nil), srv.AppendJSON(nil)) {
				rep.Divergent = append(rep.Divergent, d.id+":"+k)
			}
		}
		n, _ := d.c.Pending()
		rep.Pending += n
	}
	return server, nil
}

// pullAll reads every record through the server's pull.
func pullAll(ctx context.Context, base, token string) (map[string]*merge.Record, error) {
	out := map[string]*merge.Record{}
	cursor := ""
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/sync/pull?limit=1000&cursor="+cursor, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("sim: pull: %d %v", resp.StatusCode, err)
		}
		var page struct {
			Records []json.RawMessage `json:"records"`
			Cursor  string            `json:"cursor"`
			HasMore bool              `json:"has_more"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return nil, err
		}
		for _, raw := range page.Records {
			var r merge.Record
			if err := r.UnmarshalJSON(raw); err != nil {
				return nil, err
			}
			if _, dup := out[r.Collection+"/"+r.ID]; dup {
				return nil, fmt.Errorf("sim: the feed served %s/%s twice in one full pull", r.Collection, r.ID)
			}
			out[r.Collection+"/"+r.ID] = &r
		}
		cursor = page.Cursor
		if !page.HasMore {
			return out, nil
		}
	}
}
