// Package redisl2 is the shared L2 of Blueprint's caches: a fleet of
// independent Redis servers with the keys spread across them by the
// client, with rendezvous hashing (package ring). Adding a node moves
// about 1/n of the keys; a node that stops answering is marked down and
// its keys go to the next-best node until it answers again, when it is
// flushed before it serves (it may hold values that changed while it was
// away) and takes its keys back.
//
// A client-side ring of plain servers rather than Redis Cluster: a cache
// needs no replication or resharding — a lost node is a few misses — and
// every node stays a stock redis-server.
package redisl2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/blueprint-media/blueprint/internal/cache/ring"
)

// Config configures a Fleet.
type Config struct {
	Addrs         []string      // host:port of each node
	Password      string        // AUTH, if the nodes need it
	DB            int           // database number on every node
	Timeout       time.Duration // per call (default 200ms: a slow L2 is worse than a miss)
	CheckInterval time.Duration // health probe of nodes that are down (default 1s)
	Logger        *slog.Logger
}

// Fleet is a set of Redis nodes used as one cache.
type Fleet struct {
	cfg     Config
	ring    *ring.Ring
	clients []*redis.Client
	up      []atomic.Bool

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a Fleet over the nodes; Start probes them.
func New(cfg Config) (*Fleet, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("redisl2: no nodes")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 200 * time.Millisecond
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Fleet{cfg: cfg, ring: ring.New(cfg.Addrs...), up: make([]atomic.Bool, len(cfg.Addrs))}
	for _, a := range cfg.Addrs {
		f.clients = append(f.clients, redis.NewClient(&redis.Options{
			Addr: a, Password: cfg.Password, DB: cfg.DB,
			DialTimeout: cfg.Timeout, ReadTimeout: cfg.Timeout, WriteTimeout: cfg.Timeout,
			MaxRetries: -1, PoolSize: 32,
		}))
	}
	return f, nil
}

// Start checks every node once and then keeps probing the ones that are
// down.
func (f *Fleet) Start(ctx context.Context) error {
	for i := range f.clients {
		f.probe(ctx, i, false)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.wg.Go(func() {
		t := time.NewTicker(f.cfg.CheckInterval)
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
				for i := range f.clients {
					if !f.up[i].Load() {
						f.probe(runCtx, i, true)
					}
				}
			}
		}
	})
	return nil
}

// probe pings node i and marks it up; a node coming back is flushed first.
func (f *Fleet) probe(ctx context.Context, i int, back bool) {
	c := f.clients[i]
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		return
	}
	if back {
		if err := c.FlushDB(ctx).Err(); err != nil {
			return
		}
		f.cfg.Logger.Info("cache node is back; flushed it", "node", f.cfg.Addrs[i])
	}
	f.up[i].Store(true)
}

// Stop stops probing and closes the connections.
func (f *Fleet) Stop(context.Context) error {
	if f.cancel != nil {
		f.cancel()
		f.wg.Wait()
	}
	var errs []error
	for _, c := range f.clients {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// Node returns the address of the node that owns key now ("" if none is
// up).
func (f *Fleet) Node(key string) string {
	if i := f.pick(key); i >= 0 {
		return f.cfg.Addrs[i]
	}
	return ""
}

// Up returns how many nodes are up.
func (f *Fleet) Up() int {
	n := 0
	for i := range f.up {
		if f.up[i].Load() {
			n++
		}
	}
	return n
}

func (f *Fleet) pick(key string) int {
	return f.ring.Pick(key, func(i int) bool { return f.up[i].Load() })
}

// ErrNoNode is returned when every node is down.
var ErrNoNode = errors.New("redisl2: no node is up")

// call runs fn on key's node; a connection error marks the node down.
func (f *Fleet) call(ctx context.Context, key string, fn func(context.Context, *redis.Client) error) error {
	i := f.pick(key)
	if i < 0 {
		return ErrNoNode
	}
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	err := fn(ctx, f.clients[i])
	if err != nil && !errors.Is(err, redis.Nil) && ctx.Err() == nil || errors.Is(err, context.DeadlineExceeded) {
		if f.up[i].CompareAndSwap(true, false) {
			f.cfg.Logger.Warn("cache node is down; routing its keys to the others", "node", f.cfg.Addrs[i], "err", err)
		}
	}
	return err
}

// Get implements tier.Remote.
func (f *Fleet) Get(ctx context.Context, key string) ([]byte, bool, error) {
	var b []byte
	err := f.call(ctx, key, func(ctx context.Context, c *redis.Client) error {
		var err error
		b, err = c.Get(ctx, key).Bytes()
		return err
	})
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("redisl2: get: %w", err)
	}
	return b, true, nil
}

// Set implements tier.Remote.
func (f *Fleet) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	err := f.call(ctx, key, func(ctx context.Context, c *redis.Client) error { return c.Set(ctx, key, val, ttl).Err() })
	if err != nil {
		return fmt.Errorf("redisl2: set: %w", err)
	}
	return nil
}

// Delete implements tier.Remote.
func (f *Fleet) Delete(ctx context.Context, keys ...string) error {
	var errs []error
	for _, k := range keys {
		if err := f.call(ctx, k, func(ctx context.Context, c *redis.Client) error { return c.Del(ctx, k).Err() }); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("redisl2: delete: %w", err)
	}
	return nil
}
