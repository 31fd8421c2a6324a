package cli

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/sqlstore/shard"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

// TestDBStatusAndMigrate: db status on a SQLite install (text and JSON),
// db migrate onto a throwaway PostgreSQL (verified table, then a rerun
// that changes nothing), db status on the PostgreSQL copy with the
// password redacted, and the refusals.
func TestDBStatusAndMigrate(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "blueprint.db")
	src, err := sqlstore.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	err = src.Tx(ctx, func(tx *sql.Tx) error {
		for i, name := range []string{"ann", "bob"} {
			if _, err := tx.ExecContext(ctx, `INSERT INTO users(id, username, email, password_hash, created_at) VALUES (?, ?, ?, 'x', 1)`, i+1, name, name+"@example.com"); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO events(kind, subject_id, created_at) VALUES ('user.created', 1, 1)`)
		return err
	})
	src.Close()
	if err != nil {
		t.Fatal(err)
	}

	code, out, errOut := run(t, "db", "status", "--database-url", "sqlite:"+path)
	if code != 0 || !strings.Contains(out, "engine          sqlite") || !strings.Contains(out, "schema version") {
		t.Fatalf("status: %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = run(t, "db", "status", "--json", "--database-url", "sqlite:"+path)
	var st sqlstore.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status --json: %d\n%s\n%s", code, out, errOut)
	}
	rows := map[string]int64{}
	for _, tb := range st.Tables {
		rows[tb.Name] = tb.Rows
	}
	if st.Engine != "sqlite" || st.Version < 9 || rows["users"] != 2 || rows["events"] != 1 {
		t.Fatalf("status --json: %+v", st)
	}

	url := testenv.StartPostgres(t, false)
	code, out, errOut = run(t, "db", "migrate", "--from", "sqlite:"+path, "--to", url)
	if code != 0 || !strings.Contains(out, "verified:") || strings.Contains(out, "MISMATCH") || !strings.Contains(errOut, "copying") {
		t.Fatalf("migrate: %d\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut = run(t, "db", "migrate", "--from", "sqlite:"+path, "--to", url); code != 0 || !strings.Contains(out, "verified:") {
		t.Fatalf("rerun: %d\n%s\n%s", code, out, errOut)
	}

	withPassword := strings.Replace(url, "postgres@", "postgres:s3cret-pw@", 1) // trust auth ignores it
	code, out, errOut = run(t, "db", "status", "--json", "--database-url", withPassword)
	st = sqlstore.Status{}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || strings.Contains(out, "s3cret-pw") {
		t.Fatalf("status on PostgreSQL: %d\n%s\n%s", code, out, errOut)
	}
	rows = map[string]int64{}
	for _, tb := range st.Tables {
		rows[tb.Name] = tb.Rows
	}
	if st.Engine != "postgres" || rows["users"] != 2 || rows["events"] != 1 || !strings.Contains(st.URL, "REDACTED") {
		t.Fatalf("status on PostgreSQL: %+v", st)
	}
	if code, out, _ := run(t, "db", "status", "--database-url", url); code != 0 || !strings.Contains(out, "replicas        none attached") {
		t.Fatalf("status text on PostgreSQL: %d\n%s", code, out)
	}

	if code, _, errOut := run(t, "db", "migrate", "--from", "sqlite:"+path); code != 2 || !strings.Contains(errOut, "--to") {
		t.Errorf("migrate without --to: %d %q", code, errOut)
	}
	if code, _, errOut := run(t, "db", "status", "--database-url", "sqlite:"+filepath.Join(t.TempDir(), "none.db")); code != 1 || !strings.Contains(errOut, "no SQLite database") {
		t.Errorf("status of a missing file: %d %q", code, errOut)
	}
}

// TestDBMigrateToShards: a PostgreSQL store's comments go onto the shard
// clusters of a catalog (one cluster on another server, one in a database
// beside the store), each on the cluster of its shard, and leave the store.
func TestDBMigrateToShards(t *testing.T) {
	ctx := context.Background()
	url1, url2 := testenv.StartPostgres(t, false), testenv.StartPostgres(t, false)
	server1, err := sql.Open("pgx", url1)
	if err != nil {
		t.Fatal(err)
	}
	defer server1.Close()
	for _, name := range []string{"catalog", "a"} {
		if _, err := server1.Exec(`CREATE DATABASE ` + name); err != nil {
			t.Fatal(err)
		}
	}
	dbURL := func(name string) string { return strings.Replace(url1, "/postgres?", "/"+name+"?", 1) }
	store, err := sqlstore.OpenPostgres(ctx, url1)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for i := range 300 {
		s := (i * 53) % 4096
		if _, err := store.W.Exec(`INSERT INTO comments (shard, id, video_id, user_id, body, created_at) VALUES ($1, $2, 1, 1, 'hello', 0)`, s, int64(s)<<10|int64(i)); err != nil {
			t.Fatal(err)
		}
		// Likes: a three-column key (shard, video_id, user_id).
		if _, err := store.W.Exec(`INSERT INTO likes (shard, video_id, user_id, created_at) VALUES ($1, $2, $3, 0)`, s, int64(s)<<10, i); err != nil {
			t.Fatal(err)
		}
	}
	// a owns shards 0–2047, b 2048–4095.
	catalog, err := shard.OpenCatalog(ctx, dbURL("catalog"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := catalog.Init(ctx, []shard.ClusterConfig{{Name: "a", Primary: dbURL("a")}, {Name: "b", Primary: url2}}); err != nil {
		t.Fatal(err)
	}
	catalog.Close()
	code, out, errOut := run(t, "db", "migrate", "--to-shards", dbURL("catalog"), "--from", url1, "--batch", "40")
	if code != 0 || !strings.Contains(out, "verified:") || !strings.Contains(out, "600 deleted") {
		t.Fatalf("migrate --to-shards: %d\n%s\n%s", code, out, errOut)
	}
	var left int
	store.R.QueryRow(`SELECT COUNT(*) FROM comments`).Scan(&left)
	if left != 0 {
		t.Errorf("%d comments left in the store", left)
	}
	total := 0
	for name, url := range map[string]string{"a": dbURL("a"), "b": url2} {
		db, err := sql.Open("pgx", url)
		if err != nil {
			t.Fatal(err)
		}
		var n, likes, foreign int
		db.QueryRow(`SELECT COUNT(*) FROM comments`).Scan(&n)
		db.QueryRow(`SELECT COUNT(*) FROM likes`).Scan(&likes)
		if likes != n {
			t.Errorf("cluster %s: %d comments but %d likes (each comment's shard got one like)", name, n, likes)
		}
		if n == 0 {
			t.Errorf("cluster %s got no comments", name)
		}
		rows, err := db.Query(`SELECT shard FROM comments`)
		if err != nil {
			t.Fatal(err)
		}
		cat, err := sql.Open("pgx", dbURL("catalog"))
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var s int
			rows.Scan(&s)
			var owner string
			cat.QueryRow(`SELECT cluster FROM blueprint_shard_map WHERE shard = $1`, s).Scan(&owner)
			if owner != name {
				foreign++
			}
		}
		rows.Close()
		cat.Close()
		db.Close()
		if foreign != 0 {
			t.Errorf("cluster %s holds %d comments of shards it does not own", name, foreign)
		}
		total += n
	}
	if total != 300 {
		t.Errorf("clusters hold %d comments, want 300", total)
	}
	if code, _, errOut := run(t, "db", "migrate", "--to-shards", "mysql://x"); code != 2 || !strings.Contains(errOut, "--to-shards") {
		t.Errorf("bad catalog URL: %d %s", code, errOut)
	}
}
