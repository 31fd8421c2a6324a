package social

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/blueprint-media/blueprint/internal/kvstore"
	"github.com/blueprint-media/blueprint/internal/outbox"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

// feedDrivers opens the feed drivers under test. The Redis servers start
// on first use and serve every subtest of the test (each subtest gets its
// own key prefix).
type feedDrivers struct {
	t       *testing.T
	mu      sync.Mutex
	redis   []string // one redis-server
	cluster []string // a 3-master cluster
	n       int
}

func newFeedDrivers(t *testing.T) *feedDrivers { return &feedDrivers{t: t} }

func (d *feedDrivers) names(withCluster bool) []string {
	n := []string{"sql", "pebble", "redis"}
	if withCluster {
		n = append(n, "redis-cluster")
	}
	return n
}

// open returns a constructor of the named driver for t.
func (d *feedDrivers) open(t *testing.T, name string) func(*sqlstore.DB) FeedStore {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.n++
	prefix := fmt.Sprintf("t%d:feed:", d.n)
	var kv kvstore.Store
	var err error
	switch name {
	case "sql":
		return nil
	case "pebble":
		kv, err = kvstore.OpenPebble(filepath.Join(t.TempDir(), "kv"))
	case "redis":
		if d.redis == nil {
			d.redis = []string{testenv.StartRedis(d.t).Addr}
		}
		kv, err = kvstore.OpenRedis(context.Background(), d.redis, "")
	case "redis-cluster":
		if d.cluster == nil {
			d.cluster = testenv.StartRedisCluster(d.t, 3)
		}
		kv, err = kvstore.OpenRedis(context.Background(), d.cluster, "")
	default:
		t.Fatalf("unknown feed driver %q", name)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	return func(db *sqlstore.DB) FeedStore { return &KVFeed{DB: db, KV: kv, Prefix: prefix} }
}

func pebbleFeed(t *testing.T, maxLen int) (kvstore.Store, func(*sqlstore.DB) FeedStore) {
	t.Helper()
	kv, err := kvstore.OpenPebble(filepath.Join(t.TempDir(), "kv"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	return kv, func(db *sqlstore.DB) FeedStore { return &KVFeed{DB: db, KV: kv, MaxLen: maxLen} }
}

// TestKVFeedFanOutPaths checks that the write path pushes one item per
// follower into the kvstore (key feed:<user>) and the read path none, and
// that no feed_items rows are written.
func TestKVFeedFanOutPaths(t *testing.T) {
	kv, feed := pebbleFeed(t, 0)
	w := newWorldWith(t, 3, feed)
	ctx := context.Background()
	small, big := w.user(), w.user()
	var fans []int64
	for range 4 {
		f := w.user()
		fans = append(fans, f)
		if err := w.s.Follow(ctx, f, big); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.s.Follow(ctx, fans[0], small); err != nil {
		t.Fatal(err)
	}
	vs := w.video(small, true)
	vb := w.video(big, true)
	for i, f := range fans {
		items, err := kv.Range(ctx, fmt.Sprint("feed:", f), 10)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		if i == 0 {
			want = 1
		}
		if len(items) != want {
			t.Errorf("fan %d: %d kvstore items, want %d", f, len(items), want)
		}
		got := w.wholeFeed(f, 10)
		if !slices.Contains(got, vb) || (i == 0) != slices.Contains(got, vs) {
			t.Errorf("fan %d: feed %v (small creator's %d, big creator's %d)", f, got, vs, vb)
		}
	}
	var rows int
	w.db.R.QueryRow(`SELECT COUNT(*) FROM feed_items`).Scan(&rows)
	if rows != 0 {
		t.Errorf("%d feed_items rows with the kvstore driver, want 0", rows)
	}
}

// TestKVFeedFiltersOnRead: redelivered fan-outs, re-follows, unfollows,
// videos that stop being ready and deleted videos leave stale items in the
// list; reads de-duplicate and filter them.
func TestKVFeedFiltersOnRead(t *testing.T) {
	_, feed := pebbleFeed(t, 0)
	w := newWorldWith(t, 100, feed)
	ctx := context.Background()
	fan, a, b := w.user(), w.user(), w.user()
	for _, c := range []int64{a, b} {
		if err := w.s.Follow(ctx, fan, c); err != nil {
			t.Fatal(err)
		}
	}
	a1, b1, a2, b2, a3 := w.video(a, true), w.video(b, true), w.video(a, true), w.video(b, true), w.video(a, true)
	w.fanOut(a2) // a redelivered event
	w.fanOut(a2)
	if got, want := w.wholeFeed(fan, 2), []int64{a3, b2, a2, b1, a1}; !slices.Equal(got, want) {
		t.Fatalf("feed %v, want %v", got, want)
	}
	// Re-following pushes a's videos again.
	if err := w.s.Unfollow(ctx, fan, a); err != nil {
		t.Fatal(err)
	}
	if got, want := w.wholeFeed(fan, 3), []int64{b2, b1}; !slices.Equal(got, want) {
		t.Fatalf("after unfollow: feed %v, want %v", got, want)
	}
	if err := w.s.Follow(ctx, fan, a); err != nil {
		t.Fatal(err)
	}
	w.exec(`UPDATE videos SET status = 'failed' WHERE id = ?`, b1)
	w.exec(`DELETE FROM videos WHERE id = ?`, a1)
	if got, want := w.wholeFeed(fan, 1), []int64{a3, b2, a2}; !slices.Equal(got, want) {
		t.Fatalf("after re-follow and deletions: feed %v, want %v", got, want)
	}
}

// TestKVFeedCap: a user's list keeps the newest MaxLen pushes; the feed
// then shows the newest MaxLen videos.
func TestKVFeedCap(t *testing.T) {
	kv, feed := pebbleFeed(t, 5)
	w := newWorldWith(t, 100, feed)
	ctx := context.Background()
	fan, c := w.user(), w.user()
	var want []int64
	for range 3 {
		want = append(want, w.video(c, true))
	}
	if err := w.s.Follow(ctx, fan, c); err != nil { // back-fills 3
		t.Fatal(err)
	}
	for range 6 {
		want = append(want, w.video(c, true))
	}
	slices.Reverse(want)
	want = want[:5]
	if got := w.wholeFeed(fan, 2); !slices.Equal(got, want) {
		t.Fatalf("feed %v, want the newest five %v", got, want)
	}
	items, _ := kv.Range(ctx, fmt.Sprint("feed:", fan), 100)
	if len(items) != 5 {
		t.Fatalf("%d items in the list, want 5", len(items))
	}
}

// BenchmarkFeed measures, per feed store, one upload fanned out to 1000
// followers (the consumer's transaction) and one 24-item feed page of a
// follower of 50 creators with 10 ready videos each.
func BenchmarkFeed(b *testing.B) {
	for _, name := range []string{"sql", "pebble", "redis"} {
		b.Run("store="+name, func(b *testing.B) {
			var feed func(*sqlstore.DB) FeedStore
			var kv kvstore.Store
			var err error
			switch name {
			case "pebble":
				kv, err = kvstore.OpenPebble(filepath.Join(b.TempDir(), "kv"))
			case "redis":
				kv, err = kvstore.OpenRedis(context.Background(), []string{testenv.StartRedis(b).Addr}, "")
			}
			if err != nil {
				b.Fatal(err)
			}
			if kv != nil {
				b.Cleanup(func() { kv.Close() })
				feed = func(db *sqlstore.DB) FeedStore { return &KVFeed{DB: db, KV: kv} }
			}
			db := testenv.Store(b)
			cfg := Config{FanoutThreshold: 1 << 30}
			if feed != nil {
				cfg.Feed = feed(db)
			}
			s := New(db, nil, cfg, nil, nil)
			ctx := context.Background()
			exec := func(q string, args ...any) {
				if _, err := db.W.Exec(q, args...); err != nil {
					b.Fatal(err)
				}
			}
			next := int64(1000)
			user := func() int64 {
				next++
				exec(`INSERT INTO users(id, username, email, password_hash, created_at) VALUES (?, ?, ?, 'x', 0)`, next, fmt.Sprint("u", next), fmt.Sprint("u", next, "@x"))
				return next
			}
			video := func(creator int64) int64 {
				next++
				exec(`INSERT INTO videos(id, user_id, title, status, source_key, source_size, created_at, updated_at) VALUES (?, ?, 't', 'ready', 'k', 1, 0, 0)`, next, creator)
				if err := db.Tx(ctx, func(tx *sql.Tx) error {
					return s.FanOut(ctx, tx, outbox.Event{ID: next, Kind: "video.ready", SubjectID: next})
				}); err != nil {
					b.Fatal(err)
				}
				return next
			}
			star := user()
			for range 1000 {
				exec(`INSERT INTO follows(follower_id, followee_id, created_at) VALUES (?, ?, 0)`, user(), star)
			}
			exec(`INSERT INTO user_stats(user_id, followers) VALUES (?, 1000)`, star)
			reader := user()
			for range 50 {
				c := user()
				if err := s.Follow(ctx, reader, c); err != nil {
					b.Fatal(err)
				}
				for range 10 {
					video(c)
				}
			}
			b.Run("fanout=1000", func(b *testing.B) {
				for b.Loop() {
					video(star)
				}
			})
			b.Run("page=24", func(b *testing.B) {
				for b.Loop() {
					if ids, err := s.Feed(ctx, reader, 0, 24); err != nil || len(ids) != 24 {
						b.Fatal(len(ids), err)
					}
				}
			})
		})
	}
}
