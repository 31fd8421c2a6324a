package social

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/idgen/idgentest"
	"github.com/blueprint-media/blueprint/internal/outbox"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

type world struct {
	t      *testing.T
	db     *sqlstore.DB
	s      *Service
	nextID int64
}

func newWorld(t *testing.T, threshold int) *world {
	return newWorldWith(t, threshold, nil)
}

// newWorldWith is newWorld with the feed kept by the store feed returns
// for the world's database (nil: the SQL table).
func newWorldWith(t *testing.T, threshold int, feed func(db *sqlstore.DB) FeedStore) *world {
	t.Helper()
	db := testenv.Store(t)
	cfg := Config{FanoutThreshold: threshold, MaxCommentLength: 20, CommentInterval: 0}
	if feed != nil {
		cfg.Feed = feed(db)
	}
	s := New(db, idgentest.New(t), cfg, nil, nil)
	return &world{t: t, db: db, s: s, nextID: 1000}
}

func (w *world) exec(q string, args ...any) {
	w.t.Helper()
	if _, err := w.db.W.Exec(q, args...); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) user() int64 {
	w.nextID++
	w.exec(`INSERT INTO users(id, username, email, password_hash, created_at) VALUES (?, ?, ?, 'x', 0)`,
		w.nextID, fmt.Sprint("u", w.nextID), fmt.Sprint("u", w.nextID, "@example.com"))
	return w.nextID
}

// video creates a video of creator; ready ones are fanned out the way the
// feed consumer does it.
func (w *world) video(creator int64, ready bool) int64 {
	w.nextID++
	status := "processing"
	if ready {
		status = "ready"
	}
	w.exec(`INSERT INTO videos(id, user_id, title, status, source_key, source_size, created_at, updated_at) VALUES (?, ?, 't', ?, 'k', 1, 0, 0)`,
		w.nextID, creator, status)
	if ready {
		w.fanOut(w.nextID)
	}
	return w.nextID
}

func (w *world) fanOut(video int64) {
	w.t.Helper()
	err := w.db.Tx(context.Background(), func(tx *sql.Tx) error {
		return w.s.FanOut(context.Background(), tx, outbox.Event{ID: video, Kind: "video.ready", SubjectID: video})
	})
	if err != nil {
		w.t.Fatal(err)
	}
}

// wholeFeed pages through user's feed with the given page size.
func (w *world) wholeFeed(user int64, page int) []int64 {
	w.t.Helper()
	var out []int64
	var before int64
	for {
		ids, err := w.s.Feed(context.Background(), user, before, page)
		if err != nil {
			w.t.Fatal(err)
		}
		out = append(out, ids...)
		if len(ids) < page {
			return out
		}
		before = ids[len(ids)-1]
	}
}

// TestFeedHybridMatchesOracle drives random follows, unfollows and uploads
// through the service at several fan-out thresholds — all write, all read,
// and creators crossing the threshold midway — and checks every feed
// against the definition: the ready videos of the creators the user
// follows now, newest first.
//
// Every case runs on each feed driver (the innermost subtest level): the
// SQL table, kvstore lists on Pebble, on a redis-server and, at threshold
// 3, on a 3-master Redis Cluster.
func TestFeedHybridMatchesOracle(t *testing.T) {
	drivers := newFeedDrivers(t)
	for _, threshold := range []int{0, 1, 3, 1 << 30} {
		for seed := range uint64(4) {
			for _, d := range drivers.names(threshold == 3) {
				t.Run(fmt.Sprintf("threshold=%d/seed=%d/feed=%s", threshold, seed, d), func(t *testing.T) {
					testFeedHybrid(t, threshold, seed, drivers.open(t, d))
				})
			}
		}
	}
}

func testFeedHybrid(t *testing.T, threshold int, seed uint64, feed func(*sqlstore.DB) FeedStore) {
	rng := rand.New(rand.NewPCG(seed, uint64(threshold)))
	w := newWorldWith(t, threshold, feed)
	ctx := context.Background()
	var users []int64
	for range 8 {
		users = append(users, w.user())
	}
	follows := map[[2]int64]bool{}
	var videos []struct {
		id, creator int64
		ready       bool
	}
	for range 300 {
		a, b := users[rng.IntN(len(users))], users[rng.IntN(len(users))]
		switch op := rng.IntN(10); {
		case op < 4 && a != b:
			if err := w.s.Follow(ctx, a, b); err != nil {
				t.Fatal(err)
			}
			follows[[2]int64{a, b}] = true
		case op < 6 && a != b:
			if err := w.s.Unfollow(ctx, a, b); err != nil {
				t.Fatal(err)
			}
			delete(follows, [2]int64{a, b})
		case op < 9:
			ready := rng.IntN(4) > 0
			id := w.video(a, ready)
			videos = append(videos, struct {
				id, creator int64
				ready       bool
			}{id, a, ready})
		default:
			// A processing video becomes ready later.
			for i := range videos {
				if !videos[i].ready {
					w.exec(`UPDATE videos SET status = 'ready' WHERE id = ?`, videos[i].id)
					w.fanOut(videos[i].id)
					videos[i].ready = true
					break
				}
			}
		}
	}
	for _, u := range users {
		var want []int64
		for _, v := range videos {
			if v.ready && follows[[2]int64{u, v.creator}] {
				want = append(want, v.id)
			}
		}
		slices.Reverse(want)
		for _, page := range []int{1, 7, 100} {
			if got := w.wholeFeed(u, page); !slices.Equal(got, want) {
				t.Fatalf("user %d page size %d: feed %v, want %v", u, page, got, want)
			}
		}
	}
}

// TestFanOutPaths checks that the write path writes one row per follower
// and the read path none.
func TestFanOutPaths(t *testing.T) {
	w := newWorld(t, 3)
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
	rows := func(creator int64) (n int) {
		w.db.R.QueryRow(`SELECT COUNT(*) FROM feed_items WHERE creator_id = ?`, creator).Scan(&n)
		return n
	}
	w.video(small, true)
	w.video(big, true)
	if got := rows(small); got != 1 {
		t.Errorf("small creator: %d feed rows, want 1 (fan-out on write)", got)
	}
	if got := rows(big); got != 0 {
		t.Errorf("big creator: %d feed rows, want 0 (merged on read)", got)
	}
	st, err := w.s.Stats(ctx, big, fans[0])
	if err != nil {
		t.Fatal(err)
	}
	if st.Followers != 4 || !st.ReadMerge || !st.Followed {
		t.Errorf("stats %+v, want 4 followers, read merge, followed", st)
	}
	for _, f := range fans {
		if got := w.wholeFeed(f, 10); len(got) < 1 {
			t.Errorf("fan %d sees no video of the big creator", f)
		}
	}
}

func TestFollowErrors(t *testing.T) {
	w := newWorld(t, 10)
	ctx := context.Background()
	a := w.user()
	if err := w.s.Follow(ctx, a, a); errs.KindOf(err) != errs.Invalid {
		t.Errorf("self-follow: %v, want Invalid", err)
	}
	if err := w.s.Follow(ctx, a, 42); errs.KindOf(err) != errs.NotFound {
		t.Errorf("follow of a missing user: %v, want NotFound", err)
	}
	b := w.user()
	for range 3 { // idempotent
		if err := w.s.Follow(ctx, a, b); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := w.s.Stats(ctx, b, 0)
	if st.Followers != 1 {
		t.Errorf("followers %d after three follows, want 1", st.Followers)
	}
	for range 2 {
		if err := w.s.Unfollow(ctx, a, b); err != nil {
			t.Fatal(err)
		}
	}
	st, _ = w.s.Stats(ctx, b, a)
	if st.Followers != 0 || st.Followed {
		t.Errorf("after unfollow: %+v", st)
	}
	var events int
	w.db.R.QueryRow(`SELECT COUNT(*) FROM events WHERE kind IN ('user.followed', 'user.unfollowed')`).Scan(&events)
	if events != 2 {
		t.Errorf("%d follow events, want 2 (one follow, one unfollow)", events)
	}
}

// TestConcurrentLikes has many users like and unlike one video at once and
// checks the count equals the like rows and one event per new like.
func TestConcurrentLikes(t *testing.T) {
	w := newWorld(t, 10)
	ctx := context.Background()
	owner := w.user()
	video := w.video(owner, true)
	var users []int64
	for range 40 {
		users = append(users, w.user())
	}
	var wg sync.WaitGroup
	for i, u := range users {
		wg.Go(func() {
			for range 3 {
				if _, err := w.s.Like(ctx, u, video); err != nil {
					t.Error(err)
				}
			}
			if i%4 == 0 {
				if _, err := w.s.Unlike(ctx, u, video); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	var count, rows, events int
	w.db.R.QueryRow(`SELECT likes FROM videos WHERE id = ?`, video).Scan(&count)
	w.db.R.QueryRow(`SELECT COUNT(*) FROM likes WHERE video_id = ?`, video).Scan(&rows)
	w.db.R.QueryRow(`SELECT COUNT(*) FROM events WHERE kind = 'video.liked'`).Scan(&events)
	if count != 30 || rows != 30 {
		t.Errorf("likes counter %d, rows %d, want 30 and 30", count, rows)
	}
	if events != 40 {
		t.Errorf("%d like events, want 40 (one per first like)", events)
	}
	if _, err := w.s.Like(ctx, users[0], w.video(owner, false)); errs.KindOf(err) != errs.NotFound {
		t.Errorf("like of a processing video: %v, want NotFound", err)
	}
}

func TestComments(t *testing.T) {
	w := newWorld(t, 10)
	ctx := context.Background()
	owner, fan, other := w.user(), w.user(), w.user()
	video := w.video(owner, true)
	for _, bad := range []string{"", "   ", "\xff\xfe", "this comment is far too long for the limit"} {
		if _, err := w.s.AddComment(ctx, fan, video, bad); errs.KindOf(err) != errs.Invalid {
			t.Errorf("comment %q: %v, want Invalid", bad, err)
		}
	}
	c1, err := w.s.AddComment(ctx, fan, video, " first ")
	if err != nil {
		t.Fatal(err)
	}
	if c1.Body != "first" || c1.Username == "" {
		t.Errorf("comment %+v", c1)
	}
	c2, err := w.s.AddComment(ctx, other, video, "second")
	if err != nil {
		t.Fatal(err)
	}
	got, err := w.s.Comments(ctx, video, 0, 10)
	if err != nil || len(got) != 2 || got[0].ID != c2.ID || got[1].ID != c1.ID {
		t.Fatalf("comments %+v, %v; want newest first", got, err)
	}
	if err := w.s.DeleteComment(ctx, other, c1.ID); errs.KindOf(err) != errs.Forbidden {
		t.Errorf("delete by a stranger: %v, want Forbidden", err)
	}
	if err := w.s.DeleteComment(ctx, owner, c1.ID); err != nil {
		t.Errorf("delete by the video's owner: %v", err)
	}
	var n int
	w.db.R.QueryRow(`SELECT comments FROM videos WHERE id = ?`, video).Scan(&n)
	if n != 1 {
		t.Errorf("comment counter %d, want 1", n)
	}
	var payload string
	w.db.R.QueryRow(`SELECT payload FROM events WHERE kind = 'comment.created' ORDER BY id LIMIT 1`).Scan(&payload)
	if want := fmt.Sprintf(`"video_owner_id":"%d"`, owner); !strings.Contains(payload, want) {
		t.Errorf("comment event payload %s lacks %s", payload, want)
	}

	// The per-user interval.
	w.s.cfg.CommentInterval = time.Hour
	third := w.user()
	if _, err := w.s.AddComment(ctx, third, video, "again"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.s.AddComment(ctx, third, video, "and again"); errs.KindOf(err) != errs.TooMany {
		t.Errorf("second comment within the interval: %v, want TooMany", err)
	}
}
