package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"

	"github.com/fieldsync/fieldsync/sync/merge"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// written is one edit a simulated device made, as it queued it.
type written struct {
	key    string // collection/id
	device string
	node   vv.NodeID
	dot    uint64
}

// version is one entry of a record's history on the server.
type version struct {
	ChangeID string                   `json:"change_id"`
	Node     vv.NodeID                `json:"node"`
	Dot      uint64                   `json:"dot"`
	Outcome  string                   `json:"outcome"`
	Changed  []struct{ Field string } `json:"changed"`
	State    json.RawMessage          `json:"state"`
	state    *merge.Record
}

// Audit is the acknowledged-set check of a run: what the server answered
// for, against what it holds and what every device read.
type Audit struct {
	Versions int // versions in the server's history
	// Lost: changes the server answered 200 for (applied or merged) that
	// are in no version. Unexpected: versions of a change no device wrote.
	// Duplicated: changes in more than one version. NeverRead: (device,
	// version) pairs in the device's scope its replica has not seen.
	Lost, Unexpected, Duplicated, NeverRead int
	// Unserved: records a device wrote (and the server accepted) that a
	// full pull of the feed did not serve.
	Unserved int
	// ValuesLost: written field values that are neither in the state
	// (kept or a sibling) nor replaced by a later write of the field that
	// had seen them.
	ValuesLost int
	// ConflictsUnlisted: disputed fields of the server's records missing
	// from GET /v1/conflicts?status=open, or listed with other values;
	// ConflictsStale: open conflicts listed for fields no longer disputed.
	ConflictsUnlisted, ConflictsStale int
	ConflictsByRule                   map[string]int // every conflict the server recorded, open or resolved
	Examples                          []string       // the first problems found
}

func (a *Audit) problem(format string, args ...any) {
	if len(a.Examples) < 10 {
		a.Examples = append(a.Examples, fmt.Sprintf(format, args...))
	}
}

// OK reports whether the check found nothing wrong.
func (a *Audit) OK() bool {
	return a.Lost == 0 && a.Unserved == 0 && a.Unexpected == 0 && a.Duplicated == 0 && a.NeverRead == 0 && a.ValuesLost == 0 &&
		a.ConflictsUnlisted == 0 && a.ConflictsStale == 0
}

func (a *Audit) String() string {
	rules := make([]string, 0, len(a.ConflictsByRule))
	for r, n := range a.ConflictsByRule {
		rules = append(rules, fmt.Sprintf("%s %d", r, n))
	}
	sort.Strings(rules)
	return fmt.Sprintf("acknowledged-set check: %d versions; lost %d, unserved records %d, unexpected %d, duplicated %d, never read %d; "+
		"values lost %d; conflicts unlisted %d, stale %d; conflicts by rule: %v",
		a.Versions, a.Lost, a.Unserved, a.Unexpected, a.Duplicated, a.NeverRead, a.ValuesLost, a.ConflictsUnlisted, a.ConflictsStale, rules)
}

// getJSON reads one JSON document from the server as token.
func getJSON(ctx context.Context, base, path, token string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("sim: GET %s: %d %s", path, resp.StatusCode, body)
	}
	return json.Unmarshal(body, out)
}

// history reads a record's versions.
func history(ctx context.Context, base, token, collection, id string) ([]version, error) {
	var all []version
	cursor := ""
	for {
		var h struct {
			Versions []version `json:"versions"`
			Cursor   string    `json:"cursor"`
			HasMore  bool      `json:"has_more"`
		}
		if err := getJSON(ctx, base, "/v1/records/"+collection+"/"+url.PathEscape(id)+"/history?limit=1000&cursor="+url.QueryEscape(cursor), token, &h); err != nil {
			return nil, err
		}
		for i := range h.Versions {
			var rec merge.Record
			if err := rec.UnmarshalJSON(h.Versions[i].State); err != nil {
				return nil, fmt.Errorf("sim: history of %s/%s: %w", collection, id, err)
			}
			h.Versions[i].state = &rec
			h.Versions[i].State = nil // decoded; the bytes are not needed again
		}
		all = append(all, h.Versions...)
		if !h.HasMore {
			return all, nil
		}
		cursor = h.Cursor
	}
}

type listedConflict struct {
	Collection string `json:"collection"`
	RecordID   string `json:"record_id"`
	Field      string `json:"field"`
	Rule       string `json:"rule"`
	Status     string `json:"status"`
	Values     []struct {
		Node string `json:"node"`
		Dot  uint64 `json:"dot"`
	} `json:"values"`
}

// conflicts reads every conflict the server recorded.
func conflicts(ctx context.Context, base, token string) ([]listedConflict, error) {
	var out []listedConflict
	cursor := ""
	for {
		var page struct {
			Conflicts []listedConflict `json:"conflicts"`
			Cursor    string           `json:"cursor"`
			HasMore   bool             `json:"has_more"`
		}
		if err := getJSON(ctx, base, "/v1/conflicts?limit=500&cursor="+url.QueryEscape(cursor), token, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Conflicts...)
		if !page.HasMore {
			return out, nil
		}
		cursor = page.Cursor
	}
}

func hasWrite(rec *merge.Record, field string, node vv.NodeID, dot uint64) bool {
	f, ok := rec.Field(field)
	if !ok {
		return false
	}
	for _, w := range f.Writes {
		if w.Node() == node && w.Dot == dot {
			return true
		}
	}
	return false
}

// audit runs the acknowledged-set check over the server's records (as a
// reader of everything), the edits the devices made and the answers they
// got.
func audit(ctx context.Context, cfg Config, server map[string]*merge.Record, wrote map[string]written, acks map[string]string, devs []*device) (*Audit, error) {
	a := &Audit{ConflictsByRule: map[string]int{}}
	policies := merge.Standard()
	seen := map[string]int{} // change id -> versions holding it
	keys := make([]string, 0, len(server))
	for k := range server {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	histories := map[string][]version{}
	for _, k := range keys {
		rec := server[k]
		vs, err := history(ctx, cfg.Upstream, cfg.ReaderToken, rec.Collection, rec.ID)
		if err != nil {
			return nil, err
		}
		histories[k] = vs
		a.Versions += len(vs)
		for i, v := range vs {
			seen[v.ChangeID]++
			if v.Node != vv.Server {
				if w, ok := wrote[v.ChangeID]; !ok || w.key != k || w.node != v.Node || w.dot != v.Dot {
					a.Unexpected++
					a.problem("unexpected: version %s of %s (node %s, dot %d) is no device's edit", v.ChangeID, k, v.Node, v.Dot)
				}
			}
			// Every value the version wrote stays in the state, or leaves
			// it only for a later write of the same field.
			for _, f := range v.Changed {
				if f.Field == merge.DeletedField {
					continue
				}
				if !hasWrite(v.state, f.Field, v.Node, v.Dot) {
					a.ValuesLost++
					a.problem("value lost: %s of %s by %s:%d is not in the state it made", f.Field, k, v.Node, v.Dot)
					continue
				}
				for j := i + 1; j < len(vs); j++ {
					if hasWrite(vs[j].state, f.Field, v.Node, v.Dot) {
						continue
					}
					wroteField := false
					for _, g := range vs[j].Changed {
						wroteField = wroteField || g.Field == f.Field
					}
					if !wroteField {
						a.ValuesLost++
						a.problem("value lost: %s of %s by %s:%d left the state at %s, which did not write it", f.Field, k, v.Node, v.Dot, vs[j].ChangeID)
					}
					break
				}
			}
		}
	}
	for id, n := range seen {
		if n > 1 {
			a.Duplicated++
			a.problem("duplicated: change %s is in %d versions", id, n)
		}
	}
	unserved := map[string]bool{}
	for id, status := range acks {
		if w, ok := wrote[id]; ok && (status == string(merge.Applied) || status == string(merge.Merged)) && server[w.key] == nil && !unserved[w.key] {
			unserved[w.key] = true
			a.Unserved++
			a.problem("unserved: %s was accepted but the feed never served it", w.key)
		}
	}
	for id, status := range acks {
		if (status == string(merge.Applied) || status == string(merge.Merged)) && seen[id] == 0 {
			a.Lost++
			a.problem("lost: change %s was answered %s and is in no version", id, status)
		}
	}
	// Every device has read every version in its scope.
	for _, d := range devs {
		for _, k := range keys {
			srv := server[k]
			if srv.Collection != "corridors" && string(srv.Value("unit")) != string(jsonString(d.unit)) {
				continue
			}
			local, err := d.c.Record(srv.Collection, srv.ID)
			if err != nil {
				return nil, err
			}
			for _, v := range histories[k] {
				if local == nil || !local.VV.Covers(v.Node, v.Dot) {
					a.NeverRead++
					a.problem("never read: %s has not seen %s of %s", d.id, v.ChangeID, k)
				}
			}
		}
	}
	// Every disputed field is listed, with its values, and nothing else.
	listed, err := conflicts(ctx, cfg.Upstream, cfg.ReaderToken)
	if err != nil {
		return nil, err
	}
	open := map[string]listedConflict{}
	all := map[string][]listedConflict{}
	for _, c := range listed {
		all[c.Collection+"/"+c.RecordID+"/"+c.Field] = append(all[c.Collection+"/"+c.RecordID+"/"+c.Field], c)
		a.ConflictsByRule[c.Rule]++
		if c.Status == "open" {
			open[c.Collection+"/"+c.RecordID+"/"+c.Field] = c
		}
	}
	for _, k := range keys {
		rec := server[k]
		for _, c := range policies[rec.Collection].Conflicts(rec) {
			lk := k + "/" + c.Field
			l, ok := open[lk]
			delete(open, lk)
			if !ok || len(l.Values) != len(c.Values) {
				a.ConflictsUnlisted++
				a.problem("conflict on %s is not listed as open with its %d values %v (listed: %+v)", lk, len(c.Values), c.Values, all[lk])
				continue
			}
			for i, w := range c.Values {
				if l.Values[i].Node != string(w.Node()) || l.Values[i].Dot != w.Dot {
					a.ConflictsUnlisted++
					a.problem("conflict on %s is listed with other values", lk)
					break
				}
			}
		}
	}
	for lk, l := range open {
		if l.Field == "*" {
			continue // a regressed change kept for review: not a disputed field
		}
		a.ConflictsStale++
		a.problem("conflict on %s is listed open but the field is not disputed", lk)
	}
	return a, nil
}
