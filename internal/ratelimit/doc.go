// Package ratelimit implements per-client token buckets for the API gateway.
//
// Each key (a user ID, an API key or a client IP) owns a bucket that holds at
// most Burst tokens and refills at Rate tokens per second. A request takes one
// token; when the bucket is empty the request is refused and the caller learns
// how long to wait before a token is available, which the gateway turns into a
// Retry-After header.
//
// Buckets are refilled lazily: a bucket stores its token count (a float) and the
// time it was last touched, and the refill for the elapsed time is added the
// next time the key is seen. Nothing runs in the background.
//
// Buckets live in a map split into shards by an xxhash of the key, so that
// concurrent requests for different keys rarely contend on one mutex. The
// number of tracked keys is bounded by Config.MaxKeys: each shard keeps its
// keys in least-recently-used order, forgets keys idle longer than
// Config.IdleTTL, and drops the least recently used key when it is full. Both
// kinds of eviction happen lazily, when a new key is inserted.
//
// The limiter is local to one process. With several gateway instances each
// instance enforces the limit on its own share of the traffic; a shared limit
// in Redis is planned as a separate driver.
package ratelimit
