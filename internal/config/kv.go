package config

import (
	"net"
	"net/url"
	"strings"
)

// KV selects the NoSQL key-value store (internal/kvstore) and what the
// platform keeps in it.
type KV struct {
	URL        string `yaml:"url" secret:"true" help:"key-value store: empty = embedded Pebble in data_dir/kv (one process per data directory), redis://[:PASSWORD@]HOST:PORT for one Redis server, redis-cluster://[:PASSWORD@]HOST:PORT,HOST:PORT,… for a Redis Cluster (seed nodes); several frontend processes need a Redis URL"`
	Feeds      string `yaml:"feeds" help:"where materialised home feeds (fan-out on write) live: kvstore (a capped list per user in kv.url) or sql (the feed_items table)"`
	FeedLength int    `yaml:"feed_length" help:"items kept in each user's materialised feed list with feeds = kvstore; older pushes are dropped"`
	Activity   int    `yaml:"activity_length" help:"entries kept in each user's activity list (follows, likes, comments; GET /api/v1/activity); 0 turns the list off"`
}

func defaultKV() KV {
	return KV{Feeds: "kvstore", FeedLength: 1000, Activity: 100}
}

func (c KV) validate() error {
	if _, _, err := c.Redis(); err != nil {
		return err
	}
	switch {
	case c.Feeds != "kvstore" && c.Feeds != "sql":
		return keyErr("kv.feeds", "must be kvstore or sql")
	case c.FeedLength < 1 || c.FeedLength > 100_000:
		return keyErr("kv.feed_length", "must be 1..100000")
	case c.Activity < 0 || c.Activity > 10_000:
		return keyErr("kv.activity_length", "must be 0..10000")
	}
	return nil
}

// Redis parses URL: the Redis addresses (none for the embedded Pebble
// store; two or more for a cluster, the one seed repeated if only one was
// given) and the password.
func (c KV) Redis() (addrs []string, password string, err error) {
	if c.URL == "" {
		return nil, "", nil
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, "", keyErr("kv.url", "not a URL")
	}
	if u.User != nil {
		password, _ = u.User.Password()
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return nil, "", keyErr("kv.url", "want redis://HOST:PORT or redis-cluster://HOST:PORT,…, without a path or query")
	}
	for _, hp := range strings.Split(u.Host, ",") {
		if _, port, err := net.SplitHostPort(hp); err != nil || port == "" {
			return nil, "", keyErr("kv.url", "%q is not HOST:PORT", hp)
		}
		addrs = append(addrs, hp)
	}
	switch u.Scheme {
	case "redis":
		if len(addrs) != 1 {
			return nil, "", keyErr("kv.url", "redis:// takes one HOST:PORT; use redis-cluster:// for a cluster")
		}
	case "redis-cluster":
		if len(addrs) == 1 {
			addrs = append(addrs, addrs[0]) // several addresses select the cluster client
		}
	default:
		return nil, "", keyErr("kv.url", "scheme must be redis or redis-cluster")
	}
	return addrs, password, nil
}
