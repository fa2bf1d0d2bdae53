package bench

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// NewTransport returns an HTTP transport for many simulated devices on
// loopback: keep-alive with enough idle connections that no request opens a
// new one in steady state, and no transparent gzip (the devices ask for
// gzip themselves and count the compressed bytes).
func NewTransport(idle int) *http.Transport {
	return &http.Transport{
		Proxy:               nil, // loopback only, whatever the environment says
		MaxIdleConns:        idle,
		MaxIdleConnsPerHost: idle,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

// device is one simulated device speaking the wire protocol: its token
// scopes it to its unit, its HLC stamps its edits, its cursor follows the
// feed.
type device struct {
	id     string
	unit   string
	token  string
	base   string
	client *http.Client
	rec    *recorder
	gzip   bool // Accept-Encoding: gzip on pulls and pushes

	cursor string
	clock  hlcClock

	wire atomic.Int64 // response body bytes as they came over the wire
}

// hlcClock stamps a device's edits: <unix_ms>-<counter>-<node>, strictly
// increasing.
type hlcClock struct {
	node string
	ms   int64
	n    uint32
}

func (c *hlcClock) tick() string {
	now := time.Now().UnixMilli()
	if now > c.ms {
		c.ms, c.n = now, 0
	} else {
		c.n++
	}
	return strconv.FormatInt(c.ms, 10) + "-" + strconv.FormatUint(uint64(c.n), 10) + "-" + c.node
}

// result is one push result, without its record.
type result struct {
	ChangeID string `json:"change_id"`
	Status   string `json:"status"`
	Code     string `json:"code"`
	Message  string `json:"message"`
}

// pulled is what a device keeps of a pulled record.
type pulled struct {
	ID string            `json:"id"`
	VV map[string]uint64 `json:"vv"`
}

type pullPage struct {
	Records []pulled `json:"records"`
	Cursor  string   `json:"cursor"`
	HasMore bool     `json:"has_more"`
}

// counted is a pull page whose records are only counted.
type counted struct {
	Records []struct{} `json:"records"`
	Cursor  string     `json:"cursor"`
	HasMore bool       `json:"has_more"`
}

var gzipWriters = sync.Pool{New: func() any { return gzip.NewWriter(io.Discard) }}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(len(b) / 4)
	zw := gzipWriters.Get().(*gzip.Writer)
	zw.Reset(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	gzipWriters.Put(zw)
	return buf.Bytes()
}

// push sends {"changes":[…]} (changes is the comma-separated list, without
// brackets) gzip-compressed with Prefer: return=minimal, as the field
// client does, and records its latency under kind.
func (d *device) push(ctx context.Context, kind string, changes []byte) ([]result, error) {
	body := make([]byte, 0, len(changes)+16)
	body = append(append(append(body, `{"changes":[`...), changes...), "]}"...)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+"/v1/sync/push", bytes.NewReader(gzipped(body)))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("Prefer", "return=minimal")
	var out struct {
		Results []result `json:"results"`
	}
	if err := d.do(req, kind, &out); err != nil {
		return nil, err
	}
	return out.Results, nil
}

// pull fetches one page after the device's cursor into v (a *pullPage
// or *counted) and records its latency under kind.
func (d *device) pull(ctx context.Context, kind string, limit int, v any) error {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if d.cursor != "" {
		q.Set("cursor", d.cursor)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.base+"/v1/sync/pull?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	return d.do(req, kind, v)
}

// pullAll pulls until has_more is false, calling each with every page's
// records, and returns the number of records received.
func (d *device) pullAll(ctx context.Context, kind string, limit int, each func([]pulled)) (int, error) {
	n := 0
	for {
		var p pullPage
		if err := d.pull(ctx, kind, limit, &p); err != nil {
			return n, err
		}
		n += len(p.Records)
		if each != nil {
			each(p.Records)
		}
		d.cursor = p.Cursor
		if !p.HasMore {
			return n, nil
		}
	}
}

// countAll is pullAll for a device that only counts what it receives.
func (d *device) countAll(ctx context.Context, kind string, limit int) (int, error) {
	n := 0
	for {
		var p counted
		if err := d.pull(ctx, kind, limit, &p); err != nil {
			return n, err
		}
		n += len(p.Records)
		d.cursor = p.Cursor
		if !p.HasMore {
			return n, nil
		}
	}
}

// do sends req with the device's token, reads the whole answer (inflating
// gzip by hand, to count the compressed bytes), decodes a 200 into v and
// turns anything else into an error naming the problem's code.
func (d *device) do(req *http.Request, kind string, v any) error {
	req.Header.Set("Authorization", "Bearer "+d.token)
	if d.gzip {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	start := time.Now()
	resp, err := d.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", kind, err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("%s: reading the answer: %w", kind, err)
	}
	d.rec.add(kind, time.Since(start))
	d.wire.Add(int64(len(raw)))
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
		if raw, err = io.ReadAll(zr); err != nil {
			return fmt.Errorf("%s: inflating the answer: %w", kind, err)
		}
	}
	if resp.StatusCode != http.StatusOK {
		var p struct {
			Code   string `json:"code"`
			Detail string `json:"detail"`
		}
		_ = json.Unmarshal(raw, &p)
		return fmt.Errorf("%s: %s (%s: %s)", kind, resp.Status, p.Code, p.Detail)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s: decoding the answer: %w", kind, err)
	}
	return nil
}

// Words of the generated notes: enough variety that gzip is not
// flattered by records that differ only in a number.
var (
	places = [...]string{"Delmas 33", "Kafou", "Carrefour Aviation", "Pétion-Ville", "Croix-des-Bouquets", "Tabarre 27",
		"Martissant", "Canapé-Vert", "Bizoton", "Route de Frères", "Cité Soleil junction", "Fontamara", "Bourdon",
		"Christ-Roi", "Bois Verna", "Pacot"}
	conditions = [...]string{"road clear", "light traffic", "market crowd, slow", "barricade removed", "tyres burnt overnight",
		"school convoy escorted", "heavy rain, potholes", "checkpoint unmanned"}
)

// appendNewLog appends one change creating a patrol log: a realistic
// creation (the fields of internal/syncer's benchmarks) with notes that
// vary from log to log.
func appendNewLog(b []byte, changeID, id, node, hlc, unit string, n int) []byte {
	h := uint64(n)*0x9E3779B97F4A7C15 + uint64(len(id))
	h ^= h >> 29
	b = append(b, `{"change_id":"`...)
	b = append(b, changeID...)
	b = append(b, `","collection":"patrol_logs","id":"`...)
	b = append(b, id...)
	b = append(b, `","vv":{"`...)
	b = append(b, node...)
	b = append(b, `":1},"hlc":"`...)
	b = append(b, hlc...)
	b = append(b, `","fields":{"unit":"`...)
	b = append(b, unit...)
	b = append(b, `","status":"active","route":"RN1 north via `...)
	b = append(b, places[h%16]...)
	b = append(b, `","callsign":"Tango `...)
	b = strconv.AppendUint(b, h>>8%40, 10)
	b = append(b, `","leader":"Sgt. Odhiambo","members_count":`...)
	b = strconv.AppendUint(b, 2+h>>16%9, 10)
	b = append(b, `,"notes":"checkpoint `...)
	b = append(b, places[h>>20%16]...)
	b = append(b, ` passed at `...)
	b = strconv.AppendUint(b, h>>24%24, 10)
	b = append(b, ':')
	b = strconv.AppendUint(b, 10+h>>32%50, 10)
	b = append(b, `, `...)
	b = append(b, conditions[h>>40%8]...)
	b = append(b, `; `...)
	b = strconv.AppendUint(b, h>>44%300, 10)
	b = append(b, ` vehicles checked, log `...)
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, `"}}`...)
}

// appendEdit appends one change editing a patrol log's notes and route,
// with the record's vector after the edit.
func appendEdit(b []byte, changeID, id string, v map[string]uint64, hlc, note string) []byte {
	b = append(b, `{"change_id":"`...)
	b = append(b, changeID...)
	b = append(b, `","collection":"patrol_logs","id":"`...)
	b = append(b, id...)
	b = append(b, `","vv":{`...)
	nodes := make([]string, 0, len(v))
	for n := range v {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	for i, n := range nodes {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, n)
		b = append(b, ':')
		b = strconv.AppendUint(b, v[n], 10)
	}
	b = append(b, `},"hlc":"`...)
	b = append(b, hlc...)
	b = append(b, `","fields":{"notes":`...)
	b = strconv.AppendQuote(b, note)
	b = append(b, `,"route":"RN2 south via Carrefour"}}`...)
	return b
}
