package app

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	"github.com/blueprint-media/blueprint/internal/search"
	"github.com/blueprint-media/blueprint/internal/web"
)

// startSearch starts the search service: the index (Bleve under
// data_dir/search, or PostgreSQL full-text search), the indexer that feeds
// it from the events (rebuilding it from the tables when it is empty), the
// API and page on the frontends, and /search/status on the admin listener.
func (a *App) startSearch(ctx context.Context) error {
	cfg := a.cfg.Search
	if !cfg.Enabled {
		return nil
	}
	rank := search.Ranking{FreshnessWeight: cfg.FreshnessWeight, HalfLife: cfg.FreshnessHalfLife, PopularityWeight: cfg.PopularityWeight}
	logger := a.logger.With("component", "search")
	var idx search.Index
	switch driver := a.cfg.SearchDriver(); driver {
	case "bleve":
		b, err := search.OpenBleve(search.BleveConfig{Path: filepath.Join(a.cfg.DataDir, "search"), Ranking: rank})
		if err != nil {
			return err
		}
		if b.MovedAside != "" {
			logger.Warn("the search index could not be opened; it was moved aside and is rebuilt from the tables", "moved_to", b.MovedAside)
		}
		idx = b
	case "postgres":
		url := a.cfg.SearchPostgresURL()
		if url == "" {
			return fmt.Errorf("app: search.postgres_url: the postgres search driver needs a PostgreSQL URL")
		}
		db, err := sql.Open("pgx", url)
		if err != nil {
			return fmt.Errorf("app: search.postgres_url: %w", err)
		}
		db.SetMaxOpenConns(cfg.MaxConcurrent + 4)
		a.onStop(func(context.Context) error { return db.Close() })
		p, err := search.NewPostgres(ctx, db, rank)
		if err != nil {
			return err
		}
		idx = p
	default:
		return fmt.Errorf("app: search.driver: unknown driver %q", driver)
	}
	a.onStop(func(context.Context) error { return idx.Close() })

	ix := search.NewIndexer(idx, a.db, a.q, logger, a.reg)
	// Events reach the indexer through the dispatcher (route "search").
	if err := a.subscribe(search.Consumer, ix.Handler()); err != nil {
		return err
	}
	if err := ix.Start(ctx); err != nil {
		return err
	}
	a.onStop(ix.Stop) // runs before the index closes
	ix.AdminRoutes(a.adminMux)

	pages, err := web.NewPages()
	if err != nil {
		return err
	}
	media := a.media
	a.modules = append(a.modules, search.NewModule(idx, pages, search.ModuleConfig{
		ThumbURL: media.URL, MaxConcurrent: cfg.MaxConcurrent,
	}, logger, a.reg))
	return nil
}
