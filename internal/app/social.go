package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/blueprint-media/blueprint/internal/config"
	"github.com/blueprint-media/blueprint/internal/social"
	"github.com/blueprint-media/blueprint/internal/web"
)

// startSocial starts follows, feeds, comments and likes: the API and feed
// page on the frontends, and the feed consumer that fans uploads out to
// followers' feeds.
func (a *App) startSocial(ctx context.Context) error {
	cfg := a.cfg.Social
	logger := a.logger.With("component", "social")
	feed, activity, err := a.socialStores(ctx, logger, a.kvConfig())
	if err != nil {
		return err
	}
	svc := social.New(a.db, a.ids, social.Config{
		FanoutThreshold: cfg.FanoutThreshold, MaxCommentLength: cfg.MaxCommentLength, CommentInterval: cfg.CommentInterval,
		VideoChanged: a.media.Invalidate, Feed: feed, Activity: activity, Shards: a.shards,
	}, logger, a.reg)
	profiles, err := newTier(ctx, a, "profiles", svc.LoadProfile)
	if err != nil {
		return err
	}
	svc.CacheProfilesWith(profiles)
	pages, err := web.NewPages()
	if err != nil {
		return err
	}
	a.modules = append(a.modules, &social.Module{S: svc, Media: a.media, Pages: pages, Logger: a.logger, MaxBodyBytes: int64(a.cfg.Gateway.MaxBodyBytes)})
	if a.shards != nil {
		// Sharded comments and likes change their video's counts through
		// events.
		if err := a.subscribe(commentCountsRoute, svc.ApplyCounts); err != nil {
			return err
		}
	}
	return a.subscribe("feed", svc.FanOut)
}

// commentCountsRoute is the dispatcher route of social.ApplyCounts
// (only with database.shard_catalog).
const commentCountsRoute = "counts"

// socialStores picks where the materialised home feeds live (kv.feeds): a
// capped list per user in the key-value store (default), or the SQL
// feed_items table; and opens the activity log (kv.activity_length > 0)
// in the same key-value store. A process that finds the embedded
// key-value store locked by another process on the same data directory
// refuses to start: its feeds would differ from the other process's.
// Several frontend processes need a shared kv.url (Redis), or kv.feeds =
// sql with kv.activity_length = 0.
func (a *App) socialStores(ctx context.Context, logger *slog.Logger, kcfg config.KV) (social.FeedStore, *social.ActivityLog, error) {
	sqlFeed := social.SQLFeed{DB: a.db}
	if kcfg.Feeds == "sql" && kcfg.Activity == 0 {
		logger.Info("home feeds in the SQL store (kv.feeds = sql), no activity lists (kv.activity_length = 0)")
		return sqlFeed, nil, nil
	}
	kv, desc, err := a.openKV(ctx, kcfg)
	if errors.Is(err, errKVLocked) {
		return nil, nil, fmt.Errorf("%w: several frontend processes on one data directory need a shared kv.url (redis://… or redis-cluster://…), or kv.feeds: sql with kv.activity_length: 0", err)
	}
	if err != nil {
		return nil, nil, err
	}
	var activity *social.ActivityLog
	if kcfg.Activity > 0 {
		activity = &social.ActivityLog{KV: kv, MaxLen: kcfg.Activity}
	}
	if kcfg.Feeds == "sql" {
		logger.Info("home feeds in the SQL store (kv.feeds = sql); activity lists in the key-value store", "store", desc)
		return sqlFeed, activity, nil
	}
	logger.Info("home feeds in the key-value store", "store", desc, "feed_length", kcfg.FeedLength, "activity_length", kcfg.Activity)
	return &social.KVFeed{DB: a.db, KV: kv, MaxLen: kcfg.FeedLength}, activity, nil
}
