// Package social is Blueprint's social graph and its read models: follows,
// the home feed, comments and likes.
//
// The home feed is the hybrid of Twitter's "Timelines at Scale": when a
// video becomes ready, the feed consumer writes it into the feed of every
// follower of its creator (fan-out on write: one row per follower, cheap
// reads) — unless the creator has reached the fan-out threshold of
// followers, in which case nothing is written and the creator's videos are
// merged into each follower's feed when it is read (fan-out on read: O(1)
// writes for a creator with millions of followers). Either way a feed is
// exactly "the ready videos of the creators I follow, newest first"; the
// property test checks that both paths and any mix give the same pages.
//
// A creator switches to merge-on-read once and for good (user_stats.
// read_merge): items written before the switch stay in feeds, items after
// it are merged, and the union de-duplicates. Following a fan-out-on-write
// creator back-fills their ready videos into the new follower's feed in the
// follow's transaction; unfollowing removes them (SQLFeed) or reads filter
// them out (KVFeed).
//
// The written items live in a FeedStore: capped per-user lists in the
// key-value store (KVFeed, the platform's default) or the feed_items table
// (SQLFeed, the reference). An optional ActivityLog keeps each user's
// recent follows, likes and comments in the key-value store.
//
// Every change writes its event in the same transaction (user.followed,
// user.unfollowed, comment.created, video.liked) through the outbox.
// Counters (followers, likes, comments) change in the transaction that
// inserts or deletes the row they count, so they never drift from the rows,
// whatever the concurrency: the store serialises writers. Sharded comments
// and likes (Config.Shards) are the exception: the counts in the main
// database follow their events (shardcomments.go).
package social

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/blueprint-media/blueprint/internal/cache/tier"
	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/idgen"
	"github.com/blueprint-media/blueprint/internal/outbox"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/sqlstore/shard"
)

// Config tunes the service.
type Config struct {
	// FanoutThreshold is the follower count from which a creator's uploads
	// are merged at read time. 0 merges every creator at read time.
	FanoutThreshold int
	// MaxCommentLength is the longest comment body, in characters.
	MaxCommentLength int
	// CommentInterval is the shortest time between two comments by one user.
	CommentInterval time.Duration
	// VideoChanged, when set, is called after a like or comment changed a
	// video's counts (the media cache drops its copy).
	VideoChanged func(ctx context.Context, video int64)
	// Feed keeps the materialised feeds; nil is SQLFeed on the service's
	// database.
	Feed FeedStore
	// Activity, when set, records each user's follows, likes and comments
	// in a capped list (GET /api/v1/activity).
	Activity *ActivityLog
	// Shards, when set, keeps comments and likes on the shard clusters it
	// routes to (database.shard_catalog; see shardcomments.go) instead of
	// the service's database.
	Shards *shard.Router
}

// IDs issues entity IDs (idgen.Generator does).
type IDs interface {
	Next(shard int) (int64, error)
}

// Service implements follows, feeds, comments and likes.
type Service struct {
	db     *sqlstore.DB
	ids    IDs
	cfg    Config
	logger *slog.Logger
	now    func() time.Time

	mu          sync.Mutex
	lastComment map[int64]time.Time // per user, for CommentInterval

	fanoutRows *prometheus.CounterVec
	profiles   *tier.Tier[Stats] // follow counts by user ID; nil: not cached
}

// CacheProfilesWith caches users' follow counts in t (loaded with
// LoadProfile); follows and unfollows invalidate them in every process.
func (s *Service) CacheProfilesWith(t *tier.Tier[Stats]) { s.profiles = t }

// LoadProfile reads a user's follow counts: the loader of the profile
// cache (the key is the user ID).
func (s *Service) LoadProfile(ctx context.Context, key string) (Stats, error) {
	user, err := strconv.ParseInt(key, 10, 64)
	if err != nil {
		return Stats{}, tier.ErrNotFound
	}
	st, err := s.counts(ctx, user)
	if errs.KindOf(err) == errs.NotFound {
		return st, tier.ErrNotFound
	}
	return st, err
}

func (s *Service) changedProfiles(ctx context.Context, users ...int64) {
	if s.profiles == nil {
		return
	}
	for _, u := range users {
		if err := s.profiles.Delete(ctx, idStr(u)); err != nil && s.logger != nil {
			s.logger.Warn("social: profile cache invalidation failed; the entry expires with its TTL", "user", u, "err", err)
		}
	}
}

func (s *Service) changedVideo(ctx context.Context, video int64) {
	if s.cfg.VideoChanged != nil {
		s.cfg.VideoChanged(ctx, video)
	}
}

// New returns the service. ids may be nil for processes that only run the
// feed consumer.
func New(db *sqlstore.DB, ids IDs, cfg Config, logger *slog.Logger, reg prometheus.Registerer) *Service {
	if cfg.MaxCommentLength <= 0 {
		cfg.MaxCommentLength = 2000
	}
	if cfg.Feed == nil {
		cfg.Feed = SQLFeed{DB: db}
	}
	s := &Service{db: db, ids: ids, cfg: cfg, logger: logger, now: time.Now, lastComment: map[int64]time.Time{},
		fanoutRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "feed", Name: "fanout_total",
			Help: "Uploads handled by the feed consumer, by path (write: one row per follower; read: merged at read time).",
		}, []string{"path"}),
	}
	if reg != nil {
		reg.MustRegister(s.fanoutRows)
	}
	return s
}

func idStr(id int64) string { return strconv.FormatInt(id, 10) }

// ---- follows ----

// Stats are a user's follow counts, and whether the viewer follows them.
type Stats struct {
	UserID    int64 `json:"user_id,string"`
	Followers int64 `json:"followers"`
	Following int64 `json:"following"`
	Followed  bool  `json:"followed_by_me"`
	ReadMerge bool  `json:"read_merge"` // feeds merge this creator's uploads at read time
}

func userExists(ctx context.Context, tx *sql.Tx, id int64) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM users WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return errs.E(errs.NotFound, "no user with id %d", id)
	}
	return err
}

// Follow makes follower follow followee. Following twice is not an error
// and changes nothing.
func (s *Service) Follow(ctx context.Context, follower, followee int64) error {
	if follower == followee {
		return errs.E(errs.Invalid, "you cannot follow yourself")
	}
	followed := false
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		followed = false
		if err := userExists(ctx, tx, followee); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO follows(follower_id, followee_id, created_at) VALUES (?, ?, ?)`,
			follower, followee, s.now().Unix())
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // already following
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO user_stats(user_id, following) VALUES (?, 1)
			ON CONFLICT(user_id) DO UPDATE SET following = user_stats.following + 1`, follower); err != nil {
			return err
		}
		var followers int64
		var readMerge bool
		if err := tx.QueryRowContext(ctx, `INSERT INTO user_stats(user_id, followers, read_merge) VALUES (?1, 1, CASE WHEN ?2 <= 1 THEN 1 ELSE 0 END)
			ON CONFLICT(user_id) DO UPDATE SET followers = user_stats.followers + 1,
				read_merge = CASE WHEN user_stats.read_merge = 1 OR user_stats.followers + 1 >= ?2 THEN 1 ELSE 0 END
			RETURNING followers, read_merge`, followee, s.cfg.FanoutThreshold).Scan(&followers, &readMerge); err != nil {
			return err
		}
		if !readMerge {
			// Back-fill: the creator's ready videos join the new follower's feed.
			if err := s.cfg.Feed.Followed(ctx, tx, follower, followee); err != nil {
				return err
			}
		}
		followed = true
		return outbox.Insert(ctx, tx, "user.followed", followee, map[string]string{"follower_id": idStr(follower), "followee_id": idStr(followee)})
	})
	s.changedProfiles(ctx, follower, followee)
	if err != nil {
		return fmt.Errorf("social: follow: %w", err)
	}
	if followed {
		s.record(ctx, follower, "follow", followee)
	}
	return nil
}

// Unfollow undoes Follow; unfollowing someone you do not follow is not an
// error.
func (s *Service) Unfollow(ctx context.Context, follower, followee int64) error {
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM follows WHERE follower_id = ? AND followee_id = ?`, follower, followee)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE user_stats SET following = following - 1 WHERE user_id = ?`, follower); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE user_stats SET followers = followers - 1 WHERE user_id = ?`, followee); err != nil {
			return err
		}
		if err := s.cfg.Feed.Unfollowed(ctx, tx, follower, followee); err != nil {
			return err
		}
		return outbox.Insert(ctx, tx, "user.unfollowed", followee, map[string]string{"follower_id": idStr(follower), "followee_id": idStr(followee)})
	})
	s.changedProfiles(ctx, follower, followee)
	if err != nil {
		return fmt.Errorf("social: unfollow: %w", err)
	}
	return nil
}

// Stats returns user's follow counts as viewer sees them (viewer 0 =
// anonymous). The counts come from the profile cache when there is one.
func (s *Service) Stats(ctx context.Context, user, viewer int64) (Stats, error) {
	var st Stats
	var err error
	if s.profiles != nil {
		st, err = s.profiles.Get(ctx, idStr(user))
		if errors.Is(err, tier.ErrNotFound) {
			err = errs.E(errs.NotFound, "no user with id %d", user)
		}
	} else {
		st, err = s.counts(ctx, user)
	}
	if err != nil {
		return Stats{UserID: user}, err
	}
	if viewer != 0 {
		var one int
		err := s.db.Read(ctx).QueryRowContext(ctx, `SELECT 1 FROM follows WHERE follower_id = ? AND followee_id = ?`, viewer, user).Scan(&one)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return st, fmt.Errorf("social: stats: %w", err)
		}
		st.Followed = err == nil
	}
	return st, nil
}

// counts reads user's follow counts from the database.
func (s *Service) counts(ctx context.Context, user int64) (Stats, error) {
	st := Stats{UserID: user}
	var exists int
	if err := s.db.Read(ctx).QueryRowContext(ctx, `SELECT 1 FROM users WHERE id = ?`, user).Scan(&exists); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return st, errs.E(errs.NotFound, "no user with id %d", user)
		}
		return st, fmt.Errorf("social: stats: %w", err)
	}
	err := s.db.Read(ctx).QueryRowContext(ctx, `SELECT followers, following, read_merge FROM user_stats WHERE user_id = ?`, user).
		Scan(&st.Followers, &st.Following, &st.ReadMerge)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return st, fmt.Errorf("social: stats: %w", err)
	}
	return st, nil
}

// Followers returns up to limit follower IDs of user with IDs below
// before (0 = from the top), newest follower ID first.
func (s *Service) Followers(ctx context.Context, user, before int64, limit int) ([]int64, error) {
	if before == 0 {
		before = 1<<63 - 1
	}
	rows, err := s.db.Read(ctx).QueryContext(ctx, `SELECT follower_id FROM follows WHERE followee_id = ? AND follower_id < ?
		ORDER BY follower_id DESC LIMIT ?`, user, before, limit)
	if err != nil {
		return nil, fmt.Errorf("social: followers: %w", err)
	}
	return scanIDs(rows)
}

func scanIDs(rows *sql.Rows) ([]int64, error) {
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// ---- feed ----

// FanOut is the feed consumer's handler for video.ready: it writes the
// video into its creator's followers' feeds, or leaves it to be merged at
// read time when the creator is above the threshold. It runs in the
// consumer's transaction (outbox.Subscribe), so it happens once per event.
func (s *Service) FanOut(ctx context.Context, tx *sql.Tx, e outbox.Event) error {
	var creator int64
	var status string
	err := tx.QueryRowContext(ctx, `SELECT user_id, status FROM videos WHERE id = ?`, e.SubjectID).Scan(&creator, &status)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && status != "ready") {
		return nil // gone, or not ready after all: nothing to show
	}
	if err != nil {
		return err
	}
	// An upsert rather than a SELECT: on PostgreSQL it locks the creator's
	// stats row, which a concurrent Follow of this creator also writes, so
	// the fan-out waits for that follow to commit and then sees it (its
	// back-fill could not see this video if it ran first). SQLite
	// serialises writers anyway.
	var followers int64
	var readMerge bool
	err = tx.QueryRowContext(ctx, `INSERT INTO user_stats(user_id) VALUES (?) ON CONFLICT(user_id) DO UPDATE SET read_merge = user_stats.read_merge
		RETURNING followers, read_merge`, creator).Scan(&followers, &readMerge)
	if err != nil {
		return err
	}
	if readMerge || followers >= int64(s.cfg.FanoutThreshold) {
		if !readMerge {
			if _, err := tx.ExecContext(ctx, `INSERT INTO user_stats(user_id, read_merge) VALUES (?, 1)
				ON CONFLICT(user_id) DO UPDATE SET read_merge = 1`, creator); err != nil {
				return err
			}
		}
		s.fanoutRows.WithLabelValues("read").Inc()
		return nil
	}
	if err := s.cfg.Feed.FanOut(ctx, tx, e.SubjectID, creator); err != nil {
		return err
	}
	s.fanoutRows.WithLabelValues("write").Inc()
	return nil
}

// Feed returns up to limit video IDs of user's home feed below the cursor
// before (0 = from the newest), newest first: the materialised items and
// the ready videos of followed merge-on-read creators, de-duplicated.
func (s *Service) Feed(ctx context.Context, user, before int64, limit int) ([]int64, error) {
	if limit < 1 || limit > 100 {
		return nil, errs.E(errs.Invalid, "limit must be 1..100")
	}
	if before <= 0 {
		before = 1<<63 - 1
	}
	ids, err := s.cfg.Feed.Page(ctx, user, before, limit)
	if err != nil {
		return nil, fmt.Errorf("social: feed: %w", err)
	}
	return ids, nil
}

// ---- likes ----

func videoOwner(ctx context.Context, tx interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, video int64) (int64, error) {
	var owner int64
	var status string
	err := tx.QueryRowContext(ctx, `SELECT user_id, status FROM videos WHERE id = ?`, video).Scan(&owner, &status)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && status != "ready") {
		return 0, errs.E(errs.NotFound, "no video with id %d", video)
	}
	return owner, err
}

// Like records user's like of video and returns the video's like count.
// Liking twice counts once.
func (s *Service) Like(ctx context.Context, user, video int64) (int64, error) {
	return s.setLike(ctx, user, video, true)
}

// Unlike removes user's like, if any, and returns the like count.
func (s *Service) Unlike(ctx context.Context, user, video int64) (int64, error) {
	return s.setLike(ctx, user, video, false)
}

func (s *Service) setLike(ctx context.Context, user, video int64, like bool) (int64, error) {
	var count int64
	liked := false
	var err error
	if s.cfg.Shards != nil {
		count, liked, err = s.setShardedLike(ctx, user, video, like)
		if err != nil {
			return 0, fmt.Errorf("social: like: %w", err)
		}
		if liked {
			s.record(ctx, user, "like", video)
		}
		return count, nil
	}
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		liked = false
		owner, err := videoOwner(ctx, tx, video)
		if err != nil {
			return err
		}
		var res sql.Result
		if like {
			res, err = tx.ExecContext(ctx, `INSERT OR IGNORE INTO likes(shard, video_id, user_id, created_at) VALUES (?, ?, ?, ?)`, idgen.Shard(video), video, user, s.now().Unix())
		} else {
			res, err = tx.ExecContext(ctx, `DELETE FROM likes WHERE shard = ? AND video_id = ? AND user_id = ?`, idgen.Shard(video), video, user)
		}
		if err != nil {
			return err
		}
		changed, _ := res.RowsAffected()
		delta := changed
		if !like {
			delta = -changed
		}
		if err := tx.QueryRowContext(ctx, `UPDATE videos SET likes = likes + ? WHERE id = ? RETURNING likes`, delta, video).Scan(&count); err != nil {
			return err
		}
		if like && changed == 1 {
			liked = true
			return outbox.Insert(ctx, tx, "video.liked", video, map[string]string{"user_id": idStr(user), "video_owner_id": idStr(owner)})
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("social: like: %w", err)
	}
	s.changedVideo(ctx, video)
	if liked {
		s.record(ctx, user, "like", video)
	}
	return count, nil
}

// Liked reports whether user likes video.
func (s *Service) Liked(ctx context.Context, user, video int64) (bool, error) {
	db := s.db.Read(ctx)
	if s.cfg.Shards != nil {
		var err error
		if db, err = s.shardReader(ctx, video); err != nil {
			return false, err
		}
	}
	var one int
	err := db.QueryRowContext(ctx, `SELECT 1 FROM likes WHERE shard = ? AND video_id = ? AND user_id = ?`, idgen.Shard(video), video, user).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// ---- comments ----

// Comment is one comment on a video.
type Comment struct {
	ID        int64     `json:"id,string"`
	VideoID   int64     `json:"video_id,string"`
	UserID    int64     `json:"user_id,string"`
	Username  string    `json:"username"`
	Body      string    `json:"body"`
	CreatedAt time.Time `json:"created_at"`
}

// AddComment posts a comment by user on video.
func (s *Service) AddComment(ctx context.Context, user, video int64, body string) (Comment, error) {
	body = strings.TrimSpace(body)
	switch {
	case body == "":
		return Comment{}, errs.E(errs.Invalid, "comment is empty")
	case !utf8.ValidString(body):
		return Comment{}, errs.E(errs.Invalid, "comment is not valid UTF-8")
	case utf8.RuneCountInString(body) > s.cfg.MaxCommentLength:
		return Comment{}, errs.E(errs.Invalid, "comment is longer than %d characters", s.cfg.MaxCommentLength)
	}
	if s.ids == nil {
		return Comment{}, errors.New("social: no ID generator in this process")
	}
	now := s.now()
	s.mu.Lock()
	if last, ok := s.lastComment[user]; ok && now.Sub(last) < s.cfg.CommentInterval {
		s.mu.Unlock()
		return Comment{}, errs.E(errs.TooMany, "wait a moment before commenting again")
	}
	s.lastComment[user] = now
	if len(s.lastComment) > 100_000 { // bounded: forget the old entries
		for u, t := range s.lastComment {
			if now.Sub(t) >= s.cfg.CommentInterval {
				delete(s.lastComment, u)
			}
		}
	}
	s.mu.Unlock()
	id, err := s.ids.Next(idgen.Shard(video))
	if err != nil {
		return Comment{}, err
	}
	c := Comment{ID: id, VideoID: video, UserID: user, Body: body, CreatedAt: now.UTC().Truncate(time.Second)}
	if s.cfg.Shards != nil {
		if err := s.addShardedComment(ctx, &c); err != nil {
			return Comment{}, fmt.Errorf("social: comment: %w", err)
		}
		s.record(ctx, user, "comment", video)
		return c, nil
	}
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		owner, err := videoOwner(ctx, tx, video)
		if err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT username FROM users WHERE id = ?`, user).Scan(&c.Username); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO comments(shard, id, video_id, user_id, body, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			idgen.Shard(c.ID), c.ID, video, user, body, c.CreatedAt.Unix()); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE videos SET comments = comments + 1 WHERE id = ?`, video); err != nil {
			return err
		}
		return outbox.Insert(ctx, tx, "comment.created", video, map[string]string{
			"comment_id": idStr(c.ID), "video_id": idStr(video), "user_id": idStr(user), "video_owner_id": idStr(owner), "body": body,
		})
	})
	if err != nil {
		return Comment{}, fmt.Errorf("social: comment: %w", err)
	}
	s.changedVideo(ctx, video)
	s.record(ctx, user, "comment", video)
	return c, nil
}

// DeleteComment deletes a comment; only its author or the video's owner
// may.
func (s *Service) DeleteComment(ctx context.Context, user, id int64) error {
	if s.cfg.Shards != nil {
		if err := s.deleteShardedComment(ctx, user, id); err != nil {
			return fmt.Errorf("social: delete comment: %w", err)
		}
		return nil
	}
	var video int64
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var author, owner int64
		err := tx.QueryRowContext(ctx, `SELECT c.user_id, c.video_id, v.user_id FROM comments c JOIN videos v ON v.id = c.video_id WHERE c.shard = ? AND c.id = ?`,
			idgen.Shard(id), id).Scan(&author, &video, &owner)
		if errors.Is(err, sql.ErrNoRows) {
			return errs.E(errs.NotFound, "no comment with id %d", id)
		}
		if err != nil {
			return err
		}
		if user != author && user != owner {
			return errs.E(errs.Forbidden, "only the author or the video's owner can delete a comment")
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM comments WHERE shard = ? AND id = ?`, idgen.Shard(id), id); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE videos SET comments = comments - 1 WHERE id = ?`, video)
		return err
	})
	if err != nil {
		return fmt.Errorf("social: delete comment: %w", err)
	}
	s.changedVideo(ctx, video)
	return nil
}

// Comments returns up to limit comments on video below the cursor before
// (0 = newest first).
func (s *Service) Comments(ctx context.Context, video, before int64, limit int) ([]Comment, error) {
	if limit < 1 || limit > 100 {
		return nil, errs.E(errs.Invalid, "limit must be 1..100")
	}
	if before <= 0 {
		before = 1<<63 - 1
	}
	if s.cfg.Shards != nil {
		return s.shardedComments(ctx, video, before, limit)
	}
	rows, err := s.db.Read(ctx).QueryContext(ctx, `SELECT c.id, c.video_id, c.user_id, u.username, c.body, c.created_at
		FROM comments c JOIN users u ON u.id = c.user_id WHERE c.video_id = ? AND c.id < ? ORDER BY c.id DESC LIMIT ?`, video, before, limit)
	if err != nil {
		return nil, fmt.Errorf("social: comments: %w", err)
	}
	defer rows.Close()
	out := []Comment{}
	for rows.Next() {
		var c Comment
		var created int64
		if err := rows.Scan(&c.ID, &c.VideoID, &c.UserID, &c.Username, &c.Body, &created); err != nil {
			return nil, fmt.Errorf("social: comments: %w", err)
		}
		c.CreatedAt = time.Unix(created, 0).UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}
