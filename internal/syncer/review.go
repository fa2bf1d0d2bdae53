package syncer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/sync/merge"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// Resolution choices (POST /v1/conflicts/{id}/resolve).
const (
	ChoiceKeep  = "keep"  // keep the merged (kept) value
	ChoicePick  = "pick"  // one of the competing values, by index
	ChoiceValue = "value" // a new value
)

// ResolveRequest is a supervisor's decision on a conflict.
type ResolveRequest struct {
	Choice string
	Pick   int             // index into the conflict's values, for ChoicePick
	Value  json.RawMessage // for ChoiceValue
	Reason string
}

// MaxReason bounds a resolution's reason.
const MaxReason = 2000

// canReview reports whether id may review (and act on) records of owner.
func canReview(id domain.Identity, collection string, owner domain.Owner) bool {
	if id.Role != domain.RoleSupervisor {
		return false
	}
	return id.CanRead(collection, owner)
}

// Resolve closes a conflict as a supervisor decided: keeping the merged
// value, picking a competing one or giving a new one. Except for a bare
// acknowledgement (conflicts whose rule lets no server write change the
// outcome: immutable entries, regressed changes), the decision is written as
// a server-authored version (node srv) whose vector covers every value of
// the field, so it supersedes them on every replica that pulls it. It
// returns the closed conflict and the record after it.
func (s *Service) Resolve(ctx context.Context, id domain.Identity, conflictID string, req ResolveRequest) (*domain.StoredConflict, *domain.RecordView, error) {
	if id.Role != domain.RoleSupervisor {
		return nil, nil, domain.Errorf(domain.CodeForbidden, "only supervisors resolve conflicts")
	}
	if len(req.Reason) > MaxReason {
		return nil, nil, domain.Errorf(domain.CodeInvalidBody, "reason is longer than %d bytes", MaxReason)
	}
	if strings.TrimSpace(req.Reason) == "" {
		return nil, nil, domain.Errorf(domain.CodeInvalidBody, "a resolution needs a reason")
	}
	switch req.Choice {
	case ChoiceKeep, ChoicePick, ChoiceValue:
	default:
		return nil, nil, domain.Errorf(domain.CodeInvalidBody, "choice must be keep, pick or value")
	}
	rs, ok := s.store.(domain.ReviewStore)
	if !ok {
		return nil, nil, fmt.Errorf("syncer: the store has no review reads")
	}
	c, err := rs.Conflict(ctx, conflictID)
	if err != nil {
		return nil, nil, err
	}
	notFound := domain.Errorf(domain.CodeNotFound, "no conflict %q in your scope", conflictID)
	if c == nil || !canReview(id, c.Key.Collection, c.Owner) {
		return nil, nil, notFound
	}
	var outC *domain.StoredConflict
	var outV *domain.RecordView
	err = s.store.Push(ctx, func(tx domain.PushTx) error {
		b := newBatch(s, id, tx)
		if err := b.load(ctx, []domain.Key{c.Key}, nil); err != nil {
			return err
		}
		cur, err := tx.Conflict(ctx, conflictID)
		if err != nil {
			return err
		}
		if cur == nil {
			return notFound
		}
		stored, exists := b.current[c.Key]
		if cur.Status != "open" {
			if cur.ResolvedBy == id.Subject && cur.Resolution == resolutionName(req.Choice) {
				// The same decision again (a retry after a lost answer).
				outC = cur
				if exists {
					outV = s.view(id, stored.Record, stored.Owner, b.now)
				}
				return nil
			}
			return domain.Errorf(domain.CodeConflictClosed, "the conflict was closed (%s by %s)", cur.Resolution, cur.ResolvedBy)
		}
		p := s.policies[c.Key.Collection]
		// Entries are immutable (no server write changes their body) and a
		// regressed change ("*") was never merged: both can only be
		// acknowledged.
		writable := exists && p != nil && cur.Field != "*" && c.Key.Collection != domain.PatrolEntries
		choice := resolutionName(req.Choice)
		if !writable {
			if req.Choice != ChoiceKeep {
				return domain.Errorf(domain.CodeNotResolvable,
					"this conflict (rule %s) cannot take another value: entries are immutable (write a correction entry) and regressed changes are kept as sent; resolve it with keep", cur.Rule)
			}
			choice = "acknowledged"
		} else {
			var value []byte
			switch req.Choice {
			case ChoiceKeep:
				if cur.Kept < 0 || cur.Kept >= len(cur.Values) {
					return domain.Errorf(domain.CodeNotResolvable, "no value is kept in this conflict; pick one or give a new one")
				}
				value = cur.Values[cur.Kept].Value
			case ChoicePick:
				if req.Pick < 0 || req.Pick >= len(cur.Values) {
					return domain.Errorf(domain.CodeInvalidBody, "pick must index the conflict's values (0 to %d)", len(cur.Values)-1)
				}
				value = cur.Values[req.Pick].Value
			case ChoiceValue:
				if len(req.Value) == 0 {
					return domain.Errorf(domain.CodeInvalidBody, "choice value needs a value")
				}
				value = req.Value
			}
			var fields []merge.FieldValue
			deleted := false
			if cur.Field == merge.DeletedField {
				if err := json.Unmarshal(value, &deleted); err != nil {
					return domain.Errorf(domain.CodeInvalidBody, "the value of _deleted is true or false")
				}
			} else {
				var compact bytes.Buffer
				if err := json.Compact(&compact, value); err != nil {
					return domain.Errorf(domain.CodeInvalidBody, "the value is not JSON")
				}
				fields = []merge.FieldValue{{Name: cur.Field, Value: compact.Bytes()}}
			}
			ch, err := merge.ServerChange(stored.Record, uuid.NewString(), s.clock.Now(), fields)
			if err != nil {
				return err
			}
			ch.Deleted = deleted
			if err := b.serverWrite(c.Key, ch); err != nil {
				return err
			}
		}
		b.w.Resolutions = append(b.w.Resolutions, domain.Resolution{ConflictID: conflictID, By: id.Subject, Choice: choice, Reason: req.Reason, At: b.now})
		w := b.writes()
		w.Audit = &domain.AuditEvent{Kind: "resolve", Actor: id.Subject, Subject: conflictID, At: b.now,
			Extra: map[string]any{"record": c.Key.String(), "field": cur.Field, "resolution": choice}}
		if err := tx.Write(ctx, w); err != nil {
			return err
		}
		done := *cur
		at := b.now
		done.Status, done.Resolution, done.ResolvedBy, done.Reason, done.ResolvedAt, done.UpdatedAt = "resolved", choice, id.Subject, req.Reason, &at, at
		outC = &done
		if st, ok := b.current[c.Key]; ok && st.Record != nil {
			outV = s.view(id, st.Record, st.Owner, b.now)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return outC, outV, nil
}

func resolutionName(choice string) string {
	switch choice {
	case ChoiceKeep:
		return "kept"
	case ChoicePick:
		return "picked"
	case ChoiceValue:
		return "new_value"
	}
	return choice
}

// serverWrite applies a server-authored change in the batch and stages its
// version, conflicts and settlements.
func (b *batch) serverWrite(key domain.Key, ch *merge.Change) error {
	stored := b.current[key]
	p := b.s.policies[key.Collection]
	res := p.Apply(stored.Record, ch, nil, merge.Options{MaxVVEntries: b.s.cfg.MaxVVEntries})
	if res.Outcome == merge.Rejected {
		return domain.Errorf(domain.CodeNotResolvable, "the server cannot write this: %s: %s", res.Code, res.Message)
	}
	if !b.isTouched(key) {
		b.touched = append(b.touched, key)
	}
	b.current[key] = domain.StoredRecord{Record: res.Record, Owner: stored.Owner, Cursor: stored.Cursor}
	b.w.Versions = append(b.w.Versions, domain.Version{
		Key: key, ChangeID: ch.ChangeID, Subject: b.id.Subject, Node: vv.Server, Dot: ch.Dot(),
		HLC: ch.HLC, Outcome: res.Outcome, Change: res.Change, Record: res.Record,
		Conflicts: len(res.Conflicts), ReceivedAt: b.now,
	})
	// A change may close a field's conflict and open a new one on it
	// (it saw the old values, not a newer one): settle, then report.
	for _, f := range res.Settled {
		b.settle(key, f, vv.Server)
	}
	for _, c := range res.Conflicts {
		b.w.Conflicts = append(b.w.Conflicts, domain.ConflictReport{Conflict: c, Owner: stored.Owner, ChangeID: ch.ChangeID, At: b.now})
	}
	return nil
}

// SignOff signs off a patrol log (PROTOCOL.md): a server version that
// freezes it. Field edits concurrent with the sign-off become pending
// amendments (conflicts with rule sign_off_freeze) for review.
func (s *Service) SignOff(ctx context.Context, id domain.Identity, logID string) (*domain.RecordView, error) {
	if id.Role != domain.RoleSupervisor {
		return nil, domain.Errorf(domain.CodeForbidden, "only supervisors sign off patrol logs")
	}
	key := domain.Key{Collection: domain.PatrolLogs, ID: logID}
	notFound := domain.Errorf(domain.CodeNotFound, "no patrol log %q in your scope", logID)
	if !merge.ValidID(logID) {
		return nil, notFound
	}
	var out *domain.RecordView
	err := s.store.Push(ctx, func(tx domain.PushTx) error {
		b := newBatch(s, id, tx)
		if err := b.load(ctx, []domain.Key{key}, nil); err != nil {
			return err
		}
		stored, ok := b.current[key]
		if !ok || !canReview(id, key.Collection, stored.Owner) || stored.Record.Deleted() {
			return notFound
		}
		if bytes.Equal(stored.Record.Value("signed_off"), []byte("true")) {
			return domain.Errorf(domain.CodeAlreadySigned, "the patrol log is signed off (by %s)", strings.Trim(string(stored.Record.Value("signed_off_by")), `"`))
		}
		at, _ := json.Marshal(b.now.Format(time.RFC3339))
		ch, err := s.policies[domain.PatrolLogs].SignOff(stored.Record, uuid.NewString(), s.clock.Now(), id.Subject, at)
		if err != nil {
			return domain.Errorf(domain.CodeNotResolvable, "%v", err)
		}
		if err := b.serverWrite(key, ch); err != nil {
			return err
		}
		w := b.writes()
		w.Audit = &domain.AuditEvent{Kind: "sign_off", Actor: id.Subject, Subject: key.String(), At: b.now}
		if err := tx.Write(ctx, w); err != nil {
			return err
		}
		st := b.current[key]
		out = s.view(id, st.Record, st.Owner, b.now)
		return nil
	})
	return out, err
}
