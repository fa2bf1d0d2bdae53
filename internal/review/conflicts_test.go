package review_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/internal/review"
	"github.com/fieldsync/fieldsync/internal/store/dbtest"
	"github.com/fieldsync/fieldsync/internal/syncer"
	"github.com/fieldsync/fieldsync/sync/hlc"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// The conflict queue pages oldest first, every conflict exactly once,
// including conflicts opened in the same instant (ordered by id among
// themselves).
func TestConflictQueuePagesOldestFirst(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db dbtest.DB) {
		ctx := context.Background()
		now := at(8, 0)
		svc := syncer.New(db.Store, hlc.NewClock(vv.Server, func() int64 { return now.UnixMilli() }, 60_000), func() time.Time { return now }, syncer.Config{})
		push := func(dev, id, route string) {
			t.Helper()
			b, _ := json.Marshal(map[string]any{"change_id": dev + id, "collection": "patrol_logs", "id": id,
				"vv": map[string]int{dev: 1}, "hlc": fmt.Sprintf("%d-0-%s", now.UnixMilli(), dev),
				"fields": map[string]any{"unit": "KEN-1", "status": "active", "route": route}})
			if _, err := svc.Push(ctx, domain.Identity{Subject: dev, Role: domain.RoleDevice, Unit: "KEN-1", Contingent: "KEN"}, []json.RawMessage{b}); err != nil {
				t.Fatal(err)
			}
		}
		var want []string
		for i := 0; i < 7; i++ {
			if i%3 != 0 {
				now = now.Add(time.Minute) // some conflicts share an instant
			}
			id := fmt.Sprintf("log-%d", i)
			push("dev-a", id, "north")
			push("dev-b", id, "south")
			want = append(want, id)
		}
		rs := review.New(db.Store, db.Store.Get, func() time.Time { return now }, 0)
		sup := domain.Identity{Subject: "sup", Role: domain.RoleSupervisor, Contingent: "KEN"}
		var got []string
		var last time.Time
		seen := map[string]bool{}
		after := ""
		for page := 0; ; page++ {
			cs, more, err := rs.Conflicts(ctx, sup, review.ConflictQuery{Status: "open", After: after, Limit: 2})
			if err != nil {
				t.Fatal(err)
			}
			for i := range cs {
				if cs[i].Field != "route" {
					continue
				}
				if seen[cs[i].ID] {
					t.Fatalf("conflict %s served twice", cs[i].ID)
				}
				seen[cs[i].ID] = true
				if cs[i].CreatedAt.Before(last) {
					t.Fatalf("%s (opened %s) served after a conflict opened %s", cs[i].Key.ID, cs[i].CreatedAt, last)
				}
				last = cs[i].CreatedAt
				got = append(got, cs[i].Key.ID)
			}
			if !more {
				break
			}
			after = domain.ConflictCursor(&cs[len(cs)-1])
			if page > 20 {
				t.Fatal("paging does not end")
			}
		}
		slices.Sort(got)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("queue holds %v, want %v", got, want)
		}
		if _, _, err := rs.Conflicts(ctx, sup, review.ConflictQuery{After: "not-a-cursor", Limit: 2}); domain.ErrorCode(err) != domain.CodeInvalidCursor {
			t.Fatalf("a bad cursor: %v", err)
		}
	})
}
