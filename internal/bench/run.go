package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// Config is one whole-server benchmark run.
type Config struct {
	// URLs are the base URLs of the servers under test (http://host:port);
	// devices are spread over them in turn.
	URLs []string
	// DatabaseURL is the servers' database (a postgres:// URL or an SQLite
	// path): the raw limits read and write it directly.
	DatabaseURL string
	// Token mints an access token for a device of a unit.
	Token func(device, unit string) (string, error)
	// PIDs are the server processes, for their peak RSS and CPU time;
	// empty for a server the caller did not start.
	PIDs []int

	Devices     int // concurrent devices in each push workload (8)
	Batch       int // changes per push (100)
	PushBatches int // pushes each device makes in each push workload (125)
	Records     int // records of the initial sync (100,000)
	Page        int // records per pull page (500)
	Shared      int // records the devices edit concurrently (2 × Batch)

	// Progress, when not nil, gets a line as each phase ends.
	Progress io.Writer
}

func (c *Config) defaults() {
	if c.Devices <= 0 {
		c.Devices = 8
	}
	if c.Batch <= 0 {
		c.Batch = 100
	}
	if c.PushBatches <= 0 {
		c.PushBatches = 125
	}
	if c.Records <= 0 {
		c.Records = 100_000
	}
	if c.Page <= 0 {
		c.Page = 500
	}
	if c.Shared <= 0 {
		c.Shared = 2 * c.Batch
	}
}

func (c *Config) validate() error {
	switch {
	case len(c.URLs) == 0:
		return errors.New("bench: no server URL")
	case c.Token == nil:
		return errors.New("bench: no token minter")
	case c.DatabaseURL == "":
		return errors.New("bench: no database URL for the raw limits")
	case c.Batch > 500:
		return errors.New("bench: batches hold at most 500 changes (the server's default limit)")
	case c.Page > 1000:
		return errors.New("bench: pull pages hold at most 1000 records")
	case c.Shared < c.Batch:
		return errors.New("bench: the shared set must hold at least one batch of records")
	case c.Devices > 64:
		return errors.New("bench: at most 64 devices")
	}
	return nil
}

// run is the state of one Run.
type run struct {
	cfg    Config
	id     string
	client *http.Client
	rec    *recorder
	raw    rawDB
	rep    *Report
}

// Run measures the servers in cfg and the raw limits of their database, in
// that order, and returns the report. It stops at the first error or when
// ctx ends.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	r := &run{
		cfg:    cfg,
		id:     hex.EncodeToString(b[:]),
		client: &http.Client{Transport: NewTransport(4 * cfg.Devices), Timeout: 2 * time.Minute},
		rec:    newRecorder(),
	}
	defer r.client.CloseIdleConnections()
	r.rep = &Report{
		Dialect: dialectOf(cfg.DatabaseURL), Servers: len(cfg.URLs), External: len(cfg.PIDs) == 0,
		Devices: cfg.Devices, Batch: cfg.Batch, PushBatches: cfg.PushBatches, Records: cfg.Records, Page: cfg.Page, Shared: cfg.Shared,
		Outcomes: map[string]int{},
	}
	raw, err := openRaw(ctx, cfg.DatabaseURL, cfg.Devices, r.id)
	if err != nil {
		return nil, err
	}
	defer raw.close()
	r.raw = raw
	start := time.Now()

	newUnit, editUnit := "BN-"+r.id, "BE-"+r.id
	writers, err := r.devices("bn", newUnit, cfg.Devices)
	if err != nil {
		return nil, err
	}
	editors, err := r.devices("be", editUnit, cfg.Devices)
	if err != nil {
		return nil, err
	}
	readers, err := r.devices("bp", newUnit, 2)
	if err != nil {
		return nil, err
	}
	readers[1].gzip = false

	// Push, new records; then the initial sync of them (topped up to
	// Records when the workload wrote fewer).
	ph := r.begin("push new")
	resetPeak(cfg.PIDs)
	mem := watchMem(cfg.PIDs)
	n, err := r.pushNew(ctx, writers)
	if err != nil {
		return nil, err
	}
	r.rep.PushNew = ph.rate(n)
	r.rep.PeakRSSPushBytes = peakRSS(cfg.PIDs)
	r.rep.PeakAnonPushBytes, r.rep.PeakFilePushBytes = mem.end()
	r.end(ph)
	want := n
	if want < cfg.Records {
		ph := r.begin("seed (untimed)")
		m, err := r.seed(ctx, writers[0], newUnit, cfg.Records-want)
		if err != nil {
			return nil, err
		}
		want += m
		r.end(ph)
	}

	// Autovacuum would analyze the freshly loaded tables within a minute;
	// without statistics PostgreSQL plans even the raw read as a sort of
	// every row, so the run does it itself.
	if err := raw.analyze(ctx); err != nil {
		return nil, fmt.Errorf("bench: analyze: %w", err)
	}
	ph = r.begin("pull gzip")
	resetPeak(cfg.PIDs)
	mem = watchMem(cfg.PIDs)
	got, err := readers[0].countAll(ctx, "pull", cfg.Page)
	if err != nil {
		return nil, err
	}
	r.rep.Pull = ph.rate(got)
	r.rep.PeakRSSPullBytes = peakRSS(cfg.PIDs)
	r.rep.PeakAnonPullBytes, _ = mem.end()
	r.end(ph)
	if got != want {
		return nil, fmt.Errorf("bench: the initial sync received %d records, want %d", got, want)
	}
	r.rep.PulledRecords = got
	r.rep.BytesPerRecordGzip = float64(readers[0].wire.Load()) / float64(got)

	ph = r.begin("pull plain")
	got, err = readers[1].countAll(ctx, "pull plain", cfg.Page)
	if err != nil {
		return nil, err
	}
	r.rep.PullPlain = ph.rate(got)
	r.end(ph)
	r.rep.BytesPerRecordPlain = float64(readers[1].wire.Load()) / float64(got)

	ph = r.begin("raw read")
	got, err = r.rawRead(ctx, newUnit)
	if err != nil {
		return nil, err
	}
	r.rep.RawRead = ph.rate(got)
	r.end(ph)
	if got != want {
		return nil, fmt.Errorf("bench: the raw read found %d records, want %d", got, want)
	}

	// Push, concurrent edits of shared records.
	ph = r.begin("push edits")
	resetPeak(cfg.PIDs)
	mem = watchMem(cfg.PIDs)
	n, pushTime, err := r.pushEdits(ctx, editors, editUnit)
	if err != nil {
		return nil, err
	}
	r.rep.PushEdit = rateOf(n, pushTime)
	r.rep.PeakRSSPushBytes = max(r.rep.PeakRSSPushBytes, peakRSS(cfg.PIDs))
	anon, file := mem.end()
	r.rep.PeakAnonPushBytes, r.rep.PeakFilePushBytes = max(r.rep.PeakAnonPushBytes, anon), max(r.rep.PeakFilePushBytes, file)
	r.end(ph)

	// The raw limits of the pushes, on rows shaped like what fieldsync
	// stored.
	newState, err := raw.sampleState(ctx, newUnit)
	if err != nil {
		return nil, fmt.Errorf("bench: a stored record to copy: %w", err)
	}
	editState, err := raw.sampleState(ctx, editUnit)
	if err != nil {
		return nil, fmt.Errorf("bench: a stored record to copy: %w", err)
	}
	r.rep.StateBytesNew, r.rep.StateBytesEdit = len(newState), len(editState)
	if err := raw.prepare(ctx); err != nil {
		return nil, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = raw.drop(dctx)
	}()
	ph = r.begin("raw upsert new")
	n, err = r.rawUpsertNew(ctx, newState)
	if err != nil {
		return nil, err
	}
	r.rep.RawUpsertNew = ph.rate(n)
	r.end(ph)
	ph = r.begin("raw upsert edits")
	n, pushTime, err = r.rawUpsertEdits(ctx, editState)
	if err != nil {
		return nil, err
	}
	r.rep.RawUpsertEdit = rateOf(n, pushTime)
	r.end(ph)

	r.rep.Latency = r.rec.summary()
	r.rep.Seconds = time.Since(start).Seconds()
	r.rep.figures()
	return r.rep, nil
}

// devices mints tokens for n devices of unit, spread over the servers;
// they ask for gzip, as the field client does.
func (r *run) devices(prefix, unit string, n int) ([]*device, error) {
	out := make([]*device, n)
	for i := range out {
		id := fmt.Sprintf("%s-%s-%d", prefix, r.id, i)
		tok, err := r.cfg.Token(id, unit)
		if err != nil {
			return nil, fmt.Errorf("bench: token for %s: %w", id, err)
		}
		out[i] = &device{id: id, unit: unit, token: tok, base: strings.TrimRight(r.cfg.URLs[i%len(r.cfg.URLs)], "/"),
			client: r.client, rec: r.rec, gzip: true, clock: hlcClock{node: id}}
	}
	return out, nil
}

// phase measures one step: its wall time, the CPU time of the servers and
// of this process, and how busy the machine was.
type phase struct {
	name             string
	start            time.Time
	server, client   time.Duration
	db               map[int]time.Duration // database backends' CPU time by pid
	busy, total      int64
	serverPIDs, self []int
}

func (r *run) begin(name string) *phase {
	p := &phase{name: name, serverPIDs: r.cfg.PIDs, self: []int{os.Getpid()}}
	p.server, p.client = cpuTime(p.serverPIDs), cpuTime(p.self)
	p.db = make(map[int]time.Duration)
	for _, pid := range r.raw.backends(context.Background()) {
		p.db[pid] = cpuTime([]int{pid})
	}
	p.busy, p.total = machineCPU()
	p.start = time.Now()
	return p
}

func (p *phase) rate(n int) Rate { return rateOf(n, time.Since(p.start)) }

func (r *run) end(p *phase) {
	wall := time.Since(p.start)
	busy, total := machineCPU()
	// A backend that connected during the phase counts from its start; one
	// that ended during it is lost (the pools keep theirs open).
	var db time.Duration
	for _, pid := range r.raw.backends(context.Background()) {
		db += cpuTime([]int{pid}) - p.db[pid]
	}
	ph := Phase{
		Name: p.name, Seconds: wall.Seconds(), DBCPUSeconds: db.Seconds(),
		ServerCPUSeconds: (cpuTime(p.serverPIDs) - p.server).Seconds(),
		BenchCPUSeconds:  (cpuTime(p.self) - p.client).Seconds(),
	}
	if total > p.total {
		ph.MachineBusy = float64(busy-p.busy) / float64(total-p.total)
	}
	r.rep.Phases = append(r.rep.Phases, ph)
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, "bench: %-18s %8.2f s\n", p.name, wall.Seconds())
	}
}

func rateOf(n int, d time.Duration) Rate {
	rt := Rate{Records: n, Seconds: d.Seconds()}
	if d > 0 {
		rt.PerSecond = float64(n) / d.Seconds()
	}
	return rt
}

// allStatus checks that every result has one of the statuses and counts
// them in the report.
func (r *run) allStatus(res []result, want int, ok ...string) error {
	if len(res) != want {
		return fmt.Errorf("bench: %d results for %d changes", len(res), want)
	}
	for _, x := range res {
		good := false
		for _, s := range ok {
			good = good || x.Status == s
		}
		if !good {
			return fmt.Errorf("bench: change %s: %s %s %s", x.ChangeID, x.Status, x.Code, x.Message)
		}
	}
	return nil
}

// pushNew has each device push PushBatches batches of Batch new patrol
// logs, all devices at once, and returns how many records were written.
func (r *run) pushNew(ctx context.Context, devs []*device) (int, error) {
	cfg := r.cfg
	err := each(devs, func(_ int, d *device) error {
		buf := make([]byte, 0, cfg.Batch*400)
		for i := 0; i < cfg.PushBatches; i++ {
			buf = buf[:0]
			for j := 0; j < cfg.Batch; j++ {
				n := i*cfg.Batch + j
				if j > 0 {
					buf = append(buf, ',')
				}
				buf = appendNewLog(buf, fmt.Sprintf("%s-c%d", d.id, n), fmt.Sprintf("%s-r%d", d.id, n), d.id, d.clock.tick(), d.unit, n)
			}
			res, err := d.push(ctx, "push new", buf)
			if err == nil {
				err = r.allStatus(res, cfg.Batch, "applied")
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return len(devs) * cfg.PushBatches * cfg.Batch, nil
}

// seed pushes n more new patrol logs from one device in batches of up to
// 500 (not timed: it only tops up the initial sync's data set).
func (r *run) seed(ctx context.Context, d *device, unit string, n int) (int, error) {
	done := 0
	var buf []byte
	for done < n {
		k := min(500, n-done)
		buf = buf[:0]
		for j := 0; j < k; j++ {
			i := done + j
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = appendNewLog(buf, fmt.Sprintf("%s-s%d", d.id, i), fmt.Sprintf("%s-s%d", d.id, i), d.id, d.clock.tick(), unit, i)
		}
		res, err := d.push(ctx, "seed", buf)
		if err == nil {
			err = r.allStatus(res, k, "applied")
		}
		if err != nil {
			return done, err
		}
		done += k
	}
	return done, nil
}

// sharedIDs are the ids of the records the editors share.
func (r *run) sharedIDs() []string {
	ids := make([]string, r.cfg.Shared)
	for i := range ids {
		ids[i] = fmt.Sprintf("sh-%s-%05d", r.id, i)
	}
	return ids
}

// window returns the shared records device d edits in round k: Batch
// consecutive records (wrapping), starting Shared/Devices further along for
// each device, so with the defaults every record is edited by four devices
// in every round.
func (r *run) window(ids []string, d, k int) []string {
	cfg := r.cfg
	stride := max(cfg.Shared/cfg.Devices, 1)
	start := k*cfg.Batch + d*stride
	out := make([]string, cfg.Batch)
	for i := range out {
		out[i] = ids[(start+i)%len(ids)]
	}
	return out
}

// pushEdits runs the concurrent-edit workload: one device creates the
// shared records; then, PushBatches rounds of: every device pulls until it
// is up to date (learning each record's vector), and then every device at
// once pushes one batch editing its window of the shared records, with the
// vector it pulled and its own counter raised. Only the push half of each
// round is timed; it returns the edits pushed and that time.
func (r *run) pushEdits(ctx context.Context, devs []*device, unit string) (int, time.Duration, error) {
	cfg := r.cfg
	ids := r.sharedIDs()
	creator := devs[0]
	for i := 0; i < len(ids); i += 500 {
		var buf []byte
		part := ids[i:min(i+500, len(ids))]
		for j, id := range part {
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = appendNewLog(buf, "c-"+id, id, creator.id, creator.clock.tick(), unit, i+j)
		}
		res, err := creator.push(ctx, "seed", buf)
		if err == nil {
			err = r.allStatus(res, len(part), "applied")
		}
		if err != nil {
			return 0, 0, err
		}
	}
	known := make([]map[string]map[string]uint64, len(devs)) // device → record → vector
	sent := make([]map[string]uint64, len(devs))             // device → record → own counter last sent
	for i := range devs {
		known[i], sent[i] = map[string]map[string]uint64{}, map[string]uint64{}
	}
	var (
		pushTime time.Duration
		mu       sync.Mutex
	)
	for k := 0; k < cfg.PushBatches; k++ {
		if err := each(devs, func(i int, d *device) error {
			_, err := d.pullAll(ctx, "pull delta", cfg.Page, func(recs []pulled) {
				for _, p := range recs {
					known[i][p.ID] = p.VV
				}
			})
			return err
		}); err != nil {
			return 0, 0, err
		}
		bodies := make([][]byte, len(devs))
		for i, d := range devs {
			var buf []byte
			for j, id := range r.window(ids, i, k) {
				v := make(map[string]uint64, len(known[i][id])+1)
				for n, c := range known[i][id] {
					v[n] = c
				}
				own := max(v[d.id], sent[i][id]) + 1
				v[d.id], sent[i][id] = own, own
				if j > 0 {
					buf = append(buf, ',')
				}
				buf = appendEdit(buf, fmt.Sprintf("%s-e%d-%d", d.id, k, j), id, v, d.clock.tick(), fmt.Sprintf("round %d by %s", k, d.id))
			}
			bodies[i] = buf
		}
		start := time.Now()
		if err := each(devs, func(i int, d *device) error {
			res, err := d.push(ctx, "push edits", bodies[i])
			if err == nil {
				err = r.allStatus(res, cfg.Batch, "applied", "merged")
			}
			if err == nil {
				mu.Lock()
				for _, x := range res {
					r.rep.Outcomes[x.Status]++
				}
				mu.Unlock()
			}
			return err
		}); err != nil {
			return 0, 0, err
		}
		pushTime += time.Since(start)
	}
	return len(devs) * cfg.PushBatches * cfg.Batch, pushTime, nil
}

// each runs fn for every device at once and waits for all of them.
func each(devs []*device, fn func(i int, d *device) error) error {
	return parallel(len(devs), func(i int) error { return fn(i, devs[i]) })
}

// parallel runs fn(0) … fn(n-1) at once and waits for all of them.
func parallel(n int, fn func(i int) error) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(i); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return errors.Join(collect(errs)...)
}

func collect(errs <-chan error) []error {
	var out []error
	for err := range errs {
		out = append(out, err)
	}
	return out
}

// rawRead reads the unit's records from the records table in pages of
// Page, by feed key, and returns how many it read.
func (r *run) rawRead(ctx context.Context, unit string) (int, error) {
	total := 0
	var key rawKey
	for {
		n, next, err := r.raw.readPage(ctx, unit, key, r.cfg.Page)
		if err != nil {
			return total, err
		}
		total += n
		if n < r.cfg.Page {
			return total, nil
		}
		key = next
	}
}

// rawUpsertNew is pushNew straight into the scratch table: Devices workers
// at once, each writing PushBatches transactions of Batch new rows.
func (r *run) rawUpsertNew(ctx context.Context, state string) (int, error) {
	cfg := r.cfg
	err := parallel(cfg.Devices, func(w int) error {
		rows := make([]rawRow, cfg.Batch)
		for i := 0; i < cfg.PushBatches; i++ {
			for j := range rows {
				rows[j] = rawRow{id: fmt.Sprintf("raw-%s-%d-%d", r.id, w, i*cfg.Batch+j), unit: "RAW", state: state}
			}
			if err := r.raw.upsert(ctx, rows); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return cfg.Devices * cfg.PushBatches * cfg.Batch, nil
}

// rawUpsertEdits is pushEdits straight into the scratch table: the same
// rounds and windows, each worker upserting its window in one transaction
// (keys in sorted order, as fieldsync locks them, so no two transactions
// deadlock); only the rounds are timed.
func (r *run) rawUpsertEdits(ctx context.Context, state string) (int, time.Duration, error) {
	cfg := r.cfg
	ids := r.sharedIDs()
	for i := 0; i < len(ids); i += cfg.Batch {
		var rows []rawRow
		for _, id := range ids[i:min(i+cfg.Batch, len(ids))] {
			rows = append(rows, rawRow{id: id, unit: "RAW", state: state})
		}
		if err := r.raw.upsert(ctx, rows); err != nil {
			return 0, 0, err
		}
	}
	var total time.Duration
	for k := 0; k < cfg.PushBatches; k++ {
		batches := make([][]rawRow, cfg.Devices)
		for w := range batches {
			win := r.window(ids, w, k)
			slices.Sort(win)
			for _, id := range win {
				batches[w] = append(batches[w], rawRow{id: id, unit: "RAW", state: state})
			}
		}
		start := time.Now()
		if err := parallel(cfg.Devices, func(w int) error { return r.raw.upsert(ctx, batches[w]) }); err != nil {
			return 0, 0, err
		}
		total += time.Since(start)
	}
	return cfg.Devices * cfg.PushBatches * cfg.Batch, total, nil
}

func dialectOf(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return "postgres"
	}
	return "sqlite"
}
