package social

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/idgen"
	"github.com/blueprint-media/blueprint/internal/outbox"
	"github.com/blueprint-media/blueprint/internal/sqlstore/shard"
)

// Sharded comments and likes (Config.Shards, database.shard_catalog).
//
// A comment's ID is issued in its video's logical shard, so the ID alone
// names the shard and, through the shard map, the PostgreSQL cluster that
// holds the row; a like lives in its video's shard. Likes work as comments
// do below (video.liked / video.unliked events); the count returned to the
// caller is the video's row in like_counts on the same cluster (likeCount). The comment and its event (comment.created or
// comment.deleted) commit together on that cluster; the cluster's own
// outbox relay publishes the event. The video and the author stay in the
// main database: they are read there before the write, and the video's
// comment count follows the events (ApplyCounts, exactly once through the
// inbox) instead of changing in the comment's transaction — it converges
// within the relay's and the dispatcher's delay. A comment list reads one
// cluster; RecentComments reads all of them (shard.Newest) and merges.

// readyOwner returns the owner of video, read in the main database,
// NotFound unless the video is ready.
func (s *Service) readyOwner(ctx context.Context, video int64) (int64, error) {
	return videoOwner(ctx, s.db.R, video)
}

// shardReader returns the pool to read video's shard from.
func (s *Service) shardReader(ctx context.Context, video int64) (*sql.DB, error) {
	h, err := s.cfg.Shards.ForShard(idgen.Shard(video))
	if err != nil {
		return nil, err
	}
	return h.Reader(ctx, 0)
}

// setShardedLike sets or clears user's like of video on the video's
// shard and returns the video's like count there (all of a video's likes
// share its shard) and whether this call added the like.
func (s *Service) setShardedLike(ctx context.Context, user, video int64, like bool) (count int64, liked bool, err error) {
	owner, err := s.readyOwner(ctx, video)
	if err != nil {
		return 0, false, err
	}
	h, err := s.cfg.Shards.ForShard(idgen.Shard(video))
	if err != nil {
		return 0, false, err
	}
	_, err = h.Write(ctx, func(tx *sql.Tx) error {
		liked = false
		var res sql.Result
		var err error
		if like {
			res, err = tx.ExecContext(ctx, `INSERT OR IGNORE INTO likes(shard, video_id, user_id, created_at) VALUES (?, ?, ?, ?)`, h.Shard(), video, user, s.now().Unix())
		} else {
			res, err = tx.ExecContext(ctx, `DELETE FROM likes WHERE shard = ? AND video_id = ? AND user_id = ?`, h.Shard(), video, user)
		}
		if err != nil {
			return err
		}
		changed, _ := res.RowsAffected()
		delta := changed
		if !like {
			delta = -changed
		}
		if count, err = likeCount(ctx, tx, h.Shard(), video, delta); err != nil {
			return err
		}
		switch {
		case changed == 1 && like:
			liked = true
			return outbox.Insert(ctx, tx, "video.liked", video, map[string]string{"user_id": idStr(user), "video_owner_id": idStr(owner)})
		case changed == 1:
			return outbox.Insert(ctx, tx, "video.unliked", video, map[string]string{"user_id": idStr(user)})
		}
		return nil
	})
	return count, liked, err
}

// likeCount adds delta to video's row in like_counts and returns the
// count. A video without a row yet (its first like or unlike since
// sharding, or likes moved in by db migrate --to-shards) gets one from
// COUNT(*) of its likes, which already include this transaction's change;
// a concurrent transaction that created the row first is then added to.
func likeCount(ctx context.Context, tx *sql.Tx, shard int, video, delta int64) (int64, error) {
	var n int64
	err := tx.QueryRowContext(ctx, `UPDATE like_counts SET likes = likes + ? WHERE shard = ? AND video_id = ? RETURNING likes`, delta, shard, video).Scan(&n)
	if !errors.Is(err, sql.ErrNoRows) {
		return n, err
	}
	err = tx.QueryRowContext(ctx, `INSERT INTO like_counts(shard, video_id, likes)
		SELECT ?, ?, COUNT(*) FROM likes WHERE shard = ? AND video_id = ?
		ON CONFLICT (shard, video_id) DO NOTHING RETURNING likes`, shard, video, shard, video).Scan(&n)
	if !errors.Is(err, sql.ErrNoRows) {
		return n, err
	}
	err = tx.QueryRowContext(ctx, `UPDATE like_counts SET likes = likes + ? WHERE shard = ? AND video_id = ? RETURNING likes`, delta, shard, video).Scan(&n)
	return n, err
}

// addShardedComment writes c (ID set) on its shard's cluster.
func (s *Service) addShardedComment(ctx context.Context, c *Comment) error {
	owner, err := s.readyOwner(ctx, c.VideoID)
	if err != nil {
		return err
	}
	if err := s.db.R.QueryRowContext(ctx, `SELECT username FROM users WHERE id = ?`, c.UserID).Scan(&c.Username); err != nil {
		return err
	}
	h, err := s.cfg.Shards.For(c.ID)
	if err != nil {
		return err
	}
	// Write retries fn on the new owner when a move fenced the old one:
	// the failed transaction rolled back, so the comment is written once.
	_, err = h.Write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO comments(shard, id, video_id, user_id, body, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			h.Shard(), c.ID, c.VideoID, c.UserID, c.Body, c.CreatedAt.Unix()); err != nil {
			return err
		}
		return outbox.Insert(ctx, tx, "comment.created", c.VideoID, map[string]string{
			"comment_id": idStr(c.ID), "video_id": idStr(c.VideoID), "user_id": idStr(c.UserID), "video_owner_id": idStr(owner), "body": c.Body,
		})
	})
	return err
}

// deleteShardedComment deletes comment id if user wrote it or owns its
// video.
func (s *Service) deleteShardedComment(ctx context.Context, user, id int64) error {
	h, err := s.cfg.Shards.For(id)
	if err != nil {
		return err
	}
	notFound := errs.E(errs.NotFound, "no comment with id %d", id)
	var author, video, owner int64
	_, err = h.Write(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT user_id, video_id FROM comments WHERE shard = ? AND id = ? FOR UPDATE`, h.Shard(), id).Scan(&author, &video)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound
		}
		if err != nil {
			return err
		}
		if err := s.db.R.QueryRowContext(ctx, `SELECT user_id FROM videos WHERE id = ?`, video).Scan(&owner); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if user != author && user != owner {
			return errs.E(errs.Forbidden, "only the author or the video's owner can delete a comment")
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM comments WHERE shard = ? AND id = ?`, h.Shard(), id); err != nil {
			return err
		}
		return outbox.Insert(ctx, tx, "comment.deleted", video, map[string]string{"comment_id": idStr(id), "video_id": idStr(video)})
	})
	return err
}

// shardedComments reads a page of video's comments from its shard's
// cluster (a replica when the cluster has one) and the authors' names from
// the main database.
func (s *Service) shardedComments(ctx context.Context, video, before int64, limit int) ([]Comment, error) {
	db, err := s.shardReader(ctx, video)
	if err != nil {
		return nil, fmt.Errorf("social: comments: %w", err)
	}
	out, err := scanComments(db.QueryContext(ctx, `SELECT id, video_id, user_id, body, created_at FROM comments
		WHERE shard = ? AND video_id = ? AND id < ? ORDER BY id DESC LIMIT ?`, idgen.Shard(video), video, before, limit))
	if err != nil {
		return nil, fmt.Errorf("social: comments: %w", err)
	}
	return out, s.fillUsernames(ctx, out)
}

// RecentComments returns the newest limit comments on the whole site,
// newest first: one query on the database, or, with shards, one per
// cluster (each limited to the shards it owns) merged by ID.
func (s *Service) RecentComments(ctx context.Context, limit int) ([]Comment, error) {
	if limit < 1 || limit > 100 {
		return nil, errs.E(errs.Invalid, "limit must be 1..100")
	}
	var out []Comment
	var err error
	if s.cfg.Shards == nil {
		out, err = scanComments(s.db.Read(ctx).QueryContext(ctx, `SELECT id, video_id, user_id, body, created_at FROM comments ORDER BY id DESC LIMIT ?`, limit))
	} else {
		out, err = shard.Newest(ctx, s.cfg.Shards, limit, func(ctx context.Context, c shard.ClusterView, k int) ([]Comment, error) {
			return scanComments(c.DB.QueryContext(ctx, `SELECT id, video_id, user_id, body, created_at FROM comments
				WHERE shard = ANY($1) ORDER BY id DESC LIMIT $2`, c.Shards, k))
		}, func(c Comment) int64 { return c.ID })
	}
	if err != nil {
		return nil, fmt.Errorf("social: recent comments: %w", err)
	}
	if out == nil {
		out = []Comment{}
	}
	return out, s.fillUsernames(ctx, out)
}

// scanComments reads rows of (id, video_id, user_id, body, created_at).
func scanComments(rows *sql.Rows, err error) ([]Comment, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Comment{}
	for rows.Next() {
		var c Comment
		var created int64
		if err := rows.Scan(&c.ID, &c.VideoID, &c.UserID, &c.Body, &created); err != nil {
			return nil, err
		}
		c.CreatedAt = time.Unix(created, 0).UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}

// fillUsernames sets the authors' names from the main database.
func (s *Service) fillUsernames(ctx context.Context, cs []Comment) error {
	if len(cs) == 0 {
		return nil
	}
	args := make([]any, len(cs))
	for i, c := range cs {
		args[i] = c.UserID
	}
	rows, err := s.db.Read(ctx).QueryContext(ctx, `SELECT id, username FROM users WHERE id IN (?`+strings.Repeat(", ?", len(cs)-1)+`)`, args...)
	if err != nil {
		return fmt.Errorf("social: comment authors: %w", err)
	}
	defer rows.Close()
	names := map[int64]string{}
	for rows.Next() {
		var id int64
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			return fmt.Errorf("social: comment authors: %w", err)
		}
		names[id] = name
	}
	for i := range cs {
		cs[i].Username = names[cs[i].UserID]
	}
	return rows.Err()
}

// CountKinds are the events ApplyCounts applies.
var CountKinds = []string{"comment.created", "comment.deleted", "video.liked", "video.unliked"}

// ApplyCounts keeps videos.comments and videos.likes in the main database
// in step with sharded comments and likes (an outbox.Handler for
// CountKinds, run exactly once per event by the inbox). Only for
// Config.Shards: without shards the row's own transaction changes the
// count.
func (s *Service) ApplyCounts(ctx context.Context, tx *sql.Tx, e outbox.Event) error {
	var q string
	switch e.Kind {
	case "comment.created":
		q = `UPDATE videos SET comments = comments + 1 WHERE id = ?`
	case "comment.deleted":
		q = `UPDATE videos SET comments = comments - 1 WHERE id = ?`
	case "video.liked":
		q = `UPDATE videos SET likes = likes + 1 WHERE id = ?`
	case "video.unliked":
		q = `UPDATE videos SET likes = likes - 1 WHERE id = ?`
	default:
		return nil
	}
	if _, err := tx.ExecContext(ctx, q, e.SubjectID); err != nil {
		return fmt.Errorf("social: %s count of video %d: %w", e.Kind, e.SubjectID, err)
	}
	outbox.AfterCommit(ctx, func() { s.changedVideo(context.WithoutCancel(ctx), e.SubjectID) })
	return nil
}
