package notify

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/archive"
	"github.com/blueprint-media/blueprint/internal/blob"
	"github.com/blueprint-media/blueprint/internal/idgen/idgentest"
	"github.com/blueprint-media/blueprint/internal/outbox"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

const day = 24 * time.Hour

// tiers is an inbox over a real store and a local object store: svc lists
// through the archive reader, plain (same database) lists the table alone
// as the service did before it had one.
type tiers struct {
	db         *sqlstore.DB
	blobs      blob.Store
	clk        *clock
	svc, plain *Service
	seq        int64
}

func newTiers(t *testing.T, base time.Time) *tiers {
	t.Helper()
	db := testenv.Store(t)
	store, err := blob.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ids := idgentest.New(t)
	e := &tiers{db: db, blobs: store, clk: &clock{t: base}}
	e.svc = New(Config{}, Deps{DB: db, IDs: ids, Archive: archive.NewReader(db, store), Logger: quiet()})
	e.svc.now = e.clk.Now
	e.plain = New(Config{}, Deps{DB: db, IDs: ids, Logger: quiet()})
	e.plain.now = e.clk.Now
	return e
}

// follow makes a new follower of user follow them now (one new_follower
// notification, created at the clock's time) and returns its ID.
func (e *tiers) follow(t *testing.T, user int64) int64 {
	t.Helper()
	e.seq++
	follower := 9000 + e.seq
	if _, err := e.db.W.Exec(`INSERT INTO users(id, username, email, password_hash, created_at) VALUES (?, ?, ?, 'x', ?)`,
		follower, fmt.Sprintf("fan%d", e.seq), fmt.Sprintf("fan%d@example.com", e.seq), e.clk.Now().Unix()); err != nil {
		t.Fatal(err)
	}
	payload := fmt.Sprintf(`{"follower_id":"%d","followee_id":"%d"}`, follower, user)
	ev := outbox.Event{ID: e.seq, Kind: "user.followed", SubjectID: user, Payload: json.RawMessage(payload), CreatedAt: e.clk.Now()}
	if err := e.db.Tx(context.Background(), func(tx *sql.Tx) error { return e.svc.Handle(context.Background(), tx, ev) }); err != nil {
		t.Fatal(err)
	}
	var id int64
	if err := e.db.R.QueryRow(`SELECT id FROM notifications WHERE user_id = ? AND actor_id = ?`, user, follower).Scan(&id); err != nil {
		t.Fatalf("the follow made no notification: %v", err)
	}
	return id
}

// pages lists user's whole inbox through s, limit per page.
func pages(t *testing.T, s *Service, user int64, limit int, unreadOnly bool) [][]Notification {
	t.Helper()
	var out [][]Notification
	var before int64
	for n := 0; ; n++ {
		if n > 1000 {
			t.Fatal("the pages never end")
		}
		items, next, err := s.List(context.Background(), user, ListOptions{Before: before, Limit: limit, UnreadOnly: unreadOnly})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, items)
		if next == 0 {
			return out
		}
		if next != items[len(items)-1].ID {
			t.Fatalf("cursor %d is not the last ID of its page (%d)", next, items[len(items)-1].ID)
		}
		before = next
	}
}

// unarchived returns a copy of ps with the Archived flags cleared.
func unarchived(ps [][]Notification) [][]Notification {
	out := make([][]Notification, len(ps))
	for i, p := range ps {
		out[i] = slices.Clone(p)
		for j := range out[i] {
			out[i][j].Archived = false
		}
	}
	return out
}

// chunk splits items into pages of limit, as List pages them.
func chunk(items []Notification, limit int) [][]Notification {
	if len(items) == 0 {
		return [][]Notification{{}}
	}
	var out [][]Notification
	for len(items) > limit {
		out = append(out, items[:limit])
		items = items[limit:]
	}
	return append(out, items)
}

// TestInboxAcrossArchive: notifications of seven days (five old, two
// recent; some read, one created out of ID order), the old days archived
// by the real Archiver to Parquet in a local object store. Every page of
// every user's inbox, at several page sizes, is the same after the
// archive ran as before (the archived ones flagged, and counted read);
// without the reader the old notifications are gone (the bug). The unread
// view and count lose exactly the archived unread ones; marking one of
// those read does nothing; a late notification dated inside an archived
// day is listed first and can be read.
func TestInboxAcrossArchive(t *testing.T) {
	ctx := context.Background()
	base := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	e := newTiers(t, base)
	users := []int64{101, 102, 103}
	created := map[int64]time.Time{} // notification ID → creation time
	n := 0
	for _, d := range []int{44, 43, 42, 41, 40, 1, 0} {
		start := base.Add(-time.Duration(d) * day).Truncate(day)
		for h := range 3 {
			e.clk.Set(start.Add(time.Duration(1+7*h) * time.Hour))
			for _, u := range users {
				for range 1 + (n+int(u))%3 {
					id := e.follow(t, u)
					created[id] = e.clk.Now()
					if n%3 == 0 {
						if _, err := e.svc.MarkRead(ctx, u, []int64{id}, false); err != nil {
							t.Fatal(err)
						}
					}
					n++
				}
			}
		}
	}
	// Out of ID order: the newest ID of user 101, dated in an old day
	// (a clock behind the ID generator's). It is archived with that day,
	// yet belongs on the first page.
	e.clk.Set(base.Add(-42 * day))
	outOfOrder := e.follow(t, 101)
	created[outOfOrder] = e.clk.Now()
	e.clk.Set(base)

	limits := []int{1, 3, 7, 100}
	type key struct {
		user  int64
		limit int
	}
	before := map[key][][]Notification{}
	unreadBefore := map[int64][]Notification{}
	for _, u := range users {
		for _, l := range limits {
			before[key{u, l}] = pages(t, e.svc, u, l, false)
			if plain := pages(t, e.plain, u, l, false); !reflect.DeepEqual(plain, before[key{u, l}]) {
				t.Fatalf("user %d, limit %d: the reader pages differently from the table before any archive", u, l)
			}
		}
		unreadBefore[u] = slices.Concat(pages(t, e.svc, u, 100, true)...)
	}
	if first := before[key{101, 3}][0]; first[0].ID != outOfOrder {
		t.Fatalf("first page of user 101 starts at %d, want the out-of-order %d", first[0].ID, outOfOrder)
	}

	job, err := archive.New(e.db, e.blobs, archive.Config{
		After: 30 * day, Partition: day, Tables: []archive.Table{archive.Notifications}, RowGroupRows: 4, Now: e.clk.Now,
	}, quiet(), nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := job.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Partitions != 5 || res.Skipped != 0 {
		t.Fatalf("archive run: %+v, want the 5 old days", res)
	}
	cutoff := base.Add(-30 * day).Truncate(day)
	archived := map[int64]bool{}
	for id, at := range created {
		if at.Before(cutoff) {
			archived[id] = true
		}
	}
	var hot int
	if err := e.db.R.QueryRow(`SELECT COUNT(*) FROM notifications`).Scan(&hot); err != nil {
		t.Fatal(err)
	}
	if hot != len(created)-len(archived) || len(archived) == 0 || hot == 0 {
		t.Fatalf("%d rows left in the table, want %d of %d", hot, len(created)-len(archived), len(created))
	}

	for _, u := range users {
		for _, l := range limits {
			k := key{u, l}
			after := pages(t, e.svc, u, l, false)
			if !reflect.DeepEqual(unarchived(after), before[k]) {
				t.Fatalf("user %d, limit %d: the inbox pages changed with the archive:\nbefore %v\nafter  %v", u, l, before[k], after)
			}
			for _, p := range after {
				for _, it := range p {
					if it.Archived != archived[it.ID] || (it.Archived && !it.Read()) {
						t.Fatalf("notification %d: archived = %v, read = %v; want archived = %v (and read)", it.ID, it.Archived, it.Read(), archived[it.ID])
					}
				}
			}
			if l == 100 {
				// What the table alone shows now: the old days are gone.
				all := slices.Concat(pages(t, e.plain, u, l, false)...)
				if want := slices.Concat(before[k]...); len(all) >= len(want) {
					t.Fatalf("user %d: the table alone still lists %d of %d: nothing was archived", u, len(all), len(want))
				}
			}
		}
		// The unread view and count: the table's unread ones, the
		// archived unread ones gone, paged as before.
		var want []Notification
		gone := 0
		for _, it := range unreadBefore[u] {
			if archived[it.ID] {
				gone++
				continue
			}
			want = append(want, it)
		}
		if gone == 0 {
			t.Fatalf("user %d had no unread archived notification: the unread check proves nothing", u)
		}
		if got := pages(t, e.svc, u, 2, true); !reflect.DeepEqual(got, chunk(want, 2)) {
			t.Fatalf("user %d: unread pages %v, want %v", u, got, chunk(want, 2))
		}
		if c, err := e.svc.Unread(ctx, u); err != nil || c != len(want) {
			t.Fatalf("user %d: unread count %d (%v), want %d", u, c, err, len(want))
		}
	}

	// An archived unread notification: listed read-only, marking it does
	// nothing, and the API shows it archived.
	var frozen Notification
	for _, it := range unreadBefore[101] {
		if archived[it.ID] {
			frozen = it
			break
		}
	}
	count, err := e.svc.Unread(ctx, 101)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := e.svc.MarkRead(ctx, 101, []int64{frozen.ID}, false); err != nil || c != count {
		t.Fatalf("marking an archived notification: %d (%v), want the count unchanged at %d", c, err, count)
	}
	page, _, err := e.svc.List(ctx, 101, ListOptions{Before: frozen.ID + 1, Limit: 1})
	if err != nil || len(page) != 1 || page[0].ID != frozen.ID || page[0].ReadAt != nil || !page[0].Archived {
		t.Fatalf("archived notification %d after mark-read: %+v (%v)", frozen.ID, page, err)
	}
	raw, _ := json.Marshal(page[0])
	if !strings.Contains(string(raw), `"archived":true`) || strings.Contains(string(raw), "read_at") {
		t.Fatalf("archived notification as JSON: %s", raw)
	}

	// A late notification dated inside an archived day stays in the table:
	// listed first, not archived, and it can be read.
	e.clk.Set(base.Add(-43 * day))
	late := e.follow(t, 101)
	e.clk.Set(base)
	page, _, err = e.svc.List(ctx, 101, ListOptions{Limit: 2})
	if err != nil || len(page) != 2 || page[0].ID != late || page[0].Archived || page[0].Read() || page[1].ID != outOfOrder {
		t.Fatalf("first page with a late notification: %+v (%v)", page, err)
	}
	if c, err := e.svc.MarkRead(ctx, 101, []int64{late}, false); err != nil || c != count {
		t.Fatalf("marking the late notification read: %d (%v), want %d", c, err, count)
	}
}
