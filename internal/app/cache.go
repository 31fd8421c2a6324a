package app

import (
	"context"
	"fmt"

	"github.com/blueprint-media/blueprint/internal/cache/redisl2"
	"github.com/blueprint-media/blueprint/internal/cache/tier"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// tierStats is what the status page shows of each cache.
type tierStats interface {
	Name() string
	Stats() tier.Stats
}

// CacheStatus is one cache on the status page.
type CacheStatus struct {
	Name          string  `json:"name"`
	HitRatio      float64 `json:"hit_ratio"`
	Hits          uint64  `json:"l1_hits"`
	Misses        uint64  `json:"l1_misses"`
	L2Hits        uint64  `json:"l2_hits"`
	Loads         uint64  `json:"loads"`
	Entries       int     `json:"entries"`
	Invalidations uint64  `json:"invalidations"`
}

// startCacheTier starts the shared L2 fleet once (when cache.redis is set).
func (a *App) startL2(ctx context.Context) (tier.Remote, error) {
	if len(a.cfg.Cache.Redis) == 0 {
		return nil, nil
	}
	if a.l2 == nil {
		f, err := redisl2.New(redisl2.Config{Addrs: a.cfg.Cache.Redis, Password: a.cfg.Cache.RedisPassword, Logger: a.logger.With("component", "cache-l2")})
		if err != nil {
			return nil, err
		}
		if err := f.Start(ctx); err != nil {
			return nil, err
		}
		a.l2 = f
		a.onStop(f.Stop)
		if f.Up() == 0 {
			a.logger.Warn("no cache.redis node answers; caches run on L1 and the database until one does", "nodes", a.cfg.Cache.Redis)
		}
	}
	return a.l2, nil
}

// newTier starts one named cache over the database: L1, the shared L2 when
// configured, invalidation through the broker when this process has one.
func newTier[V any](ctx context.Context, a *App, name string, load func(context.Context, string) (V, error)) (*tier.Tier[V], error) {
	remote, err := a.startL2(ctx)
	if err != nil {
		return nil, err
	}
	cfg := tier.Config[V]{
		Name: name, L1Entries: a.cfg.Cache.L1Entries, TTL: a.cfg.Cache.TTL, NegativeTTL: a.cfg.Cache.NegativeTTL,
		Beta: 1, Logger: a.logger.With("cache", name),
		// Shared caches are filled from the primary: a lagging replica's
		// row would be served to every reader until it expires.
		Load: func(ctx context.Context, key string) (V, error) { return load(sqlstore.WithPrimaryReads(ctx), key) },
	}
	if remote != nil {
		cfg.Remote = remote
	}
	if a.q != nil {
		if a.invalidator == nil {
			a.invalidator = tier.NewNATS(a.q.Conn())
		}
		cfg.Invalidator = a.invalidator
	}
	t, err := tier.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := t.Register(a.reg); err != nil {
		return nil, fmt.Errorf("app: cache %s: %w", name, err)
	}
	if err := t.Start(ctx); err != nil {
		return nil, err
	}
	a.onStop(t.Stop)
	a.tiers = append(a.tiers, t)
	return t, nil
}

// caches returns the caches' figures for the status page.
func (a *App) caches() []CacheStatus {
	var out []CacheStatus
	for _, t := range a.tiers {
		st := t.Stats()
		out = append(out, CacheStatus{
			Name: t.Name(), HitRatio: st.HitRatio(), Hits: st.L1.Hits, Misses: st.L1.Misses, L2Hits: st.L2Hits,
			Loads: st.Loads, Entries: st.L1.Entries, Invalidations: st.Invalidations,
		})
	}
	return out
}
