package tier

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// CounterConfig configures a Counter.
type CounterConfig struct {
	// Flush adds the increments to the source of truth, all or nothing
	// (one transaction).
	Flush func(ctx context.Context, deltas map[string]int64) error
	// Flushed, when set, is called with the keys of a successful flush
	// (to drop cached copies of the rows it changed).
	Flushed       func(ctx context.Context, keys []string)
	MaxKeys       int           // keys held before an Add flushes synchronously (default 10,000)
	FlushInterval time.Duration // default 1s
}

// Counter is the write-back strategy for counters — the view-counter hot
// path: Add accumulates increments in memory and a flusher adds them to
// the database in one batch per interval, so a million views of one video
// cost one UPDATE per second instead of a million. Increments, not values,
// are written back, so counters of several processes add up.
//
// Durability trade-off: increments not yet flushed are lost if the process
// dies (at most FlushInterval of them); Stop flushes. A failed flush keeps
// the increments for the next one.
type Counter struct {
	cfg     CounterConfig
	mu      sync.Mutex
	pending map[string]int64
	flushMu sync.Mutex
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// NewCounter returns a Counter; Start runs its flusher.
func NewCounter(cfg CounterConfig) (*Counter, error) {
	if cfg.Flush == nil {
		return nil, errors.New("tier: counter needs Flush")
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = 10_000
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = time.Second
	}
	return &Counter{cfg: cfg, pending: map[string]int64{}}, nil
}

// Add adds n to key's counter.
func (c *Counter) Add(ctx context.Context, key string, n int64) error {
	c.mu.Lock()
	_, known := c.pending[key]
	full := !known && len(c.pending) >= c.cfg.MaxKeys
	c.mu.Unlock()
	if full {
		if err := c.Flush(ctx); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.pending[key] += n
	c.mu.Unlock()
	return nil
}

// Pending returns key's increments not yet flushed.
func (c *Counter) Pending(key string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending[key]
}

// Flush writes the pending increments back now.
func (c *Counter) Flush(ctx context.Context) error {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	c.mu.Lock()
	batch := c.pending
	c.pending = map[string]int64{}
	c.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	if err := c.cfg.Flush(ctx, batch); err != nil {
		c.mu.Lock()
		for k, n := range batch {
			c.pending[k] += n
		}
		c.mu.Unlock()
		return fmt.Errorf("tier: counter flush: %w", err)
	}
	if c.cfg.Flushed != nil {
		keys := make([]string, 0, len(batch))
		for k := range batch {
			keys = append(keys, k)
		}
		c.cfg.Flushed(ctx, keys)
	}
	return nil
}

// Start runs the flusher until Stop.
func (c *Counter) Start(context.Context) error {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.wg.Go(func() {
		t := time.NewTicker(c.cfg.FlushInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				c.Flush(ctx)
			}
		}
	})
	return nil
}

// Stop stops the flusher and flushes what is pending.
func (c *Counter) Stop(ctx context.Context) error {
	if c.cancel != nil {
		c.cancel()
		c.wg.Wait()
	}
	return c.Flush(ctx)
}
