package bench

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// LoadConfig is one load test: Devices devices, each syncing every
// Interval for Duration (push Changes changes, then pull until has_more is
// false), spread over the servers in URLs.
type LoadConfig struct {
	URLs  []string
	Token func(device, unit string) (string, error)
	// Versions counts the versions the server holds (record_versions); it
	// is read before and after the run, and every change answered as
	// accepted must be one more.
	Versions func(ctx context.Context) (int64, error)

	Devices  int           // 1,000
	PerUnit  int           // devices per unit (10)
	Duration time.Duration // how long devices start syncs (2 min)
	Interval time.Duration // time between one device's syncs (30 s)
	Changes  int           // changes per push (20)
	Page     int           // records per pull page (500)
	Seed     uint64        // of the devices' start offsets and edits

	// Progress, when not nil, gets a line every ten seconds.
	Progress io.Writer
}

func (c *LoadConfig) defaults() {
	if c.Devices <= 0 {
		c.Devices = 1000
	}
	if c.PerUnit <= 0 {
		c.PerUnit = 10
	}
	if c.Duration <= 0 {
		c.Duration = 2 * time.Minute
	}
	if c.Interval <= 0 {
		c.Interval = 30 * time.Second
	}
	if c.Changes <= 0 {
		c.Changes = 20
	}
	if c.Page <= 0 {
		c.Page = 500
	}
}

// LoadReport is the result of Load.
type LoadReport struct {
	Devices         int     `json:"devices"`
	Servers         int     `json:"servers"`
	DurationSeconds float64 `json:"duration_seconds"`
	IntervalSeconds float64 `json:"interval_seconds"`
	Changes         int     `json:"changes_per_push"`

	Syncs    int `json:"syncs"`    // syncs completed without error
	Requests int `json:"requests"` // HTTP requests sent
	Sent     int `json:"sent"`     // changes pushed and answered applied or merged
	Errors   int `json:"errors"`   // failed requests and changes not accepted
	// ErrorSamples are the first few errors, verbatim.
	ErrorSamples []string `json:"error_samples,omitempty"`

	VersionsBefore int64 `json:"versions_before"`
	VersionsAfter  int64 `json:"versions_after"`

	Push    Latency `json:"push"`
	Pull    Latency `json:"pull"`
	All     Latency `json:"all"`
	Seconds float64 `json:"seconds"` // until the last sync ended
}

// Stored is the number of versions the run added on the server.
func (r *LoadReport) Stored() int64 { return r.VersionsAfter - r.VersionsBefore }

// Check returns an error unless the run had no errors and the server holds
// exactly one version per change accepted.
func (r *LoadReport) Check() error {
	var errs []error
	if r.Errors != 0 {
		errs = append(errs, fmt.Errorf("%d errors, first: %s", r.Errors, strings.Join(r.ErrorSamples, "; ")))
	}
	if r.Stored() != int64(r.Sent) {
		errs = append(errs, fmt.Errorf("the server stored %d versions for %d changes accepted", r.Stored(), r.Sent))
	}
	if r.Syncs == 0 {
		errs = append(errs, errors.New("no sync completed"))
	}
	return errors.Join(errs...)
}

// Print writes the report for people.
func (r *LoadReport) Print(w io.Writer) {
	fmt.Fprintf(w, "fieldsync load: %d devices over %d server processes, a sync (push %d changes, pull until drained) every %s each, for %s\n",
		r.Devices, r.Servers, r.Changes, time.Duration(r.IntervalSeconds*float64(time.Second)), time.Duration(r.DurationSeconds*float64(time.Second)))
	fmt.Fprintf(w, "syncs %d, requests %d (%.1f/s), changes sent %d, errors %d, versions stored %d (%s)\n",
		r.Syncs, r.Requests, float64(r.Requests)/max(r.Seconds, 1e-9), r.Sent, r.Errors, r.Stored(), equal(r.Stored() == int64(r.Sent)))
	for _, l := range []struct {
		name string
		l    Latency
	}{{"push", r.Push}, {"pull", r.Pull}, {"all", r.All}} {
		fmt.Fprintf(w, "%-5s %6d requests  p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms\n", l.name, l.l.Count, l.l.P50Ms, l.l.P99Ms, l.l.MaxMs)
	}
	met := "met"
	if r.All.P99Ms >= TargetLoadP99 {
		met = "not met"
	}
	fmt.Fprintf(w, "target p99 < 1 s: %s; errors 0: %s\n", met, map[bool]string{true: "met", false: "not met"}[r.Errors == 0])
	for _, s := range r.ErrorSamples {
		fmt.Fprintln(w, "error:", s)
	}
}

func equal(ok bool) string {
	if ok {
		return "equal"
	}
	return "NOT equal"
}

// Load runs the load test and returns its report; errors of single
// requests are counted in the report, not returned.
func Load(ctx context.Context, cfg LoadConfig) (*LoadReport, error) {
	cfg.defaults()
	if len(cfg.URLs) == 0 || cfg.Token == nil || cfg.Versions == nil {
		return nil, errors.New("bench: load needs server URLs, a token minter and a version counter")
	}
	if cfg.Changes > 500 {
		return nil, errors.New("bench: at most 500 changes per push")
	}
	var b [4]byte
	_, _ = crand.Read(b[:])
	run := hex.EncodeToString(b[:])
	if cfg.Seed == 0 {
		cfg.Seed = binary.LittleEndian.Uint64(append(b[:], b[:]...))
	}
	client := &http.Client{Transport: NewTransport(min(cfg.Devices, 1024)), Timeout: time.Minute}
	defer client.CloseIdleConnections()
	rec := newRecorder()
	devs := make([]*device, cfg.Devices)
	for i := range devs {
		id := fmt.Sprintf("ld-%s-%d", run, i)
		unit := fmt.Sprintf("LD-%s-%d", run, i/cfg.PerUnit)
		tok, err := cfg.Token(id, unit)
		if err != nil {
			return nil, fmt.Errorf("bench: token for %s: %w", id, err)
		}
		devs[i] = &device{id: id, unit: unit, token: tok, base: strings.TrimRight(cfg.URLs[i%len(cfg.URLs)], "/"),
			client: client, rec: rec, gzip: true, clock: hlcClock{node: id}}
	}
	rep := &LoadReport{Devices: cfg.Devices, Servers: len(cfg.URLs), DurationSeconds: cfg.Duration.Seconds(),
		IntervalSeconds: cfg.Interval.Seconds(), Changes: cfg.Changes}
	before, err := cfg.Versions(ctx)
	if err != nil {
		return nil, err
	}
	rep.VersionsBefore = before

	var (
		syncs, sent, requests atomic.Int64
		mu                    sync.Mutex
		errCount              int
		samples               []string
	)
	fail := func(n int, err error) {
		mu.Lock()
		errCount += n
		if len(samples) < 10 {
			samples = append(samples, err.Error())
		}
		mu.Unlock()
	}
	start := time.Now()
	stopProgress := make(chan struct{})
	if cfg.Progress != nil {
		go func() {
			t := time.NewTicker(10 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-stopProgress:
					return
				case <-t.C:
					mu.Lock()
					e := errCount
					mu.Unlock()
					fmt.Fprintf(cfg.Progress, "load: %3.0f s  syncs %d  changes %d  errors %d\n", time.Since(start).Seconds(), syncs.Load(), sent.Load(), e)
				}
			}
		}()
	}
	var wg sync.WaitGroup
	for i, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(i)))
			var own []ownLog // this device's patrol logs and its counter on each
			next := start.Add(time.Duration(rng.Int64N(int64(cfg.Interval))))
			for n := 0; next.Sub(start) < cfg.Duration; n++ {
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Until(next)):
				}
				next = next.Add(cfg.Interval)
				// Edits are made before the push, as on a device: a counter,
				// once used, is never used again, whatever the push's fate.
				var buf []byte
				for j := 0; j < cfg.Changes; j++ {
					if j > 0 {
						buf = append(buf, ',')
					}
					cid := fmt.Sprintf("%s-%d-%d", d.id, n, j)
					if k := len(own); k > 0 && rng.IntN(2) == 0 {
						x := &own[rng.IntN(k)]
						x.counter++
						buf = appendEdit(buf, cid, x.id, map[string]uint64{d.id: x.counter}, d.clock.tick(), fmt.Sprintf("sync %d", n))
						continue
					}
					id := fmt.Sprintf("%s-r%d-%d", d.id, n, j)
					own = append(own, ownLog{id: id, counter: 1})
					buf = appendNewLog(buf, cid, id, d.id, d.clock.tick(), d.unit, n*cfg.Changes+j)
				}
				requests.Add(1)
				res, err := d.push(ctx, "push", buf)
				if err != nil {
					fail(1, err)
					continue
				}
				bad := 0
				for _, x := range res {
					if x.Status != "applied" && x.Status != "merged" {
						if bad == 0 {
							fail(0, fmt.Errorf("%s: change %s: %s %s %s", d.id, x.ChangeID, x.Status, x.Code, x.Message))
						}
						bad++
					}
				}
				if bad > 0 || len(res) != cfg.Changes {
					fail(max(bad, 1), fmt.Errorf("%s: %d of %d changes not accepted", d.id, bad, cfg.Changes))
				}
				sent.Add(int64(len(res) - bad))
				for {
					var p counted
					requests.Add(1)
					if err := d.pull(ctx, "pull", cfg.Page, &p); err != nil {
						fail(1, err)
						break
					}
					d.cursor = p.Cursor
					if !p.HasMore {
						syncs.Add(1)
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	close(stopProgress)
	rep.Seconds = time.Since(start).Seconds()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bench: load test cut short: %w", err)
	}
	rep.Syncs, rep.Sent, rep.Requests = int(syncs.Load()), int(sent.Load()), int(requests.Load())
	rep.Errors, rep.ErrorSamples = errCount, samples
	lat := rec.summary()
	rep.Push, rep.Pull = lat["push"], lat["pull"]
	rec.mu.Lock()
	all := append(append([]time.Duration(nil), rec.durs["push"]...), rec.durs["pull"]...)
	rec.mu.Unlock()
	rep.All = Summarize(all)
	after, err := cfg.Versions(ctx)
	if err != nil {
		return nil, err
	}
	rep.VersionsAfter = after
	return rep, nil
}

// ownLog is a patrol log a load-test device created, with its counter on
// it (no other device edits it, so that is the record's whole vector).
type ownLog struct {
	id      string
	counter uint64
}
