package sqlstore

import (
	"strings"
	"testing"
)

func TestRewrite(t *testing.T) {
	for in, want := range map[string]string{
		`SELECT a FROM t WHERE x = ? AND y = ?`:                            `SELECT a FROM t WHERE x = $1 AND y = $2`,
		`UPDATE s SET f = f + 1, r = r OR f + 1 >= ?2 WHERE id = ?1`:       `UPDATE s SET f = f + 1, r = r OR f + 1 >= $2 WHERE id = $1`,
		`INSERT OR IGNORE INTO likes(a, b) VALUES (?, ?)`:                  `INSERT INTO likes(a, b) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
		"insert or ignore into f(a) select ?, id from v where u = ?;\n":    `INSERT into f(a) select $1, id from v where u = $2 ON CONFLICT DO NOTHING`,
		`INSERT OR IGNORE INTO t(a) VALUES (?) RETURNING id`:               `INSERT INTO t(a) VALUES ($1) ON CONFLICT DO NOTHING RETURNING id`,
		`SELECT '?', "a?b", 'it''s ?' FROM t WHERE c = ? -- what ?` + "\n": `SELECT '?', "a?b", 'it''s ?' FROM t WHERE c = $1 -- what ?` + "\n",
		`CREATE TABLE m (at INTEGER NOT NULL DEFAULT (unixepoch()))`:       `CREATE TABLE m (at INTEGER NOT NULL DEFAULT (CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)))`,
		`SELECT reinsert_or_ignore_x FROM t`:                               `SELECT reinsert_or_ignore_x FROM t`,
		`DO $$ BEGIN PERFORM '?'; END $$; SELECT ?`:                        `DO $$ BEGIN PERFORM '?'; END $$; SELECT $1`,
		`SELECT $tag$ ? $tag$, a$b, ? /* ? */`:                             `SELECT $tag$ ? $tag$, a$b, $1 /* ? */`,
		`SELECT x FROM t WHERE a = $1 AND b = $2`:                          `SELECT x FROM t WHERE a = $1 AND b = $2`,
	} {
		if got := Rewrite(in); got != want {
			t.Errorf("Rewrite(%q)\n got %q\nwant %q", in, got, want)
		}
	}
}

func FuzzRewrite(f *testing.F) {
	for _, s := range []string{"SELECT ?", "INSERT OR IGNORE INTO t VALUES (?)", "'unterminated ?", "?12?", "-- ?", "$$ ? $", "/* ?", "$a$ ?"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		out := rewrite(q)
		// SQL with nothing to rewrite passes through unchanged.
		lower := strings.ToLower(q)
		if !strings.Contains(q, "?") && !strings.Contains(lower, "insert or ignore") && !strings.Contains(lower, "unixepoch()") && out != q {
			t.Fatalf("rewrite changed %q into %q", q, out)
		}
	})
}

func TestInsertTable(t *testing.T) {
	for in, want := range map[string]string{
		`INSERT INTO notify_emails(user_id) VALUES ($1)`:             "notify_emails",
		"  insert into Events (kind) values ($1);\n":                 "events",
		`INSERT INTO t(a) VALUES ($1) ON CONFLICT DO NOTHING`:        "t",
		`INSERT INTO t(a) VALUES ($1) RETURNING id`:                  "",
		`INSERT INTO s.t(a) VALUES ($1)`:                             "",
		`INSERT INTO t(a) VALUES ($1); INSERT INTO u(a) VALUES ($1)`: "",
		`UPDATE t SET a = 1`:                                         "",
		`INSERT INTO "quoted"(a) VALUES (1)`:                         "",
	} {
		if got := insertTable(in); got != want {
			t.Errorf("insertTable(%q) = %q, want %q", in, got, want)
		}
	}
}
