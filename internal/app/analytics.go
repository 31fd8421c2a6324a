package app

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/blueprint-media/blueprint/internal/account"
	"github.com/blueprint-media/blueprint/internal/analytics"
	"github.com/blueprint-media/blueprint/internal/lock"
	"github.com/blueprint-media/blueprint/internal/media"
	"github.com/blueprint-media/blueprint/internal/web"
)

// startAnalytics starts the analytics service: the event ingest and the
// analytics API on every frontend, the creator dashboard at /studio, the
// operator view at /analytics on the admin listener, and — in the process
// that leads "singleton/analytics" — the rollup consumer and the Parquet
// export of raw events.
func (a *App) startAnalytics(ctx context.Context) error {
	c := a.cfg.Analytics
	if !c.Enabled {
		return nil
	}
	secret, err := a.secret()
	if err != nil {
		return err
	}
	lookup := func(ctx context.Context, id int64) (analytics.VideoInfo, error) {
		v, err := a.media.Get(ctx, id)
		if err != nil {
			return analytics.VideoInfo{}, err
		}
		return analytics.VideoInfo{CreatorID: v.UserID, Title: v.Title, Duration: v.Duration, Ready: v.Status == media.StatusReady}, nil
	}
	svc, err := analytics.New(analytics.Config{
		MaxBatchEvents: c.MaxBatchEvents, MaxBatchBytes: int64(c.MaxBatchBytes), HeartbeatSeconds: c.HeartbeatSeconds,
		ViewWindow: c.ViewWindow, SessionTTL: c.SessionTTL, SessionRate: c.SessionRate, SessionBurst: c.SessionBurst,
		BotUserAgents: append([]string(nil), c.BotUserAgents...), DuplicateWindow: c.DuplicateWindow, StreamMaxAge: c.StreamMaxAge,
		FetchBatch: c.FetchBatch, ExportInterval: c.ExportInterval, ExportMaxEvents: c.ExportMaxEvents, MaxPosition: c.MaxPosition,
		SecureCookie: strings.HasPrefix(a.cfg.PublicURL, "https://"),
		// Counted views (one per viewing session: reloads, bots and
		// replays excluded) reach the watch pages through the media
		// service's write-back view counter.
		OnViews: func(ctx context.Context, views map[int64]int64) {
			for id, n := range views {
				a.media.AddViews(ctx, id, n)
			}
		},
	}, a.db, a.q.JetStream(), a.blobs, lookup, secret, a.logger.With("component", "analytics"), a.reg)
	if err != nil {
		return err
	}
	if err := svc.Start(ctx); err != nil {
		return err
	}
	a.onStop(svc.Stop)
	pages, err := web.NewPages()
	if err != nil {
		return err
	}
	a.modules = append(a.modules, &analyticsModule{svc: svc, pages: pages})
	svc.AdminRoutes(a.adminMux, web.Static())

	// One process at a time rolls the stream up and exports it: the
	// rollup's watermark assumes a single writer, and SQLite has one.
	elector := &lock.Elector{Locker: a.locker, Name: "singleton/analytics"}
	a.bg.Go(func() {
		elector.Run(a.bgCtx, func(ctx context.Context, lease *lock.Lease) {
			a.logger.Info("leading the analytics rollup and export", "token", lease.Token)
			var jobs sync.WaitGroup
			jobs.Go(func() {
				for ctx.Err() == nil {
					if err := svc.RunRollup(ctx); err != nil && ctx.Err() == nil {
						a.logger.Warn("analytics rollup stopped; restarting", "err", err)
						select {
						case <-ctx.Done():
						case <-time.After(time.Second):
						}
					}
				}
			})
			jobs.Go(func() { svc.RunExport(ctx) })
			jobs.Wait()
		})
	})
	return nil
}

// analyticsModule serves the analytics API and the creator dashboard on
// the frontends.
type analyticsModule struct {
	svc   *analytics.Service
	pages *web.Pages
}

func (m *analyticsModule) Routes(mux *http.ServeMux, instance string) {
	m.svc.Routes(mux, instance)
	mux.HandleFunc("GET /studio", func(w http.ResponseWriter, r *http.Request) {
		id := account.FromContext(r.Context())
		if id.UserID == 0 {
			http.Redirect(w, r, "/login?next=/studio", http.StatusSeeOther)
			return
		}
		m.pages.Render(w, http.StatusOK, "studio", struct{ User account.Identity }{id})
	})
}
