// Package review is what supervisors read: the merged patrol logs of their
// contingent, every record's version history with what each merge did, the
// conflict queue, the dead-letter list and the corridor access report. It
// reads through domain.ReviewStore and shows each record as the caller may
// see it (identifying fields only to the authoring unit's supervisors). The
// writes of review (resolutions, sign-offs) are server-authored versions and
// live with the other writes in internal/syncer.
package review

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/sync/merge"
)

// Service serves the review reads.
type Service struct {
	store          domain.ReviewStore
	records        func(ctx context.Context, key domain.Key) (*domain.StoredRecord, error)
	policies       merge.Registry
	now            func() time.Time
	corridorMaxAge time.Duration
}

// New returns the service. get reads one record; corridorMaxAge is the
// default age past which a corridor status is unverified (6 h when 0).
func New(store domain.ReviewStore, get func(ctx context.Context, key domain.Key) (*domain.StoredRecord, error), now func() time.Time, corridorMaxAge time.Duration) *Service {
	if corridorMaxAge <= 0 {
		corridorMaxAge = 6 * time.Hour
	}
	return &Service{store: store, records: get, policies: merge.Standard(), now: now, corridorMaxAge: corridorMaxAge}
}

// reviewer reports whether id reads review data at all: supervisors (of
// their contingent, or of all) and administrators.
func reviewer(id domain.Identity) error {
	if id.Role == domain.RoleSupervisor || id.Role == domain.RoleAdmin {
		return nil
	}
	return domain.Errorf(domain.CodeForbidden, "only supervisors and administrators read the review routes")
}

// scope is the contingent a reviewer's reads are limited to ("" for all).
func scope(id domain.Identity) string {
	if id.Role == domain.RoleAdmin {
		return ""
	}
	return id.Contingent
}

// VersionView is one version of a record's history.
type VersionView struct {
	domain.Version
	// Changed lists the fields the change wrote, with the rule that merges
	// each; Values holds what it wrote (hidden fields removed).
	Changed []FieldRule
	Values  []merge.FieldValue
	// Opened lists the fields in conflict after this version that involve
	// its write.
	Opened []FieldRule
	// State is the record after the version, as the caller may see it.
	State *merge.Record
}

// FieldRule names a field and the rule that merges it.
type FieldRule struct {
	Field string
	Rule  merge.Rule
}

// History returns up to limit versions of a record after the version at
// seq after, oldest first, and whether more follow.
func (s *Service) History(ctx context.Context, id domain.Identity, key domain.Key, after int64, limit int) ([]VersionView, bool, error) {
	vs, err := s.history(ctx, id, key, after, limit+1)
	if err != nil {
		return nil, false, err
	}
	more := len(vs) > limit
	if more {
		vs = vs[:limit]
	}
	return vs, more, nil
}

func (s *Service) history(ctx context.Context, id domain.Identity, key domain.Key, after int64, limit int) ([]VersionView, error) {
	if err := reviewer(id); err != nil {
		return nil, err
	}
	p := s.policies[key.Collection]
	notFound := domain.Errorf(domain.CodeNotFound, "no record %s in your scope", key)
	if p == nil || !merge.ValidID(key.ID) {
		return nil, notFound
	}
	cur, err := s.records(ctx, key)
	if err != nil {
		return nil, err
	}
	if cur == nil || !id.CanRead(key.Collection, cur.Owner) {
		return nil, notFound
	}
	versions, err := s.store.HistoryPage(ctx, key, after, limit)
	if err != nil {
		return nil, err
	}
	hidden := func(name string) bool {
		spec, ok := p.Field(name)
		return ok && (spec.Identifying && !id.SeesIdentities(cur.Owner) || spec.Internal && id.Role == domain.RolePartner)
	}
	out := make([]VersionView, len(versions))
	for i, v := range versions {
		vw := VersionView{Version: v, State: id.View(p, v.Record, cur.Owner)}
		vw.Version.Record, vw.Version.Change = nil, nil
		for _, f := range v.Change.Fields {
			vw.Changed = append(vw.Changed, FieldRule{Field: f.Name, Rule: rule(p, f.Name)})
			if !hidden(f.Name) {
				vw.Values = append(vw.Values, f)
			}
		}
		if v.Change.Deleted {
			vw.Changed = append(vw.Changed, FieldRule{Field: merge.DeletedField, Rule: rule(p, merge.DeletedField)})
			vw.Values = append(vw.Values, merge.FieldValue{Name: merge.DeletedField, Value: []byte("true")})
		}
		for _, c := range p.Conflicts(v.Record) {
			for _, w := range c.Values {
				if w.Node() == v.Node && w.Dot == v.Dot {
					vw.Opened = append(vw.Opened, FieldRule{Field: c.Field, Rule: c.Rule})
					break
				}
			}
		}
		out[i] = vw
	}
	return out, nil
}

// rule is the rule that merges a field of p.
func rule(p *merge.Policy, name string) merge.Rule {
	if name == merge.DeletedField {
		if p.DeviceDelete {
			return merge.RuleUpdateWins
		}
		return merge.RuleFirstWrite
	}
	if spec, ok := p.Field(name); ok {
		return spec.Rule
	}
	return ""
}

// ConflictQuery filters the conflict queue.
type ConflictQuery struct {
	Status, Unit, Collection, Rule string
	After                          string
	Limit                          int
}

// Conflicts returns a page of the conflict queue in the caller's scope, the
// values of fields the caller may not see replaced by null.
func (s *Service) Conflicts(ctx context.Context, id domain.Identity, q ConflictQuery) ([]domain.StoredConflict, bool, error) {
	if err := reviewer(id); err != nil {
		return nil, false, err
	}
	cs, err := s.store.Conflicts(ctx, domain.ConflictFilter{
		Status: q.Status, Unit: q.Unit, Contingent: scope(id), Collection: q.Collection, Rule: q.Rule,
		After: q.After, Limit: q.Limit + 1,
	})
	if err != nil {
		return nil, false, err
	}
	more := len(cs) > q.Limit
	if more {
		cs = cs[:q.Limit]
	}
	for i := range cs {
		s.redact(id, &cs[i])
	}
	return cs, more, nil
}

// Conflict returns one conflict in the caller's scope.
func (s *Service) Conflict(ctx context.Context, id domain.Identity, conflictID string) (*domain.StoredConflict, error) {
	if err := reviewer(id); err != nil {
		return nil, err
	}
	c, err := s.store.Conflict(ctx, conflictID)
	if err != nil {
		return nil, err
	}
	if c == nil || !id.CanRead(c.Key.Collection, c.Owner) {
		return nil, domain.Errorf(domain.CodeNotFound, "no conflict %q in your scope", conflictID)
	}
	s.redact(id, c)
	return c, nil
}

// redact hides the values of identifying fields from callers who may not
// see them (a conflict on a community contact's name shows that there is
// one, not the names).
func (s *Service) redact(id domain.Identity, c *domain.StoredConflict) {
	p := s.policies[c.Key.Collection]
	if p == nil || id.SeesIdentities(c.Owner) {
		return
	}
	spec, ok := p.Field(c.Field)
	whole := c.Field == "*" && hasIdentifying(p)
	if !whole && (!ok || !spec.Identifying) {
		return
	}
	vals := make([]domain.ConflictValue, len(c.Values))
	for i, v := range c.Values {
		v.Value = json.RawMessage("null")
		vals[i] = v
	}
	c.Values = vals
}

func hasIdentifying(p *merge.Policy) bool {
	for i := range p.Fields {
		if p.Fields[i].Identifying {
			return true
		}
	}
	return false
}

// RejectionQuery filters the dead-letter list.
type RejectionQuery struct {
	Unit, Device string
	After        int64
	Limit        int
}

// Rejections returns a page of the dead-letter list in the caller's scope.
// The bodies of changes to records with identifying fields are withheld
// from callers who may not see them.
func (s *Service) Rejections(ctx context.Context, id domain.Identity, q RejectionQuery) ([]domain.StoredRejection, bool, error) {
	if err := reviewer(id); err != nil {
		return nil, false, err
	}
	rs, err := s.store.Rejections(ctx, domain.RejectionFilter{Unit: q.Unit, Contingent: scope(id), Subject: q.Device, After: q.After, Limit: q.Limit + 1})
	if err != nil {
		return nil, false, err
	}
	more := len(rs) > q.Limit
	if more {
		rs = rs[:q.Limit]
	}
	for i := range rs {
		p := s.policies[rs[i].Key.Collection]
		if (p == nil || hasIdentifying(p)) && !id.SeesIdentities(rs[i].Owner) {
			rs[i].Body = nil
		}
	}
	return rs, more, nil
}

// LogQuery filters the patrol log list. From and To are days (UTC, To
// inclusive); a log's day is that of started_at, else planned_start.
type LogQuery struct {
	Unit         string
	From, To     time.Time // zero: open
	Status       string
	SignedOff    *bool
	HasConflicts *bool
	After        string
	Limit        int
}

// LogSummary is one patrol log of the list.
type LogSummary struct {
	Record        *merge.Record
	Owner         domain.Owner
	Day           string // YYYY-MM-DD, "" when the log has no start
	Status        string
	SignedOff     bool
	Entries       int
	OpenConflicts int
}

// PatrolLogs returns a page of the patrol logs in the caller's scope.
func (s *Service) PatrolLogs(ctx context.Context, id domain.Identity, q LogQuery) ([]LogSummary, string, bool, error) {
	if err := reviewer(id); err != nil {
		return nil, "", false, err
	}
	p := s.policies[domain.PatrolLogs]
	var out []LogSummary
	after := q.After
	const chunk = 500
	for {
		recs, err := s.store.Records(ctx, domain.PatrolLogs, q.Unit, scope(id), after, chunk)
		if err != nil {
			return nil, "", false, err
		}
		var page []LogSummary
		for i := range recs {
			rec, err := recs[i].Decode()
			if err != nil {
				return nil, "", false, err
			}
			if rec.Deleted() {
				continue
			}
			sum := LogSummary{Record: id.View(p, rec, recs[i].Owner), Owner: recs[i].Owner, Status: str(rec.Value("status")),
				SignedOff: bytes.Equal(rec.Value("signed_off"), []byte("true")), Day: day(rec)}
			if q.matches(sum) {
				page = append(page, sum)
			}
		}
		if err := s.count(ctx, page); err != nil {
			return nil, "", false, err
		}
		for _, sum := range page {
			if q.HasConflicts != nil && *q.HasConflicts != (sum.OpenConflicts > 0) {
				continue
			}
			out = append(out, sum)
			if len(out) == q.Limit {
				// More may follow; the next page starts after this log.
				return out, sum.Record.ID, true, nil
			}
		}
		if len(recs) < chunk {
			return out, "", false, nil
		}
		after = recs[len(recs)-1].ID
	}
}

// count fills the entry and open-conflict counts of a page of logs.
func (s *Service) count(ctx context.Context, page []LogSummary) error {
	if len(page) == 0 {
		return nil
	}
	ids := make([]string, len(page))
	for i := range page {
		ids[i] = page[i].Record.ID
	}
	entries, err := s.store.EntryCounts(ctx, ids)
	if err != nil {
		return err
	}
	conflicts, err := s.store.OpenConflictCounts(ctx, domain.PatrolLogs, ids)
	if err != nil {
		return err
	}
	for i := range page {
		page[i].Entries, page[i].OpenConflicts = entries[ids[i]], conflicts[ids[i]]
	}
	return nil
}

// PatrolLog returns one patrol log with its entries (oldest id first), as
// the caller may see them.
func (s *Service) PatrolLog(ctx context.Context, id domain.Identity, logID string) (*LogSummary, []*merge.Record, error) {
	if err := reviewer(id); err != nil {
		return nil, nil, err
	}
	notFound := domain.Errorf(domain.CodeNotFound, "no patrol log %q in your scope", logID)
	if !merge.ValidID(logID) {
		return nil, nil, notFound
	}
	cur, err := s.records(ctx, domain.Key{Collection: domain.PatrolLogs, ID: logID})
	if err != nil {
		return nil, nil, err
	}
	if cur == nil || !id.CanRead(domain.PatrolLogs, cur.Owner) {
		return nil, nil, notFound
	}
	rec, err := cur.Decode()
	if err != nil {
		return nil, nil, err
	}
	sum := LogSummary{Record: id.View(s.policies[domain.PatrolLogs], rec, cur.Owner), Owner: cur.Owner, Status: str(rec.Value("status")),
		SignedOff: bytes.Equal(rec.Value("signed_off"), []byte("true")), Day: day(rec)}
	page := []LogSummary{sum}
	if err := s.count(ctx, page); err != nil {
		return nil, nil, err
	}
	stored, err := s.store.EntriesOf(ctx, logID)
	if err != nil {
		return nil, nil, err
	}
	p := s.policies[domain.PatrolEntries]
	var entries []*merge.Record
	for i := range stored {
		if !id.CanRead(domain.PatrolEntries, stored[i].Owner) {
			continue
		}
		e, err := stored[i].Decode()
		if err != nil {
			return nil, nil, err
		}
		entries = append(entries, id.View(p, e, stored[i].Owner))
	}
	return &page[0], entries, nil
}

func (q LogQuery) matches(s LogSummary) bool {
	if q.Status != "" && s.Status != q.Status {
		return false
	}
	if q.SignedOff != nil && *q.SignedOff != s.SignedOff {
		return false
	}
	if !q.From.IsZero() || !q.To.IsZero() {
		if s.Day == "" {
			return false
		}
		if !q.From.IsZero() && s.Day < q.From.Format(time.DateOnly) {
			return false
		}
		if !q.To.IsZero() && s.Day > q.To.Format(time.DateOnly) {
			return false
		}
	}
	return true
}

func str(v []byte) string {
	var s string
	if json.Unmarshal(v, &s) != nil {
		return ""
	}
	return s
}

// day is the UTC day a patrol log belongs to.
func day(rec *merge.Record) string {
	for _, f := range []string{"started_at", "planned_start"} {
		if t, err := time.Parse(time.RFC3339Nano, str(rec.Value(f))); err == nil {
			return t.UTC().Format(time.DateOnly)
		}
	}
	return ""
}
