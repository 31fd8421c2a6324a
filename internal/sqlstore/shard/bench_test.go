package shard_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/blueprint-media/blueprint/internal/idgen/idgentest"
	"github.com/blueprint-media/blueprint/internal/sqlstore/shard"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

// BenchmarkSelectByID compares a primary-key read issued directly on a
// database/sql pool with the same read routed by ID through the Router
// (shard from the ID, owner lookup in the map snapshot, pool of the owner),
// on the same PostgreSQL server.
func BenchmarkSelectByID(b *testing.B) {
	ctx := context.Background()
	url := testenv.StartPostgresLogical(b)
	db, err := sql.Open("pgx", url)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(ddl); err != nil {
		b.Fatal(err)
	}
	cat, err := shard.OpenCatalog(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer cat.Close()
	if _, err := cat.Init(ctx, []shard.ClusterConfig{{Name: "a", Primary: url}}); err != nil {
		b.Fatal(err)
	}
	gen := idgentest.New(b)
	ids := make([]int64, 0, 1024)
	for i := range 1024 {
		id, _ := gen.Next(i * 4)
		ids = append(ids, id)
	}
	if _, err := db.Exec(`INSERT INTO videos (shard, id, title) SELECT (id >> 10) & 4095, id, 't' FROM unnest($1::bigint[]) id`, ids); err != nil {
		b.Fatal(err)
	}
	r, err := shard.New(shard.Config{Catalog: url})
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer r.Stop(ctx)
	const q = `SELECT title FROM videos WHERE shard = $1 AND id = $2`
	b.Run("direct", func(b *testing.B) {
		var title string
		for i := 0; b.Loop(); i++ {
			id := ids[i%len(ids)]
			if err := db.QueryRowContext(ctx, q, int((id>>10)&4095), id).Scan(&title); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("route-only", func(b *testing.B) { // the router's own work, no query
		for i := 0; b.Loop(); i++ {
			h, err := r.For(ids[i%len(ids)])
			if err != nil {
				b.Fatal(err)
			}
			if _, err := h.Reader(ctx, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("router", func(b *testing.B) {
		var title string
		for i := 0; b.Loop(); i++ {
			id := ids[i%len(ids)]
			h, err := r.For(id)
			if err != nil {
				b.Fatal(err)
			}
			rd, err := h.Reader(ctx, 0)
			if err != nil {
				b.Fatal(err)
			}
			if err := rd.QueryRowContext(ctx, q, h.Shard(), id).Scan(&title); err != nil {
				b.Fatal(err)
			}
		}
	})
}
