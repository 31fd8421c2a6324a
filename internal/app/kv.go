package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/blueprint-media/blueprint/internal/config"
	"github.com/blueprint-media/blueprint/internal/kvstore"
)

// kvConfig returns the kv section of the configuration (kv.url, kv.feeds,
// kv.feed_length, kv.activity_length).
func (a *App) kvConfig() config.KV {
	return a.cfg.KV
}

// errKVLocked reports that the embedded store's directory is held by
// another process.
var errKVLocked = errors.New("app: the embedded key-value store is locked by another process")

// openKV opens the process's key-value store: Pebble in data_dir/kv when
// kv.url is empty, else the Redis server or cluster it names. The store is
// closed when the App stops. Pebble takes a lock on its directory, so only
// one process per data directory can open it: the others get errKVLocked.
func (a *App) openKV(ctx context.Context, cfg config.KV) (kvstore.Store, string, error) {
	addrs, password, err := cfg.Redis()
	if err != nil {
		return nil, "", err
	}
	var s kvstore.Store
	var desc string
	if addrs == nil {
		dir := filepath.Join(a.cfg.DataDir, "kv")
		p, err := kvstore.OpenPebble(dir)
		if err != nil {
			if pebbleLocked(err) {
				return nil, "", fmt.Errorf("%w (%s): %v", errKVLocked, dir, err)
			}
			return nil, "", fmt.Errorf("app: kv: %w", err)
		}
		s, desc = p, "pebble "+dir
	} else {
		r, err := kvstore.OpenRedis(ctx, addrs, password)
		if err != nil {
			return nil, "", fmt.Errorf("app: kv.url: %w", err)
		}
		s, desc = r, "redis "+strings.Join(addrs, ",")
	}
	a.onStop(func(context.Context) error { return s.Close() })
	a.checks.Add("kv", func(ctx context.Context) error {
		_, err := s.Counter(ctx, "health")
		return err
	})
	a.logger.Info("key-value store open", "store", desc)
	return s, desc, nil
}

// pebbleLocked reports whether err is Pebble failing to lock its
// directory: held by another process (fcntl: EAGAIN or EACCES) or by this
// one.
func pebbleLocked(err error) bool {
	if strings.Contains(err.Error(), "lock held by current process") {
		return true
	}
	var pathErr *fs.PathError // creating the lock file failed: not a lock
	return (errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES)) && !errors.As(err, &pathErr)
}
