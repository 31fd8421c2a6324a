package lockbench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-redsync/redsync/v4"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	goredislib "github.com/redis/go-redis/v9"

	"github.com/blueprint-media/blueprint/internal/lock"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

// startRedis runs a throwaway redis-server (Debian's) on a free port.
func startRedis(b *testing.B) *goredislib.Client {
	b.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		b.Fatal("redis-server is not installed: apt-get install redis-server")
	}
	dir := b.TempDir()
	port := testenv.FreePort(b)
	cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	logf, _ := os.Create(filepath.Join(dir, "redis.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
	c := goredislib.NewClient(&goredislib.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	b.Cleanup(func() { c.Close() })
	for deadline := time.Now().Add(10 * time.Second); c.Ping(context.Background()).Err() != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("redis did not answer")
		}
	}
	return c
}

// BenchmarkRedsync compares redsync on one Redis (no fencing tokens: see
// internal/lock/README.md on why that is unsafe) with our embedded SQLite
// backend, lock/unlock cycles in the same run.
func BenchmarkRedsync(b *testing.B) {
	client := startRedis(b)
	rs := redsync.New(goredis.NewPool(client))
	b.Run("redsync-single-redis", func(b *testing.B) {
		run(b, func(b *testing.B) lockUnlock {
			name := b.Name()
			return func(ctx context.Context) (time.Duration, error) {
				m := rs.NewMutex(name, redsync.WithExpiry(10*time.Second), redsync.WithTries(1000), redsync.WithRetryDelay(time.Millisecond))
				start := time.Now()
				if err := m.LockContext(ctx); err != nil {
					return 0, err
				}
				d := time.Since(start)
				_, err := m.UnlockContext(ctx)
				return d, err
			}
		})
	})
	b.Run("blueprint-sqlite", func(b *testing.B) {
		db, err := sqlstore.Open(context.Background(), filepath.Join(b.TempDir(), "bp.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		run(b, func(b *testing.B) lockUnlock {
			l, err := lock.NewSQLite(context.Background(), db, lock.Options{TTL: 10 * time.Second})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { l.Close() })
			name := b.Name()
			return func(ctx context.Context) (time.Duration, error) {
				start := time.Now()
				lease, err := l.Lock(ctx, name)
				if err != nil {
					return 0, err
				}
				d := time.Since(start)
				return d, lease.Unlock(ctx)
			}
		})
	})
}
