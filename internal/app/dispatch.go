package app

import (
	"context"
	"sync"
	"time"

	"github.com/blueprint-media/blueprint/internal/dispatch"
	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/notify"
	"github.com/blueprint-media/blueprint/internal/outbox"
	"github.com/blueprint-media/blueprint/internal/search"
	"github.com/blueprint-media/blueprint/internal/social"
)

// routes is the dispatcher's route table: which service gets which events
// on which priority lane. It is the same in every process — it does not
// depend on the roles a process runs or on which services it enables —
// because any process's pump copies every event to every route. A route
// whose service runs nowhere keeps its copies in the DISPATCH stream until
// they expire (dispatch.RetainCopies).
func (a *App) routes() []dispatch.Route {
	md := a.cfg.Dispatch.MaxDeliver
	routes := []dispatch.Route{
		{Name: notify.ConsumerName, Lane: dispatch.P0, Capacity: 16, MaxDeliver: md, Kinds: notify.EventKinds()},
		{Name: "feed", Lane: dispatch.P1, MaxDeliver: md, Kinds: []string{"video.ready"}},
		{Name: search.Consumer, Lane: dispatch.P1, MaxDeliver: md, Kinds: search.EventKinds},
	}
	if a.cfg.Database.ShardCatalog != "" { // a cluster-wide setting, so still the same in every process
		routes = append(routes, dispatch.Route{Name: commentCountsRoute, Lane: dispatch.P1, MaxDeliver: md, Kinds: social.CountKinds})
	}
	return routes
}

// newDispatcher builds the dispatcher; services register their handlers
// with a.subscribe before startDispatcher runs it.
func (a *App) newDispatcher() error {
	d, err := dispatch.New(a.q, a.db, dispatch.Config{Routes: a.routes(), Workers: a.cfg.Dispatch.Workers, AckWait: a.cfg.Dispatch.AckWait},
		a.logger.With("component", "dispatch"), a.reg)
	if err != nil {
		return err
	}
	a.dispatch = d
	d.AdminRoutes(a.adminMux)
	return nil
}

// subscribe makes this process handle the route's events with h.
func (a *App) subscribe(route string, h outbox.Handler) error { return a.dispatch.Handle(route, h) }

func (a *App) startDispatcher(ctx context.Context) error {
	if err := a.dispatch.Start(ctx); err != nil {
		return err
	}
	a.onStop(a.dispatch.Stop)
	return nil
}

// admitUpload refuses new uploads while more than dispatch.max_job_backlog
// transcoding jobs wait (checked at most once a second).
func (a *App) admitUpload() func(context.Context) error {
	limit := uint64(a.cfg.Dispatch.MaxJobBacklog)
	if limit == 0 || a.q == nil {
		return nil
	}
	var mu sync.Mutex
	var depth uint64
	var checked time.Time
	return func(ctx context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(checked) > time.Second {
			if d, err := a.q.Depth(ctx); err == nil {
				depth, checked = d, time.Now()
			}
		}
		if depth > limit {
			return errs.E(errs.TooMany, "the platform is busy transcoding (%d jobs waiting); try the upload again in a minute", depth)
		}
		return nil
	}
}
