package migrate_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/client"
	"github.com/blueprint-media/blueprint/internal/app"
	"github.com/blueprint-media/blueprint/internal/config"
	"github.com/blueprint-media/blueprint/internal/lock"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/sqlstore/migrate"
	"github.com/blueprint-media/blueprint/internal/telemetry"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

const rowsPerTable = 3

// override gives the value of a column in row i (0-based) where the
// generic rule would break a constraint (CHECK, foreign key, unique).
var override = map[string]func(i int) any{
	"currency":                         func(int) any { return "USD" },
	"payment_intents.kind":             func(int) any { return "tip" },
	"payment_intents.state":            func(int) any { return "succeeded" },
	"payment_intents.payer_id":         func(i int) any { return int64(i + 101) },
	"memberships.state":                func(int) any { return "active" },
	"memberships.member_id":            func(i int) any { return int64(i + 101) },
	"payouts.state":                    func(int) any { return "paid" },
	"payment_webhook_deliveries.state": func(int) any { return "delivered" },
	"ledger_accounts.type":             func(int) any { return "asset" },
	"ledger_entries.debit_account":     func(i int) any { return int64(i + 1) },
	"ledger_entries.credit_account":    func(i int) any { return int64((i+1)%rowsPerTable + 1) },
}

// fill writes rowsPerTable rows into every table of a SQLite store,
// values made from each column's declared type: IDs 1..n (so foreign keys
// find their rows), text with quotes, a question mark and non-ASCII
// letters, blobs with a NUL and bytes that are not UTF-8, floats with a
// fraction, and NULL in every nullable column of the last row.
func fill(t *testing.T, db *sqlstore.DB) {
	t.Helper()
	ctx := context.Background()
	tables, err := db.Tables(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type col struct {
		name, typ string
		notNull   bool
	}
	err = db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `PRAGMA defer_foreign_keys = ON`); err != nil {
			return err
		}
		for _, table := range tables {
			if table == "schema_migrations" {
				continue
			}
			rows, err := tx.QueryContext(ctx, `SELECT name, type, "notnull" OR pk > 0 FROM pragma_table_info(?) ORDER BY cid`, table)
			if err != nil {
				return err
			}
			var cols []col
			for rows.Next() {
				var c col
				if err := rows.Scan(&c.name, &c.typ, &c.notNull); err != nil {
					return err
				}
				cols = append(cols, c)
			}
			rows.Close()
			names := make([]string, len(cols))
			for i, c := range cols {
				names[i] = sqlstore.QuoteIdent(c.name)
			}
			q := `INSERT INTO ` + table + ` (` + strings.Join(names, ", ") + `) VALUES (` + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + `)`
			for i := range rowsPerTable {
				args := make([]any, len(cols))
				for j, c := range cols {
					args[j] = value(table, c.name, c.typ, c.notNull, i)
				}
				if _, err := tx.ExecContext(ctx, q, args...); err != nil {
					return fmt.Errorf("fill %s: %w", table, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func value(table, column, typ string, notNull bool, i int) any {
	if f, ok := override[table+"."+column]; ok {
		return f(i)
	}
	if f, ok := override[column]; ok {
		return f(i)
	}
	if !notNull && i == rowsPerTable-1 && column != "id" && column != "day" && column != "hour" && column != "user_id" && column != "creator_id" {
		return nil
	}
	switch typ := strings.ToUpper(typ); {
	case strings.Contains(typ, "INT"):
		if column == "id" || strings.HasSuffix(column, "_id") || column == "day" || column == "hour" {
			return int64(i + 1)
		}
		return int64((i+1)*1000 + len(column)) // > 0, and fee < amount
	case strings.Contains(typ, "REAL"), strings.Contains(typ, "DOUBLE"):
		return float64(i) + 0.25
	case strings.Contains(typ, "BLOB"):
		return []byte{0, 0xff, 0xfe, byte(i), 'x'}
	}
	return fmt.Sprintf("%s %d: it's “%s” — ü ? $1", column, i, table)
}

// TestCopySQLiteToPostgres fills every table of a SQLite store, copies it
// onto a throwaway PostgreSQL, and checks counts, checksums, sequences, the
// refusal of a changed target, --force, a harmless rerun, and that the
// platform starts on the copy.
func TestCopySQLiteToPostgres(t *testing.T) {
	ctx := context.Background()
	src, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "blueprint.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	l, err := lock.NewSQLite(ctx, src, lock.Options{}) // the lock tables the app creates
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	fill(t, src)
	tables, err := src.Tables(ctx)
	if err != nil {
		t.Fatal(err)
	}

	url := testenv.StartPostgres(t, false)
	dst, err := sqlstore.OpenPostgres(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	var progress bytes.Buffer
	start := time.Now()
	rep, err := migrate.Copy(ctx, src, dst, migrate.Options{Batch: 2, Progress: &progress, TargetURL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("copy and verify of %d tables took %v", len(rep.Tables), time.Since(start).Round(time.Millisecond))
	var out strings.Builder
	rep.WriteTable(&out)
	t.Logf("\n%s", out.String())
	if !rep.OK() || len(rep.Tables) != len(tables)-1 { // all but schema_migrations
		t.Fatalf("report: ok %v, %d tables of %d", rep.OK(), len(rep.Tables), len(tables)-1)
	}
	for _, tb := range rep.Tables {
		if tb.SourceRows < rowsPerTable || tb.TargetRows != tb.SourceRows { // migrations may seed a row too
			t.Errorf("%s: %d rows copied to %d, want %d or more", tb.Name, tb.SourceRows, tb.TargetRows, rowsPerTable)
		}
	}
	if !strings.Contains(progress.String(), "100%") {
		t.Errorf("no finished progress bar in %q", progress.String())
	}

	// Values arrive intact: the blob, the float, the text with a ? in it.
	var hash []byte
	var progressV float64
	var title string
	err = dst.R.QueryRowContext(ctx, `SELECT s.token_hash, v.progress, v.title FROM sessions s, videos v WHERE s.id = 2 AND v.id = 2`).Scan(&hash, &progressV, &title)
	if err != nil || !bytes.Equal(hash, []byte{0, 0xff, 0xfe, 1, 'x'}) || progressV != 1.25 || title != "title 1: it's “videos” — ü ? $1" {
		t.Fatalf("row read back: %x %v %q, %v", hash, progressV, title, err)
	}
	// Sequences moved past the copied IDs.
	var id int64
	err = dst.W.QueryRowContext(ctx, `INSERT INTO events(kind, subject_id, created_at) VALUES ('x', 1, 1) RETURNING id`).Scan(&id)
	if err != nil || id <= rowsPerTable {
		t.Fatalf("new event id %d after copying ids 1..%d: %v", id, rowsPerTable, err)
	}
	if _, err := dst.W.ExecContext(ctx, `DELETE FROM events WHERE id = ?`, id); err != nil {
		t.Fatal(err)
	}

	// A rerun on the finished copy is harmless and verifies again.
	if rep, err := migrate.Copy(ctx, src, dst, migrate.Options{TargetURL: url}); err != nil || !rep.OK() {
		t.Fatalf("rerun: ok %v, %v", rep.OK(), err)
	}
	// A changed row shows in its table's checksum only; Copy refuses the
	// target until --force, which replaces it.
	if _, err := dst.W.ExecContext(ctx, `UPDATE users SET username = 'changed' WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	rep, err = migrate.Verify(ctx, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range rep.Tables {
		if tb.Match() != (tb.Name != "users") {
			t.Errorf("after changing a user: %s match %v", tb.Name, tb.Match())
		}
	}
	if _, err := migrate.Copy(ctx, src, dst, migrate.Options{TargetURL: url}); !errors.Is(err, migrate.ErrNotEmpty) {
		t.Fatalf("copy onto a changed target: %v, want ErrNotEmpty", err)
	}
	if rep, err := migrate.Copy(ctx, src, dst, migrate.Options{Force: true, TargetURL: url}); err != nil || !rep.OK() {
		t.Fatalf("--force: ok %v, %v", rep.OK(), err)
	}

	// The platform starts on the copy and takes a new account.
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Database.URL = url
	cfg.HTTPAddr, cfg.AdminAddr, cfg.Edge.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a := app.New(cfg, telemetry.NewLogger(io.Discard, "error", "text"))
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := a.Start(sctx); err != nil {
		t.Fatal(err)
	}
	defer a.Stop(context.Background())
	c := client.New(a.URLs().Gateway)
	if _, err := c.SignUp(sctx, "after", "after@example.com", "password-after"); err != nil {
		t.Fatal(err)
	}
	if err := c.Login(sctx, "after", "password-after"); err != nil {
		t.Fatal(err)
	}
	var users int
	if err := dst.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&users); err != nil || users != rowsPerTable+1 {
		t.Fatalf("users after sign-up: %d, %v", users, err)
	}
}

// TestCopyRefusesWrongDirection: only SQLite to PostgreSQL.
func TestCopyRefusesWrongDirection(t *testing.T) {
	ctx := context.Background()
	a, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := migrate.Copy(ctx, a, a, migrate.Options{}); err == nil {
		t.Fatal("copied SQLite onto SQLite")
	}
}
