package cli

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blueprint-media/blueprint/internal/sqlstore"
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
