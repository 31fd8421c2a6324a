package app

import (
	"context"

	"github.com/blueprint-media/blueprint/internal/social"
	"github.com/blueprint-media/blueprint/internal/web"
)

// startSocial starts follows, feeds, comments and likes: the API and feed
// page on the frontends, and the feed consumer that fans uploads out to
// followers' feeds.
func (a *App) startSocial(ctx context.Context) error {
	cfg := a.cfg.Social
	svc := social.New(a.db, a.ids, social.Config{
		FanoutThreshold: cfg.FanoutThreshold, MaxCommentLength: cfg.MaxCommentLength, CommentInterval: cfg.CommentInterval,
		VideoChanged: a.media.Invalidate,
	}, a.logger.With("component", "social"), a.reg)
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
	return a.subscribe("feed", svc.FanOut)
}
