package social

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/blueprint-media/blueprint/internal/kvstore"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// FeedStore keeps the materialised (fan-out-on-write) part of the home
// feeds and reads feed pages. The service decides which creators are
// fanned out on write and which are merged at read time; a FeedStore
// stores the items and merges the read-time creators into its pages.
//
// Two drivers: SQLFeed (the feed_items table: the reference behaviour and
// the path that needs nothing but the SQL store) and KVFeed (one capped
// list per user in a kvstore.Store: Pebble embedded, Redis to scale out).
// Both give the same pages (TestFeedHybridMatchesOracle).
type FeedStore interface {
	// FanOut writes video, uploaded by creator, into the feed of every
	// follower of creator. It runs in the feed consumer's transaction tx,
	// after the creator's stats row was locked.
	FanOut(ctx context.Context, tx *sql.Tx, video, creator int64) error
	// Followed back-fills creator's ready videos into follower's feed. It
	// runs in the follow's transaction tx.
	Followed(ctx context.Context, tx *sql.Tx, follower, creator int64) error
	// Unfollowed takes creator's videos out of follower's feed (or lets
	// the reads filter them out). It runs in the unfollow's transaction.
	Unfollowed(ctx context.Context, tx *sql.Tx, follower, creator int64) error
	// Page returns up to limit video IDs of user's feed below the cursor
	// before, newest first: the materialised items that are still valid
	// and the ready videos of followed merge-on-read creators,
	// de-duplicated.
	Page(ctx context.Context, user, before int64, limit int) ([]int64, error)
	// Name names the driver ("sql", "kvstore") for logs and status.
	Name() string
}

// SQLFeed keeps feed items in the SQL table feed_items: one row per
// follower and video; unfollowing deletes the rows.
type SQLFeed struct{ DB *sqlstore.DB }

// Name implements FeedStore.
func (SQLFeed) Name() string { return "sql" }

// FanOut implements FeedStore.
func (f SQLFeed) FanOut(ctx context.Context, tx *sql.Tx, video, creator int64) error {
	_, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO feed_items(user_id, video_id, creator_id)
		SELECT follower_id, ?, ? FROM follows WHERE followee_id = ?`, video, creator, creator)
	return err
}

// Followed implements FeedStore.
func (f SQLFeed) Followed(ctx context.Context, tx *sql.Tx, follower, creator int64) error {
	_, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO feed_items(user_id, video_id, creator_id)
		SELECT ?, id, user_id FROM videos WHERE user_id = ? AND status = 'ready'`, follower, creator)
	return err
}

// Unfollowed implements FeedStore.
func (f SQLFeed) Unfollowed(ctx context.Context, tx *sql.Tx, follower, creator int64) error {
	_, err := tx.ExecContext(ctx, `DELETE FROM feed_items WHERE user_id = ? AND creator_id = ?`, follower, creator)
	return err
}

// Page implements FeedStore with one query: the items UNION the merged
// creators' videos.
func (f SQLFeed) Page(ctx context.Context, user, before int64, limit int) ([]int64, error) {
	rows, err := f.DB.Read(ctx).QueryContext(ctx, `
		SELECT video_id FROM (
			SELECT f.video_id FROM feed_items f JOIN videos v ON v.id = f.video_id AND v.status = 'ready'
			WHERE f.user_id = ?1 AND f.video_id < ?2
			UNION
			SELECT v.id FROM follows fo
			JOIN user_stats st ON st.user_id = fo.followee_id AND st.read_merge = 1
			JOIN videos v ON v.user_id = fo.followee_id AND v.status = 'ready' AND v.id < ?2
			WHERE fo.follower_id = ?1
		) AS feed ORDER BY video_id DESC LIMIT ?3`, user, before, limit)
	if err != nil {
		return nil, err
	}
	return scanIDs(rows)
}

// mergedPage returns up to limit ready videos below before of the
// merge-on-read creators user follows, newest first.
func mergedPage(ctx context.Context, db *sqlstore.DB, user, before int64, limit int) ([]int64, error) {
	rows, err := db.Read(ctx).QueryContext(ctx, `SELECT v.id FROM follows fo
		JOIN user_stats st ON st.user_id = fo.followee_id AND st.read_merge = 1
		JOIN videos v ON v.user_id = fo.followee_id AND v.status = 'ready' AND v.id < ?
		WHERE fo.follower_id = ? ORDER BY v.id DESC LIMIT ?`, before, user, limit)
	if err != nil {
		return nil, err
	}
	return scanIDs(rows)
}

// KVFeed keeps each user's materialised feed as a capped list in a
// kvstore.Store, under the key Prefix+<user ID> ("feed:<user>"): one
// 8-byte video ID per item, newest push first, at most MaxLen items (the
// store drops the oldest pushes).
//
// The list is append-only and may hold stale items: a video pushed twice
// (a redelivered event, a re-follow), a video of a creator the user has
// since unfollowed, a video deleted or no longer ready, a push from a
// transaction that then rolled back. Reads fix all of these: they sort
// and de-duplicate the IDs and keep only those whose video is ready and
// whose creator the user follows now (one indexed SQL query per page), so
// unfollowing writes nothing here. Stale items still take places in the
// cap until newer pushes evict them.
//
// A push happens inside the SQL transaction that decides it, after the
// rows that make it valid were written or locked: if the transaction rolls
// back, the read-time filter hides the push (the follow does not exist)
// or the redelivered event pushes again (de-duplicated on read).
type KVFeed struct {
	DB     *sqlstore.DB
	KV     kvstore.Store
	MaxLen int    // items kept per user; ≤ 0: 1000
	Prefix string // key prefix; "" is "feed:"
	// Parallel bounds concurrent pushes of one fan-out; ≤ 0: 16.
	Parallel int
}

// Name implements FeedStore.
func (f *KVFeed) Name() string { return "kvstore" }

func (f *KVFeed) maxLen() int {
	if f.MaxLen <= 0 {
		return 1000
	}
	return f.MaxLen
}

func (f *KVFeed) key(user int64) string {
	p := f.Prefix
	if p == "" {
		p = "feed:"
	}
	return p + idStr(user)
}

func encodeID(id int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(id)) }

// push appends each video to each user's list, with at most Parallel
// pushes at once (Pebble commits concurrent synced writes together; Redis
// overlaps the round trips). videos are pushed in the order given.
func (f *KVFeed) push(ctx context.Context, users []int64, videos []int64) error {
	par := f.Parallel
	if par <= 0 {
		par = 16
	}
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	failed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return first != nil
	}
	for _, u := range users {
		sem <- struct{}{}
		if failed() { // the transaction will roll back: stop pushing
			<-sem
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			for _, v := range videos {
				if err := f.KV.Push(ctx, f.key(u), encodeID(v), f.maxLen()); err != nil {
					mu.Lock()
					first = cmp.Or(first, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// FanOut implements FeedStore: one push per follower.
func (f *KVFeed) FanOut(ctx context.Context, tx *sql.Tx, video, creator int64) error {
	rows, err := tx.QueryContext(ctx, `SELECT follower_id FROM follows WHERE followee_id = ?`, creator)
	if err != nil {
		return err
	}
	followers, err := scanIDs(rows)
	if err != nil {
		return err
	}
	if err := f.push(ctx, followers, []int64{video}); err != nil {
		return fmt.Errorf("social: feed fan-out: %w", err)
	}
	return nil
}

// Followed implements FeedStore: the creator's newest MaxLen ready videos
// are pushed oldest first, so the newest end up at the head.
func (f *KVFeed) Followed(ctx context.Context, tx *sql.Tx, follower, creator int64) error {
	rows, err := tx.QueryContext(ctx, `SELECT id FROM videos WHERE user_id = ? AND status = 'ready' ORDER BY id DESC LIMIT ?`, creator, f.maxLen())
	if err != nil {
		return err
	}
	videos, err := scanIDs(rows)
	if err != nil {
		return err
	}
	if len(videos) == 0 {
		return nil
	}
	slices.Reverse(videos)
	if err := f.push(ctx, []int64{follower}, videos); err != nil {
		return fmt.Errorf("social: feed back-fill: %w", err)
	}
	return nil
}

// Unfollowed implements FeedStore: nothing to write, reads filter the
// creator's items out.
func (f *KVFeed) Unfollowed(context.Context, *sql.Tx, int64, int64) error { return nil }

// Page implements FeedStore.
func (f *KVFeed) Page(ctx context.Context, user, before int64, limit int) ([]int64, error) {
	raw, err := f.KV.Range(ctx, f.key(user), f.maxLen())
	if err != nil {
		return nil, err
	}
	ids := make([]int64, 0, len(raw))
	for _, b := range raw {
		if len(b) != 8 {
			return nil, errors.New("social: corrupt feed item")
		}
		if id := int64(binary.BigEndian.Uint64(b)); id < before {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b int64) int { return cmp.Compare(b, a) })
	ids = slices.Compact(ids)
	var page []int64
	for len(ids) > 0 && len(page) < limit {
		chunk := ids[:min(len(ids), max(2*limit, 64))]
		ids = ids[len(chunk):]
		valid, err := f.valid(ctx, user, chunk)
		if err != nil {
			return nil, err
		}
		for _, id := range chunk {
			if valid[id] {
				page = append(page, id)
			}
		}
	}
	merged, err := mergedPage(ctx, f.DB, user, before, limit)
	if err != nil {
		return nil, err
	}
	page = append(page, merged...)
	slices.SortFunc(page, func(a, b int64) int { return cmp.Compare(b, a) })
	page = slices.Compact(page)
	return page[:min(len(page), limit)], nil
}

// valid returns which of ids are ready videos of creators user follows.
func (f *KVFeed) valid(ctx context.Context, user int64, ids []int64) (map[int64]bool, error) {
	args := make([]any, 0, len(ids)+1)
	args = append(args, user)
	for _, id := range ids {
		args = append(args, id)
	}
	rows, err := f.DB.Read(ctx).QueryContext(ctx, `SELECT v.id FROM videos v
		JOIN follows fo ON fo.followee_id = v.user_id AND fo.follower_id = ?
		WHERE v.status = 'ready' AND v.id IN (?`+strings.Repeat(",?", len(ids)-1)+`)`, args...)
	if err != nil {
		return nil, err
	}
	got, err := scanIDs(rows)
	if err != nil {
		return nil, err
	}
	m := make(map[int64]bool, len(got))
	for _, id := range got {
		m[id] = true
	}
	return m, nil
}
