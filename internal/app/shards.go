package app

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"net/url"
	"sort"

	"github.com/blueprint-media/blueprint/internal/outbox"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/sqlstore/shard"
)

// shardStore is one shard cluster's primary as a store of its own: the
// platform's migrations applied (so it has the sharded tables and an
// events table), and its outbox relayed by the maintenance leader.
type shardStore struct {
	name string
	db   *sqlstore.DB
}

// eventIDSlots splits the event ID space between the main database and
// the shard clusters: the broker de-duplicates events by ID, so two
// clusters must never issue the same one. The main database's events keep
// IDs below 2^48; a cluster's start at slot × 2^48 with slot 1..4095 taken
// from a hash of its name (a collision is refused at start).
const eventIDSlotBits = 48

func eventIDSlot(cluster string) int64 {
	h := fnv.New32a()
	h.Write([]byte(cluster))
	return 1 + int64(h.Sum32()%4095)
}

// startShards opens the shard router named by database.shard_catalog and
// every cluster of its map as a store. Clusters added to the catalog later
// are routed to at once (the router follows the map), but their outbox is
// relayed only after a restart of the maintenance leader.
func (a *App) startShards(ctx context.Context) (*shard.Router, []shardStore, error) {
	// Query latency per cluster node, beside the main database's
	// (blueprint_db_query_duration_seconds{server="shard host:port"}).
	latency, err := sqlstore.QueryLatency(a.reg)
	if err != nil {
		return nil, nil, err
	}
	open := func(u string) (*sql.DB, error) {
		server := "shard"
		if p, err := url.Parse(u); err == nil && p.Host != "" {
			server += " " + p.Host
		}
		return sqlstore.OpenPool(u, latency(server))
	}
	r, err := shard.New(shard.Config{Catalog: a.cfg.Database.ShardCatalog, Open: open, Logger: a.logger.With("component", "shard")})
	if err != nil {
		return nil, nil, fmt.Errorf("app: database.shard_catalog: %w", err)
	}
	if err := r.Register(a.reg); err != nil {
		return nil, nil, err
	}
	if err := r.Start(ctx); err != nil {
		return nil, nil, fmt.Errorf("app: database.shard_catalog: %w (a new catalog needs clusters: blueprint db move-shard --catalog URL --add-cluster NAME=postgres://…)", err)
	}
	a.onStop(r.Stop)
	mainID, err := shard.DatabaseIdentity(ctx, a.db.W)
	if err != nil {
		return nil, nil, err
	}
	m := r.Map()
	names := make([]string, 0, len(m.Clusters))
	for name := range m.Clusters {
		names = append(names, name)
	}
	sort.Strings(names)
	slots := map[int64]string{}
	var stores []shardStore
	for _, name := range names {
		db, err := sqlstore.OpenPostgres(ctx, m.Clusters[name].Primary)
		if err != nil {
			return nil, nil, fmt.Errorf("app: shard cluster %s: %w", name, err)
		}
		id, err := shard.DatabaseIdentity(ctx, db.W)
		if err != nil {
			db.Close()
			return nil, nil, fmt.Errorf("app: shard cluster %s: %w", name, err)
		}
		if id == mainID { // the main database is this cluster: its relay already runs
			db.Close()
			continue
		}
		a.onStop(func(context.Context) error { return db.Close() })
		slot := eventIDSlot(name)
		if other, taken := slots[slot]; taken {
			return nil, nil, fmt.Errorf("app: shard clusters %s and %s share event ID slot %d: rename one", other, name, slot)
		}
		slots[slot] = name
		if err := moveEventIDs(ctx, db.W, slot<<eventIDSlotBits); err != nil {
			db.Close()
			return nil, nil, fmt.Errorf("app: shard cluster %s: event IDs: %w", name, err)
		}
		stores = append(stores, shardStore{name: name, db: db})
	}
	return r, stores, nil
}

// moveEventIDs moves the events ID sequence up to base if it is below
// (only then: a sequence in use is never moved back).
func moveEventIDs(ctx context.Context, db *sql.DB, base int64) error {
	var seq string
	if err := db.QueryRowContext(ctx, `SELECT pg_get_serial_sequence('events', 'id')`).Scan(&seq); err != nil {
		return err
	}
	var last int64
	if err := db.QueryRowContext(ctx, `SELECT last_value FROM `+seq).Scan(&last); err != nil {
		return err
	}
	if last >= base {
		return nil
	}
	_, err := db.ExecContext(ctx, `SELECT setval($1::regclass, $2)`, seq, base)
	return err
}

// shardRelays returns the outbox relays of the shard clusters, for the
// maintenance leader.
func (a *App) shardRelays() []*outbox.Relay {
	var out []*outbox.Relay
	for _, s := range a.shardStores {
		out = append(out, outbox.NewRelay(s.db, a.q, a.logger.With("component", "outbox", "cluster", s.name), nil))
	}
	return out
}
