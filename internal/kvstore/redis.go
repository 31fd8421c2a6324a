package kvstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is the scale-out Store over one Redis server or a Redis Cluster
// (a redis.UniversalClient: one address is a server, several are cluster
// seeds). Values, counters and lists of one name live under different
// keys with the same hash tag, so they share a cluster slot.
type Redis struct {
	c redis.UniversalClient
}

// OpenRedis connects to the Redis at addrs (one: a server; several: a
// cluster) and checks that it answers.
func OpenRedis(ctx context.Context, addrs []string, password string) (*Redis, error) {
	opts := &redis.UniversalOptions{Addrs: addrs, Password: password}
	var c redis.UniversalClient
	if len(addrs) > 1 {
		c = redis.NewClusterClient(opts.Cluster())
	} else {
		c = redis.NewClient(opts.Simple())
	}
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("kvstore: redis %v: %w", addrs, err)
	}
	return &Redis{c: c}, nil
}

// Close closes the client.
func (r *Redis) Close() error { return r.c.Close() }

func rkey(space, key string) string { return "{" + key + "}" + space }

// Get implements Store.
func (r *Redis) Get(ctx context.Context, key string) ([]byte, error) {
	b, err := r.c.Get(ctx, rkey(":v", key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("kvstore: get: %w", err)
	}
	return b, nil
}

// Set implements Store.
func (r *Redis) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := check(key, val); err != nil {
		return err
	}
	if ttl < 0 {
		ttl = 0
	}
	if err := r.c.Set(ctx, rkey(":v", key), val, ttl).Err(); err != nil {
		return fmt.Errorf("kvstore: set: %w", err)
	}
	return nil
}

// Delete implements Store.
func (r *Redis) Delete(ctx context.Context, key string) error {
	if err := r.c.Del(ctx, rkey(":v", key), rkey(":c", key), rkey(":l", key)).Err(); err != nil {
		return fmt.Errorf("kvstore: delete: %w", err)
	}
	return nil
}

// Incr implements Store.
func (r *Redis) Incr(ctx context.Context, key string, delta int64) (int64, error) {
	if err := check(key, nil); err != nil {
		return 0, err
	}
	n, err := r.c.IncrBy(ctx, rkey(":c", key), delta).Result()
	if err != nil {
		return 0, fmt.Errorf("kvstore: incr: %w", err)
	}
	return n, nil
}

// Counter implements Store.
func (r *Redis) Counter(ctx context.Context, key string) (int64, error) {
	n, err := r.c.Get(ctx, rkey(":c", key)).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("kvstore: counter: %w", err)
	}
	return n, nil
}

// Push implements Store: LPUSH and LTRIM in one MULTI.
func (r *Redis) Push(ctx context.Context, list string, val []byte, maxLen int) error {
	if err := check(list, val); err != nil {
		return err
	}
	k := rkey(":l", list)
	_, err := r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, k, val)
		if maxLen > 0 {
			p.LTrim(ctx, k, 0, int64(maxLen-1))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("kvstore: push: %w", err)
	}
	return nil
}

// Range implements Store.
func (r *Redis) Range(ctx context.Context, list string, limit int) ([][]byte, error) {
	if limit <= 0 {
		return nil, nil
	}
	ss, err := r.c.LRange(ctx, rkey(":l", list), 0, int64(limit-1)).Result()
	if err != nil {
		return nil, fmt.Errorf("kvstore: range: %w", err)
	}
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out, nil
}
