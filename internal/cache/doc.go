// Package cache is Blueprint's in-process L1 cache (blueprint section 5):
// eviction policies written to be read, and a bounded, concurrency-safe
// key-value cache that runs them.
//
// The policies implement Policy over *Node values: LRU, LFU with O(1)
// frequency lists, W-TinyLFU with a doorkeeper, an aged count-min sketch
// and an adaptive window (the default), and S3-FIFO. They are driven the
// same way by Cache and by the trace simulator in package sim.
//
// Cache is sharded by key hash. Lookups are lock-free; each shard's writers
// and policy share one mutex; hits reach the policy through small lossy
// read buffers that preserve their order when there is no contention.
// Entries are bounded by count and/or by cost (bytes, given to Set or
// computed by a Weigher), expire by TTL on read or by Sweep, and are
// counted in Stats and Prometheus metrics (Register).
//
// See README.md beside this file for the design, the metrics and the
// failure modes, and docs/cache.md for the measured hit ratios and
// throughput next to otter and ristretto.
package cache
