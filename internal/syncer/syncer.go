// Package syncer is fieldsync's push and pull service: it decodes and checks
// each change, takes the records' locks, merges through the sync/ engine and
// persists the batch atomically; it serves the change feed with each
// caller's scope and redactions. It knows neither HTTP nor SQL.
package syncer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/sync/hlc"
	"github.com/fieldsync/fieldsync/sync/merge"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// Config holds the service's limits.
type Config struct {
	// MaxVVEntries bounds a change's version vector (default 256).
	MaxVVEntries int
	// CorridorMaxAge is how long a corridor status stays verified when the
	// segment sets no max_age_minutes (default 6 h).
	CorridorMaxAge time.Duration
	// AfterCommit, when set, runs after each push has committed and
	// before its answer is written: a seam for fault injection (a server
	// killed between commit and response) and instrumentation.
	AfterCommit func()
	// Observer, when set, is told each change's outcome, each conflict
	// report and each pull page (internal/metrics implements it).
	Observer Observer
}

// Observer receives the service's measurements.
type Observer interface {
	ObservePush(outcome string)
	ObserveConflict(collection, rule string)
	ObservePull(records int, oldest time.Duration)
}

// Service implements domain.Syncer.
type Service struct {
	store    domain.Store
	clock    *hlc.Clock
	policies merge.Registry
	cfg      Config
	now      func() time.Time
}

// New returns the service. clock is the server's HLC (node vv.Server), which
// also clamps device stamps too far ahead; now is the wall clock for
// timestamps and staleness.
func New(store domain.Store, clock *hlc.Clock, now func() time.Time, cfg Config) *Service {
	if cfg.MaxVVEntries <= 0 {
		cfg.MaxVVEntries = merge.DefaultMaxVVEntries
	}
	if cfg.CorridorMaxAge <= 0 {
		cfg.CorridorMaxAge = 6 * time.Hour
	}
	return &Service{store: store, clock: clock, policies: merge.Standard(), cfg: cfg, now: now}
}

// Policies returns the collection policies the service merges with.
func (s *Service) Policies() merge.Registry { return s.policies }

// view returns rec as id may see it, with its staleness.
func (s *Service) view(id domain.Identity, rec *merge.Record, owner domain.Owner, now time.Time) *domain.RecordView {
	p := s.policies[rec.Collection]
	v := &domain.RecordView{Record: id.View(p, rec, owner)}
	if rec.Collection == domain.Corridors {
		v.Stale = domain.CorridorStale(rec.Value("verified_at"), rec.Value("max_age_minutes"), now, s.cfg.CorridorMaxAge)
	}
	return v
}

// mustDecode reports whether a pulled record must be decoded before it is
// served: to hide fields the caller may not see, or to compute a corridor's
// staleness. Everything else is served as the stored canonical bytes.
func (s *Service) mustDecode(id domain.Identity, r *domain.StoredRecord) bool {
	if r.Collection == domain.Corridors || id.Role == domain.RolePartner {
		return true
	}
	p := s.policies[r.Collection]
	if p == nil {
		return true
	}
	if id.SeesIdentities(r.Owner) {
		return false
	}
	for i := range p.Fields {
		if p.Fields[i].Identifying {
			return true
		}
	}
	return false
}

// item is one change of a push on its way through.
type item struct {
	raw     json.RawMessage
	ch      *merge.Change
	decErr  *merge.DecodeError
	key     domain.Key
	policy  *merge.Policy
	lockKey bool
	refs    []domain.Key // records the change points at (an entry's log, the entry it corrects)
}

// references returns the records an entry points at: the patrol log it
// belongs to and the entry it corrects. They are loaded with the batch so
// a device cannot attach entries to another unit's records.
func references(ch *merge.Change) []domain.Key {
	if ch.Collection != domain.PatrolEntries {
		return nil
	}
	var out []domain.Key
	for _, r := range []struct{ field, collection string }{{"patrol_id", domain.PatrolLogs}, {"corrects", domain.PatrolEntries}} {
		v, ok := ch.Value(r.field)
		if !ok {
			continue
		}
		var id string
		if json.Unmarshal(v, &id) == nil && merge.ValidID(id) {
			out = append(out, domain.Key{Collection: r.collection, ID: id})
		}
	}
	return out
}

// Push merges a batch of changes in one transaction.
func (s *Service) Push(ctx context.Context, id domain.Identity, raws []json.RawMessage) (*domain.PushResponse, error) {
	if !id.Pushes() {
		return nil, domain.Errorf(domain.CodeForbidden, "only devices (and partners allowed to post corridor observations) push changes; %s tokens use their own routes", id.Role)
	}
	// A device writes as its own node; the server node is never a device,
	// or a device could author sign-offs and resolutions.
	if !vv.ValidNodeID(id.Subject) || vv.NodeID(id.Subject) == vv.Server {
		return nil, domain.Errorf(domain.CodeForbidden, "this device id cannot write changes")
	}
	items := make([]item, len(raws))
	var keys []domain.Key
	var ids []string
	for i, raw := range raws {
		it := item{raw: raw}
		ch, err := merge.DecodeChange(raw)
		if err != nil {
			var de *merge.DecodeError
			if !errors.As(err, &de) || de.ChangeID == "" {
				return nil, domain.Errorf(domain.CodeInvalidChangeID, "change %d has no valid change_id; nothing in this push was applied", i)
			}
			it.decErr = de
			ids = append(ids, de.ChangeID)
			items[i] = it
			continue
		}
		it.ch = ch
		it.key = domain.Key{Collection: ch.Collection, ID: ch.ID}
		it.policy = s.policies[ch.Collection]
		it.lockKey = it.policy != nil && merge.ValidID(ch.ID)
		if it.lockKey {
			keys = append(keys, it.key)
			it.refs = references(ch)
			keys = append(keys, it.refs...)
		}
		ids = append(ids, ch.ChangeID)
		items[i] = it
	}

	var resp *domain.PushResponse
	var conflicts []domain.ConflictReport
	err := s.store.Push(ctx, func(tx domain.PushTx) error {
		b := newBatch(s, id, tx)
		if err := b.load(ctx, keys, ids); err != nil {
			return err
		}
		results := make([]domain.PushResult, len(items))
		for i := range items {
			r, err := b.apply(ctx, &items[i])
			if err != nil {
				return err
			}
			results[i] = r
		}
		w := b.writes()
		w.Audit = &domain.AuditEvent{Kind: "push", Actor: id.Subject, At: b.now}
		conflicts = w.Conflicts
		if err := tx.Write(ctx, w); err != nil {
			return err
		}
		resp = &domain.PushResponse{Results: results}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if s.cfg.AfterCommit != nil {
		s.cfg.AfterCommit()
	}
	if o := s.cfg.Observer; o != nil {
		for i := range resp.Results {
			o.ObservePush(string(resp.Results[i].Status))
		}
		for _, c := range conflicts {
			o.ObserveConflict(c.Collection, string(c.Rule))
		}
	}
	resp.ServerHLC = s.clock.Now()
	return resp, nil
}

// batch is the state of one push transaction: the records as the batch has
// left them so far, and the rows to write.
type batch struct {
	s       *Service
	id      domain.Identity
	tx      domain.PushTx
	now     time.Time
	current map[domain.Key]domain.StoredRecord
	touched []domain.Key
	seen    map[string]domain.SeenChange
	w       domain.PushWrites
}

func newBatch(s *Service, id domain.Identity, tx domain.PushTx) *batch {
	return &batch{s: s, id: id, tx: tx, now: s.now().UTC(), seen: map[string]domain.SeenChange{}}
}

func (b *batch) load(ctx context.Context, keys []domain.Key, ids []string) error {
	// Locks first, then idempotency: a concurrent retry of the same batch
	// waits on the locks and then sees what the first attempt committed.
	cur, err := b.tx.Lock(ctx, keys)
	if err != nil {
		return err
	}
	b.current = cur
	seen, err := b.tx.Seen(ctx, b.id.Subject, ids)
	if err != nil {
		return err
	}
	b.seen = seen
	return nil
}

func (b *batch) result(ch string, rec *merge.Record, owner domain.Owner, status merge.Outcome) domain.PushResult {
	r := domain.PushResult{ChangeID: ch, Status: status}
	if rec != nil {
		r.Record = b.s.view(b.id, rec, owner, b.now)
	}
	return r
}

func (b *batch) reject(it *item, changeID string, key domain.Key, owner domain.Owner, code, msg string) domain.PushResult {
	b.seen[changeID] = domain.SeenChange{Subject: b.id.Subject, ChangeID: changeID, Key: key, Status: merge.Rejected, Code: code, Message: msg, SeenAt: b.now}
	b.w.Seen = append(b.w.Seen, b.seen[changeID])
	b.w.Rejections = append(b.w.Rejections, domain.Rejection{
		Subject: b.id.Subject, ChangeID: changeID, Key: key, Owner: owner, Code: code, Message: msg,
		Body: compact(it.raw), ReceivedAt: b.now,
	})
	return domain.PushResult{ChangeID: changeID, Status: merge.Rejected, Code: code, Message: msg}
}

func compact(raw []byte) []byte {
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		return raw
	}
	return buf.Bytes()
}

// apply handles one change and returns its result.
func (b *batch) apply(ctx context.Context, it *item) (domain.PushResult, error) {
	if it.decErr != nil {
		if prev, ok := b.seen[it.decErr.ChangeID]; ok {
			return b.replay(prev), nil
		}
		return b.reject(it, it.decErr.ChangeID, domain.Key{}, domain.Owner{}, it.decErr.Code, it.decErr.Message), nil
	}
	ch := it.ch
	if prev, ok := b.seen[ch.ChangeID]; ok {
		return b.replay(prev), nil
	}
	stored, exists := b.current[it.key]
	owner := stored.Owner
	if !exists {
		owner = b.ownerOf(ch)
	}
	if it.policy == nil {
		return b.reject(it, ch.ChangeID, it.key, owner, merge.CodeInvalidChange, fmt.Sprintf("unknown collection %q", ch.Collection)), nil
	}
	if !it.lockKey {
		return b.reject(it, ch.ChangeID, it.key, owner, merge.CodeInvalidChange, "record id must be 1 to 128 characters of [A-Za-z0-9._:-]"), nil
	}
	// Scope: the same answer whether or not the record exists, and no record
	// in the result.
	if !b.id.CanWrite(ch.Collection, owner) || b.movesUnit(ch) || b.pointsOutOfScope(it) || b.writesInternal(it) {
		return b.reject(it, ch.ChangeID, it.key, owner, domain.CodeOutOfScope, "the record is outside this device's scope"), nil
	}
	if ch.Node() != b.id.Node() {
		return b.reject(it, ch.ChangeID, it.key, owner, merge.CodeInvalidHLC, "the hlc's node must be the writer's own id (the token's subject)"), nil
	}
	var rec *merge.Record
	if exists {
		rec = stored.Record
	}
	// A device learns other nodes' counters only from the server: a vector
	// claiming more than the server holds would mark writes as seen that
	// the device never saw, and silently supersede them.
	for _, e := range ch.VV {
		if e.Node != ch.Node() && (rec == nil || rec.VV.Get(e.Node) < e.Counter) {
			return b.reject(it, ch.ChangeID, it.key, owner, merge.CodeInvalidVV,
				fmt.Sprintf("vv claims version %d of node %s, which the server has not issued", e.Counter, e.Node)), nil
		}
	}

	stamp, clamped := b.s.clock.Receive(ch.HLC)
	applied := *ch
	applied.HLC = stamp

	var prior *merge.Change
	if merge.Covered(rec, &applied) {
		p, err := b.prior(ctx, it.key, applied.Node(), applied.Dot())
		if err != nil {
			return domain.PushResult{}, err
		}
		prior = p
	}
	res := it.policy.Apply(rec, &applied, prior, merge.Options{MaxVVEntries: b.s.cfg.MaxVVEntries})
	switch res.Outcome {
	case merge.Rejected:
		r := b.reject(it, ch.ChangeID, it.key, owner, res.Code, res.Message)
		for _, c := range res.Conflicts {
			b.w.Conflicts = append(b.w.Conflicts, domain.ConflictReport{Conflict: c, Owner: owner, ChangeID: ch.ChangeID, At: b.now})
		}
		r.ClockClamped = clamped
		return r, nil
	case merge.Stale:
		b.seen[ch.ChangeID] = domain.SeenChange{Subject: b.id.Subject, ChangeID: ch.ChangeID, Key: it.key, Status: merge.Stale, Clamped: clamped, SeenAt: b.now}
		b.w.Seen = append(b.w.Seen, b.seen[ch.ChangeID])
		r := b.result(ch.ChangeID, rec, owner, merge.Stale)
		r.ClockClamped = clamped
		return r, nil
	}
	if !exists {
		b.current[it.key] = domain.StoredRecord{Record: res.Record, Owner: owner}
		b.touched = append(b.touched, it.key)
	} else {
		if !b.isTouched(it.key) {
			b.touched = append(b.touched, it.key)
		}
		b.current[it.key] = domain.StoredRecord{Record: res.Record, Owner: owner, Cursor: stored.Cursor}
	}
	b.w.Versions = append(b.w.Versions, domain.Version{
		Key: it.key, ChangeID: ch.ChangeID, Subject: b.id.Subject, Node: applied.Node(), Dot: applied.Dot(),
		HLC: stamp, Clamped: clamped, Outcome: res.Outcome, Change: res.Change, Record: res.Record,
		Conflicts: len(res.Conflicts), ReceivedAt: b.now,
	})
	// A change may close a field's conflict and open a new one on it
	// (it saw the old values, not a newer one): settle, then report.
	for _, f := range res.Settled {
		b.settle(it.key, f, applied.Node())
	}
	for _, c := range res.Conflicts {
		b.w.Conflicts = append(b.w.Conflicts, domain.ConflictReport{Conflict: c, Owner: owner, ChangeID: ch.ChangeID, At: b.now})
	}
	b.seen[ch.ChangeID] = domain.SeenChange{Subject: b.id.Subject, ChangeID: ch.ChangeID, Key: it.key, Status: res.Outcome, Clamped: clamped, SeenAt: b.now}
	b.w.Seen = append(b.w.Seen, b.seen[ch.ChangeID])
	r := b.result(ch.ChangeID, res.Record, owner, res.Outcome)
	r.ClockClamped = clamped
	return r, nil
}

// prior finds what node wrote at dot: in this batch first, then in history.
func (b *batch) prior(ctx context.Context, key domain.Key, node vv.NodeID, dot uint64) (*merge.Change, error) {
	for i := len(b.w.Versions) - 1; i >= 0; i-- {
		v := &b.w.Versions[i]
		if v.Key == key && v.Node == node && v.Dot == dot {
			return v.Change, nil
		}
	}
	return b.tx.Prior(ctx, key, node, dot)
}

// settle closes the open conflict of a field. A conflict reported earlier
// in this batch for the field is superseded with it: the store closes the
// conflicts open before the batch first, then records the batch's reports,
// so a report staged before the settlement must not be written after it.
func (b *batch) settle(key domain.Key, field string, node vv.NodeID) {
	kept := b.w.Conflicts[:0]
	for _, c := range b.w.Conflicts {
		if c.Collection != key.Collection || c.RecordID != key.ID || c.Field != field {
			kept = append(kept, c)
		}
	}
	b.w.Conflicts = kept
	b.w.Settlements = append(b.w.Settlements, domain.Settlement{Key: key, Field: field, Node: node, At: b.now})
}

func (b *batch) isTouched(k domain.Key) bool {
	for _, t := range b.touched {
		if t == k {
			return true
		}
	}
	return false
}

// replay answers a change id seen before: a change that was delivered gets
// duplicate with the current record; a rejected one gets its rejection again.
// Nothing is written.
func (b *batch) replay(prev domain.SeenChange) domain.PushResult {
	if prev.Status == merge.Rejected {
		return domain.PushResult{ChangeID: prev.ChangeID, Status: merge.Rejected, Code: prev.Code, Message: prev.Message}
	}
	cur, ok := b.current[prev.Key]
	if !ok || !b.id.CanRead(prev.Key.Collection, cur.Owner) {
		return domain.PushResult{ChangeID: prev.ChangeID, Status: merge.Duplicate}
	}
	return b.result(prev.ChangeID, cur.Record, cur.Owner, merge.Duplicate)
}

// ownerOf is the owner a change would give the record it creates: the unit
// it names (patrol records) and the device's contingent.
func (b *batch) ownerOf(ch *merge.Change) domain.Owner {
	if ch.Collection == domain.Corridors {
		return domain.Owner{}
	}
	unit := b.id.Unit
	if v, ok := ch.Value("unit"); ok {
		var u string
		if json.Unmarshal(v, &u) == nil {
			unit = u
		}
	}
	return domain.Owner{Unit: unit, Contingent: b.id.Contingent}
}

// writesInternal reports whether a partner's observation writes a field
// partners may not even read (corridor notes, reporter).
func (b *batch) writesInternal(it *item) bool {
	if b.id.Role != domain.RolePartner {
		return false
	}
	for _, f := range it.ch.Fields {
		if spec, ok := it.policy.Field(f.Name); ok && spec.Internal {
			return true
		}
	}
	return false
}

// pointsOutOfScope reports whether a change points at a record that exists
// and is not the device's to write: an entry on another unit's patrol log,
// or a correction of another unit's entry. A record the server has not
// received yet cannot be judged and is let through (the device may have
// created it offline; its own push will be scoped when it arrives).
func (b *batch) pointsOutOfScope(it *item) bool {
	for _, ref := range it.refs {
		if st, ok := b.current[ref]; ok && !b.id.CanWrite(ref.Collection, st.Owner) {
			return true
		}
	}
	return false
}

// movesUnit reports whether a change writes a unit other than the device's:
// a device cannot hand a patrol record to another unit.
func (b *batch) movesUnit(ch *merge.Change) bool {
	if ch.Collection == domain.Corridors {
		return false
	}
	v, ok := ch.Value("unit")
	if !ok {
		return false
	}
	var u string
	return json.Unmarshal(v, &u) != nil || u != b.id.Unit
}

func (b *batch) writes() domain.PushWrites {
	w := b.w
	for _, k := range b.touched {
		w.Records = append(w.Records, b.current[k])
	}
	return w
}

// Pull returns one page of the change feed as id may see it.
func (s *Service) Pull(ctx context.Context, id domain.Identity, req domain.PullRequest) (*domain.PullResponse, error) {
	f := domain.PullFilter{Collections: req.Collections}
	switch id.Role {
	case domain.RoleDevice:
		f.Units = []string{id.Unit}
	case domain.RoleSupervisor:
		f.Contingent = id.Contingent
	case domain.RolePartner:
		f.CorridorsOnly = true
	case domain.RoleAdmin:
	default:
		return nil, domain.Errorf(domain.CodeForbidden, "role %q may not pull", id.Role)
	}
	recs, more, err := s.store.Pull(ctx, req.Cursor, req.Limit, f)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	if o := s.cfg.Observer; o != nil {
		var oldest time.Duration
		for i := range recs {
			if !recs[i].UpdatedAt.IsZero() {
				oldest = max(oldest, now.Sub(recs[i].UpdatedAt))
			}
		}
		o.ObservePull(len(recs), oldest)
	}
	resp := &domain.PullResponse{Cursor: req.Cursor, HasMore: more, Records: make([]domain.RecordView, 0, len(recs))}
	for i := range recs {
		r := &recs[i]
		resp.Cursor = r.Cursor
		if !id.CanRead(r.Collection, r.Owner) {
			continue // the filter already excludes these; never serve one if it did not
		}
		if !s.mustDecode(id, r) {
			resp.Records = append(resp.Records, domain.RecordView{Raw: r.Raw})
			continue
		}
		rec, err := r.Decode()
		if err != nil {
			return nil, fmt.Errorf("syncer: pull %s/%s: %w", r.Collection, r.ID, err)
		}
		resp.Records = append(resp.Records, *s.view(id, rec, r.Owner, now))
	}
	resp.ServerHLC = s.clock.Now()
	return resp, nil
}

// Hold keeps what a revoked device sent as rejections with code
// device_revoked, for supervisors to review; nothing is merged. Changes
// without a usable change_id are dropped (they cannot be keyed).
func (s *Service) Hold(ctx context.Context, id domain.Identity, raws []json.RawMessage) error {
	now := s.now().UTC()
	var w domain.PushWrites
	for _, raw := range raws {
		ch, err := merge.DecodeChange(raw)
		var key domain.Key
		changeID := ""
		switch {
		case err == nil:
			changeID, key = ch.ChangeID, domain.Key{Collection: ch.Collection, ID: ch.ID}
		default:
			var de *merge.DecodeError
			if errors.As(err, &de) {
				changeID = de.ChangeID
			}
		}
		if changeID == "" {
			continue
		}
		w.Rejections = append(w.Rejections, domain.Rejection{
			Subject: id.Subject, ChangeID: changeID, Key: key, Owner: domain.Owner{Unit: id.Unit, Contingent: id.Contingent},
			Code: domain.CodeDeviceRevoked, Message: "sent by a revoked device: held for review, not merged",
			Body: compact(raw), ReceivedAt: now,
		})
	}
	if len(w.Rejections) == 0 {
		return nil
	}
	w.Audit = &domain.AuditEvent{Kind: "hold", Actor: id.Subject, At: now}
	return s.store.Push(ctx, func(tx domain.PushTx) error { return tx.Write(ctx, w) })
}
