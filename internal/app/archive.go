package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/blueprint-media/blueprint/internal/archive"
	"github.com/blueprint-media/blueprint/internal/config"
)

// startArchive sets up the hot/cold tiering of high-volume tables
// (internal/archive): it mounts the operator's view (GET /archive,
// /archive/events, /archive/notifications) on the admin listener and
// returns the job the maintenance leader runs every cfg.Interval under
// the "singleton/maintenance" lock, or nil when tiering is off
// (archive.after is 0). Call it once per process: it registers the
// metrics.
func (a *App) startArchive(cfg config.Archive) (func(context.Context), error) {
	if a.db == nil || a.blobs == nil {
		return nil, errors.New("app: archive: the tiering job needs the database and the object store")
	}
	reader := archive.NewReader(a.db, a.blobs)
	if a.adminMux != nil {
		reader.AdminRoutes(a.adminMux)
	}
	if cfg.After <= 0 {
		a.logger.Info("table tiering off (archive.after is 0)")
		return nil, nil
	}
	known := archive.KnownTables()
	tables := []archive.Table{} // empty: tier nothing
	for _, name := range cfg.Tables {
		t, ok := known[name]
		if !ok {
			return nil, fmt.Errorf("app: archive.tables: unknown table %q", name)
		}
		tables = append(tables, t)
	}
	job, err := archive.New(a.db, a.blobs, archive.Config{
		After: cfg.After, Partition: cfg.Partition, Tables: tables, MaxPartitions: cfg.MaxPartitions, LeaseTTL: cfg.LeaseTTL,
	}, a.logger.With("component", "archive"), archive.NewMetrics(a.reg))
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) {
		every(ctx, a.logger, "archive", cfg.Interval, func(ctx context.Context) error {
			for ctx.Err() == nil {
				res, err := job.RunOnce(ctx)
				if errors.Is(err, archive.ErrBusy) {
					return nil // another process's run (or a killed one's lease)
				}
				if err != nil || res.Partitions+res.Skipped < cfg.MaxPartitions {
					return err // caught up, or failed: the next tick retries
				}
			}
			return nil
		})
	}, nil
}
