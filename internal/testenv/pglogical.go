package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
)

// StartPostgresLogical runs a throwaway PostgreSQL server like
// StartPostgres (fsync off) but with wal_level=logical and room for
// publications, subscriptions and their workers, so that tests can move
// data between two such servers with logical replication. It returns the
// server's DSN; the server is stopped when the test ends.
func StartPostgresLogical(t testing.TB) string {
	t.Helper()
	for _, bin := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found on PATH: apt-get install postgresql and put its bin directory (/usr/lib/postgresql/15/bin) on PATH (make test does both)", bin)
		}
	}
	dir, err := os.MkdirTemp("", "testenv-pgl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 { // PostgreSQL refuses to run as root
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root needs the postgres user (apt-get install postgresql): %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
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
