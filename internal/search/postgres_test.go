package search_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver

	"github.com/blueprint-media/blueprint/internal/search"
	"github.com/blueprint-media/blueprint/internal/search/searchtest"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

// postgresFactory starts one throwaway PostgreSQL and returns a function
// that opens a driver on a new, empty database of it.
func postgresFactory(t *testing.T) func(t *testing.T) search.Index {
	dsn := testenv.StartPostgres(t, false)
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	var n atomic.Int64
	return func(t *testing.T) search.Index {
		name := fmt.Sprintf("search_%d", n.Add(1))
		if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
			t.Fatal(err)
		}
		db, err := sql.Open("pgx", strings.Replace(dsn, "/postgres?", "/"+name+"?", 1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		p, err := search.NewPostgres(context.Background(), db, search.Ranking{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
}

func TestPostgresConformance(t *testing.T) {
	searchtest.Run(t, postgresFactory(t))
}

// TestPostgresSchemaTwice: a second driver on the same database (another
// process starting) reuses the tables and sees the documents.
func TestPostgresSchemaTwice(t *testing.T) {
	dsn := testenv.StartPostgres(t, false)
	ctx := context.Background()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a, err := search.NewPostgres(ctx, db, search.Ranking{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Upsert(ctx, search.Doc{Type: search.Video, ID: 1, Title: "shared"}); err != nil {
		t.Fatal(err)
	}
	b, err := search.NewPostgres(ctx, db, search.Ranking{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Search(ctx, search.Query{Text: "shared"})
	if err != nil || res.Total != 1 {
		t.Fatalf("second driver: %+v, %v", res, err)
	}
}
