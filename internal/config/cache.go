package config

import "time"

// Cache configures the platform's caches (video metadata, profiles,
// sessions) and the view counter.
type Cache struct {
	L1Entries     int           `yaml:"l1_entries" help:"entries each in-process L1 cache holds"`
	TTL           time.Duration `yaml:"ttl" help:"how long a cached value is served before it is loaded again (writes invalidate it at once)"`
	NegativeTTL   time.Duration `yaml:"negative_ttl" help:"how long a \"not found\" is cached (unknown session tokens, missing videos)"`
	Redis         []string      `yaml:"redis" help:"host:port of the Redis nodes of the shared L2 (keys spread by rendezvous hashing); empty: L1 only"`
	RedisPassword string        `yaml:"redis_password" secret:"true" help:"password of the Redis nodes"`
	ViewFlush     time.Duration `yaml:"view_flush" help:"how often counted views are written back to the database"`
}

func defaultCache() Cache {
	return Cache{L1Entries: 10_000, TTL: 30 * time.Second, NegativeTTL: 5 * time.Second, ViewFlush: time.Second}
}

func (c Cache) validate() error {
	switch {
	case c.L1Entries < 1:
		return keyErr("cache.l1_entries", "must be 1 or more")
	case c.TTL < time.Second:
		return keyErr("cache.ttl", "must be at least 1s")
	case c.NegativeTTL < 0:
		return keyErr("cache.negative_ttl", "must be 0 (off) or more")
	case c.ViewFlush < 10*time.Millisecond:
		return keyErr("cache.view_flush", "must be at least 10ms")
	}
	return nil
}
