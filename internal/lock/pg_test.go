package lock_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/lock"
	"github.com/blueprint-media/blueprint/internal/lock/locktest"
	"github.com/jackc/pgx/v5"
)

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startPostgres starts a throwaway PostgreSQL server (trust auth, fsync
// off, temp dir, free port) and returns its DSN. It is stopped with
// pg_ctl stop -m immediate when the test ends.
func startPostgres(t *testing.T) string {
	t.Helper()
	for _, bin := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found on PATH: install the Debian package postgresql (apt-get install postgresql) and put its bin directory (/usr/lib/postgresql/15/bin) on PATH", bin)
		}
	}
	dir, err := os.MkdirTemp("", "lock-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	asPostgres := func(name string, args ...string) *exec.Cmd {
		if os.Geteuid() != 0 {
			return exec.Command(name, args...)
		}
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	if os.Geteuid() == 0 {
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
	if out, err := asPostgres("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	port := freePort(t)
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -k %s -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", port, dir)
	if out, err := asPostgres("pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "30", "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	t.Cleanup(func() {
		if out, err := asPostgres("pg_ctl", "-D", data, "-m", "immediate", "stop").CombinedOutput(); err != nil {
			t.Errorf("pg_ctl stop: %v\n%s", err, out)
		}
	})
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
}

func pgConnect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestPostgres(t *testing.T) {
	dsn := startPostgres(t)
	ctx := context.Background()
	newLocker := func(opts lock.Options) func(t *testing.T) lock.Locker {
		return func(t *testing.T) lock.Locker {
			t.Helper()
			l, err := lock.NewPostgres(ctx, dsn, opts)
			if err != nil {
				t.Fatal(err)
			}
			return l
		}
	}
	t.Run("Conformance", func(t *testing.T) {
		locktest.Run(t, newLocker(lock.Options{TTL: 2 * time.Second, MaxPoll: 20 * time.Millisecond}))
	})
	t.Run("Fences", func(t *testing.T) {
		conn := pgConnect(t, dsn)
		if _, err := conn.Exec(ctx, lock.FenceSchema); err != nil {
			t.Fatal(err)
		}
		write := func(token uint64) error {
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := lock.FencedUpdatePgx(ctx, tx, "video/1", token); err != nil {
				tx.Rollback(ctx)
				return err
			}
			return tx.Commit(ctx)
		}
		checkFenceSteps(t, write)
	})
	t.Run("LeaseLostWhenTakenOver", func(t *testing.T) {
		nl := newLocker(lock.Options{TTL: 300 * time.Millisecond, MaxPoll: 10 * time.Millisecond})
		a, b := nl(t), nl(t)
		la, err := a.Lock(ctx, "pg-job")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(900 * time.Millisecond)
		if err := la.Err(); err != nil {
			t.Fatalf("lease lost while keepalive runs: %v", err)
		}
		conn := pgConnect(t, dsn)
		// Expire the row as the server would after a long client pause.
		if _, err := conn.Exec(ctx, `UPDATE lock_leases SET expires_at = 0 WHERE name = 'pg-job'`); err != nil {
			t.Fatal(err)
		}
		lb, err := b.TryLock(ctx, "pg-job")
		if err != nil {
			t.Fatalf("TryLock after expiry: %v", err)
		}
		select {
		case <-la.Lost():
		case <-time.After(time.Second):
			t.Fatal("holder not told about the loss within TTL")
		}
		if err := la.Unlock(ctx); !errors.Is(err, lock.ErrNotHeld) {
			t.Fatalf("Unlock of a lost lease = %v, want ErrNotHeld", err)
		}
		if lb.Token <= la.Token {
			t.Fatalf("token %d after %d", lb.Token, la.Token)
		}
		if err := lb.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	})
}
