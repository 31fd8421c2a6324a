package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// StartPostgresLogical runs a throwaway PostgreSQL server like
// StartPostgres (fsync off) but with wal_level=logical and room for
// publications, subscriptions and their workers, so that tests can move
// data between two such servers with logical replication. It returns the
// server's DSN; the server is stopped when the test ends.
func StartPostgresLogical(t testing.TB) string {
	t.Helper()
	dir := pgTempDir(t, "testenv-pgl-", "initdb", "pg_ctl", "postgres")
	data := filepath.Join(dir, "data")
	if out, err := pgAs("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	port := FreePort(t)
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -k %s -c max_connections=200"+
		" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"+
		" -c wal_level=logical -c max_wal_senders=20 -c max_replication_slots=20"+
		" -c max_worker_processes=32 -c max_logical_replication_workers=16 -c max_sync_workers_per_subscription=4"+
		" -c wal_receiver_status_interval=1s -c wal_writer_delay=10ms", port, dir)
	logf := filepath.Join(dir, "log")
	if out, err := pgAs("pg_ctl", "-D", data, "-o", opts, "-l", logf, "-w", "-t", "60", "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(logf)
		t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(logf)
			t.Logf("postgres log (%s):\n%s", data, log)
		}
		if out, err := pgAs("pg_ctl", "-D", data, "-m", "immediate", "stop").CombinedOutput(); err != nil {
			t.Errorf("pg_ctl stop: %v\n%s", err, out)
		}
	})
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
}
