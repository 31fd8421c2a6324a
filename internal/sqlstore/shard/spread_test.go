package shard_test

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/blueprint-media/blueprint/internal/sqlstore/shard"
)

// rowHashes returns (table, shard, id) → hash of the row's text for the
// given tables and shard range, from every db.
func rowHashes(t *testing.T, where string, dbs ...*sql.DB) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, db := range dbs {
		for _, table := range []string{"videos", "comments"} {
			rows, err := db.Query(fmt.Sprintf(`SELECT shard, id, hashtextextended(r::text, 0) FROM %s r WHERE %s`, table, where))
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var s, id, h int64
				rows.Scan(&s, &id, &h)
				k := fmt.Sprintf("%s/%d/%d", table, s, id)
				if _, dup := out[k]; dup {
					t.Errorf("%s is on two databases", k)
				}
				out[k] = h
			}
			rows.Close()
		}
	}
	return out
}

// TestSpread: the rows of an unsharded database go to the clusters that
// own their shards, verified, and leave the source; a run stopped between
// the copy and the delete (KeepSource) is finished by a rerun without a
// double; a row that differs on its cluster stops the run with the source
// intact; and a cluster that is the source keeps its own rows.
func TestSpread(t *testing.T) {
	ctx := context.Background()
	e := setup(t)
	if _, err := e.a.Exec(`CREATE DATABASE src`); err != nil {
		t.Fatal(err)
	}
	src := open(t, strings.Replace(e.urls["a"], "/postgres?", "/src?", 1))
	if _, err := src.Exec(ddl); err != nil {
		t.Fatal(err)
	}
	const n = 700
	for i := range n {
		s := (i * 37) % 4096
		if _, err := src.Exec(`INSERT INTO videos (shard, id, title) VALUES ($1, $2, $3)`, s, i+1, fmt.Sprintf("video %d's title, with 'quotes'", i)); err != nil {
			t.Fatal(err)
		}
		if _, err := src.Exec(`INSERT INTO comments (shard, id, video_id, body) VALUES ($1, $2, $3, $4)`, s, 10_000+i, i+1, "body\n"+strings.Repeat("x", i%50)); err != nil {
			t.Fatal(err)
		}
	}
	before := rowHashes(t, "true", src)
	if len(before) != 2*n {
		t.Fatalf("source rows: %d", len(before))
	}

	// Stopped between the copies and the deletes: everything copied and
	// verified, nothing deleted.
	res, err := shard.Spread(ctx, src, e.cat, shard.SpreadOptions{Batch: 64, KeepSource: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 0 || len(rowHashes(t, "true", src)) != 2*n {
		t.Fatalf("KeepSource deleted rows: %+v", res)
	}
	// The rerun copies again as no-ops, verifies, deletes.
	var out strings.Builder
	res, err = shard.Spread(ctx, src, e.cat, shard.SpreadOptions{Batch: 50, Progress: &out})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("spread: %+v\n%s", res, out.String())
	if res.Deleted != 2*n || len(rowHashes(t, "true", src)) != 0 {
		t.Fatalf("after the spread the source holds %d rows (deleted %d)", len(rowHashes(t, "true", src)), res.Deleted)
	}
	after := rowHashes(t, "true", e.a, e.b)
	if !maps.Equal(before, after) {
		t.Fatalf("clusters hold %d rows, the source had %d, or values differ", len(after), len(before))
	}
	if wrong := rowHashes(t, "shard >= 2048", e.a); len(wrong) != 0 {
		t.Errorf("cluster a holds rows of b's shards: %v", slices.Collect(maps.Keys(wrong)))
	}
	if wrong := rowHashes(t, "shard < 2048", e.b); len(wrong) != 0 {
		t.Errorf("cluster b holds rows of a's shards: %v", slices.Collect(maps.Keys(wrong)))
	}
	if res.Copied["\"public\".\"comments\""]["a"]+res.Copied["\"public\".\"comments\""]["b"] != n {
		t.Errorf("copied counts: %v", res.Copied)
	}

	// A row that exists on its cluster with other values: an error, and
	// the source keeps it.
	if _, err := src.Exec(`INSERT INTO comments (shard, id, video_id, body) VALUES (3000, 1, 1, 'source')`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.Exec(`INSERT INTO comments (shard, id, video_id, body) VALUES (3000, 1, 1, 'different')`); err != nil {
		t.Fatal(err)
	}
	if _, err := shard.Spread(ctx, src, e.cat, shard.SpreadOptions{}); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Fatalf("a differing row: %v", err)
	}
	if len(rowHashes(t, "shard = 3000 AND id = 1", src)) != 1 {
		t.Error("the source lost the row that differed")
	}
	if _, err := src.Exec(`DELETE FROM comments`); err != nil {
		t.Fatal(err)
	}

	// Spreading cluster a's own database: a's rows stay, b's move.
	if _, err := e.a.Exec(`INSERT INTO comments (shard, id, video_id, body) VALUES (10, 1, 1, 'mine'), (3001, 2, 1, 'b''s')`); err != nil {
		t.Fatal(err)
	}
	if res, err = shard.Spread(ctx, e.a, e.cat, shard.SpreadOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(rowHashes(t, "shard = 10 AND id = 1", e.a)) != 1 || len(rowHashes(t, "shard = 3001 AND id = 2", e.b)) != 1 ||
		len(rowHashes(t, "shard = 3001", e.a)) != 0 || res.Deleted != 1 {
		t.Errorf("spreading a cluster's own database: %+v", res)
	}
}
