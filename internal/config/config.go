// Package config holds Blueprint's configuration: Go-value defaults, then a
// YAML file, then BLUEPRINT_* environment variables, then command-line flags,
// each overriding the one before. Every leaf key has all three spellings,
// derived from its YAML path: the key "lb.strategy" is the environment
// variable BLUEPRINT_LB_STRATEGY and the flag --lb-strategy.
package config

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// Roles that a process can run. "all" stands for every one of them.
var knownRoles = []string{"gateway", "frontend", "edge", "origin", "broker", "worker", "dns-root", "dns-tld", "dns-auth", "resolver"}

var x264Presets = []string{"ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"}

// KnownRoles returns the names of the roles a process can run.
func KnownRoles() []string { return slices.Clone(knownRoles) }

// Config is the whole configuration of one Blueprint process.
type Config struct {
	Roles     []string `yaml:"roles" help:"roles this process runs: all, or a comma list of gateway,frontend,edge,origin,broker,worker,dns-root,dns-tld,dns-auth,resolver"`
	HTTPAddr  string   `yaml:"http_addr" help:"public listener of the API gateway"`
	AdminAddr string   `yaml:"admin_addr" help:"admin listener: /metrics, /healthz, /readyz, /debug/pprof"`
	DataDir   string   `yaml:"data_dir" help:"directory for the database, objects, uploads and caches"`
	PublicURL string   `yaml:"public_url" help:"URL users reach the gateway at (default: derived from http_addr)"`
	Secret    string   `yaml:"secret" secret:"true" help:"key that signs the identity headers the gateway sends to frontends; at least 16 characters (default: generated once into data_dir)"`

	Log       Log       `yaml:"log"`
	Database  Database  `yaml:"database"`
	Blob      Blob      `yaml:"blob"`
	Queue     Queue     `yaml:"queue"`
	Broker    Broker    `yaml:"broker"`
	Gateway   Gateway   `yaml:"gateway"`
	LB        LB        `yaml:"lb"`
	Frontend  Frontend  `yaml:"frontend"`
	Origin    Origin    `yaml:"origin"`
	Edge      Edge      `yaml:"edge"`
	Upload    Upload    `yaml:"upload"`
	Worker    Worker    `yaml:"worker"`
	Account   Account   `yaml:"account"`
	Lock      Lock      `yaml:"lock"`
	Cache     Cache     `yaml:"cache"`
	ColdStore ColdStore `yaml:"coldstore"`
	Archive   Archive   `yaml:"archive"`
	KV        KV        `yaml:"kv"`
	Social    Social    `yaml:"social"`
	DNS       DNS       `yaml:"dns"`
	Search    Search    `yaml:"search"`
	Notify    Notify    `yaml:"notify"`
	Payment   Payment   `yaml:"payment"`
	Analytics Analytics `yaml:"analytics"`
	Dispatch  Dispatch  `yaml:"dispatch"`
}

// Lock configures distributed locks (per-video transcode locks, leader
// election of the maintenance jobs).
type Lock struct {
	TTL  time.Duration `yaml:"ttl" help:"how long a lock outlives a holder that stopped renewing it (crash, pause)"`
	Etcd []string      `yaml:"etcd" help:"etcd client URLs; when set, locks and ID-generator worker leases live in etcd instead of the data directory"`
}

// Log configures log/slog output.
type Log struct {
	Level  string `yaml:"level" help:"debug, info, warn or error"`
	Format string `yaml:"format" help:"json or text"`
}

// Database selects the SQL store.
type Database struct {
	URL string `yaml:"url" secret:"true" help:"sqlite:PATH (default: data_dir/blueprint.db), postgres://… or postgresql://… (blueprint db migrate moves a SQLite install)"`
	// Replicas are streaming replicas of URL's server.
	Replicas []string `yaml:"replicas" secret:"true" help:"postgres:// URLs of streaming replicas of database.url; pages read from a replica once it has replayed the visitor's last write, else from the primary"`
	// ShardCatalog turns sharding on.
	ShardCatalog string `yaml:"shard_catalog" secret:"true" help:"postgres:// URL of the shard catalog (blueprint db move-shard --catalog); when set, comments and likes live on the shard clusters it maps, routed by the shard bits of their IDs"`
}

// Blob selects the object store.
type Blob struct {
	URL string `yaml:"url" help:"file://DIR (default: data_dir/objects)"`
}

// Queue tells job producers and workers where the broker is.
type Queue struct {
	URL        string        `yaml:"url" help:"nats://host:port of the broker; empty means the broker role in this process"`
	AckWait    time.Duration `yaml:"ack_wait" help:"how long a job may go without a heartbeat before it is redelivered"`
	MaxDeliver int           `yaml:"max_deliver" help:"deliveries before a job is given up as failed"`
}

// Broker configures the embedded NATS JetStream server (the broker role).
type Broker struct {
	Addr string `yaml:"addr" help:"host:port other processes reach the embedded broker at; empty means in-process only"`
}

// Gateway configures the public API gateway.
type Gateway struct {
	RateLimit    float64  `yaml:"rate_limit" help:"requests per second per client (token bucket refill)"`
	RateBurst    int      `yaml:"rate_burst" help:"token bucket size per client"`
	MaxBodyBytes ByteSize `yaml:"max_body_bytes" help:"largest request body outside the upload endpoint"`
	TrustedProxy bool     `yaml:"trusted_proxy" help:"take the client address from X-Forwarded-For"`
}

// LB configures the load balancer between gateway and frontend servers.
type LB struct {
	Strategy       string        `yaml:"strategy" help:"round_robin, least_conn or consistent_hash"`
	HealthInterval time.Duration `yaml:"health_interval" help:"active health check period"`
	Backends       []string      `yaml:"backends" help:"frontend base URLs (default: this process's frontend instances)"`
}

// Frontend configures the frontend servers.
type Frontend struct {
	Instances int    `yaml:"instances" help:"frontend server instances this process runs"`
	Addr      string `yaml:"addr" help:"listen address of each instance (port 0 = any free port)"`
}

// Origin configures the origin: the object store served over HTTP to edges.
type Origin struct {
	Addr string `yaml:"addr" help:"listen address of the origin server"`
}

// Edge configures the CDN edge cache.
type Edge struct {
	Addr           string   `yaml:"addr" help:"listen address of the edge"`
	PublicURL      string   `yaml:"public_url" help:"URL viewers reach this edge at (default: derived from addr)"`
	Origin         string   `yaml:"origin" help:"origin base URL (default: this process's origin role)"`
	MemoryBytes    ByteSize `yaml:"memory_bytes" help:"memory tier size"`
	DiskBytes      ByteSize `yaml:"disk_bytes" help:"disk tier size"`
	MaxObjectBytes ByteSize `yaml:"max_object_bytes" help:"largest object the edge stores"`
}

// Upload configures resumable uploads.
type Upload struct {
	MaxBytes ByteSize `yaml:"max_bytes" help:"largest upload accepted"`
}

// Worker configures the media processing workers.
type Worker struct {
	Concurrency    int    `yaml:"concurrency" help:"jobs processed at once by this process"`
	MaxPixels      int64  `yaml:"max_pixels" help:"largest frame or image, in pixels"`
	SegmentSeconds int    `yaml:"segment_seconds" help:"HLS segment length"`
	Preset         string `yaml:"preset" help:"x264 preset"`
	FFmpegThreads  int    `yaml:"ffmpeg_threads" help:"threads per ffmpeg run (0 = ffmpeg decides)"`
	FFmpeg         string `yaml:"ffmpeg" help:"path of ffmpeg"`
	FFprobe        string `yaml:"ffprobe" help:"path of ffprobe"`
}

// Account configures sign-up and sessions.
type Account struct {
	SessionTTL        time.Duration `yaml:"session_ttl" help:"how long a login lasts"`
	MinPasswordLength int           `yaml:"min_password_length" help:"shortest password accepted at sign-up"`
}

// Default returns the configuration Blueprint runs with when nothing is set:
// every role in one process, embedded engines, data under ./data.
func Default() Config {
	return Config{
		Roles:     []string{"all"},
		HTTPAddr:  ":8080",
		AdminAddr: "127.0.0.1:9090",
		DataDir:   "./data",
		Log:       Log{Level: "info", Format: "json"},
		Queue:     Queue{AckWait: 30 * time.Second, MaxDeliver: 5},
		Gateway: Gateway{
			RateLimit:    50,
			RateBurst:    200,
			MaxBodyBytes: 1 << 20,
		},
		LB:       LB{Strategy: "round_robin", HealthInterval: time.Second},
		Frontend: Frontend{Instances: 2, Addr: "127.0.0.1:0"},
		Origin:   Origin{Addr: "127.0.0.1:0"},
		Edge: Edge{
			Addr:           ":8081",
			MemoryBytes:    64 << 20,
			DiskBytes:      1 << 30,
			MaxObjectBytes: 256 << 20,
		},
		Upload: Upload{MaxBytes: 4 << 30},
		Worker: Worker{
			Concurrency:    1,
			MaxPixels:      40_000_000,
			SegmentSeconds: 2,
			Preset:         "veryfast",
			FFmpeg:         "ffmpeg",
			FFprobe:        "ffprobe",
		},
		Account:   Account{SessionTTL: 30 * 24 * time.Hour, MinPasswordLength: 8},
		Lock:      Lock{TTL: 10 * time.Second},
		Cache:     defaultCache(),
		ColdStore: defaultColdStore(),
		Archive:   defaultArchive(),
		KV:        defaultKV(),
		Social:    defaultSocial(),
		DNS:       defaultDNS(),
		Search:    defaultSearch(),
		Notify:    defaultNotify(),
		Payment:   defaultPayment(),
		Analytics: defaultAnalytics(),
		Dispatch:  defaultDispatch(),
	}
}

// HasRole reports whether the configuration runs the named role.
func (c *Config) HasRole(name string) bool {
	return slices.Contains(c.Roles, "all") || slices.Contains(c.Roles, name)
}

// Validate checks the configuration and returns an error naming the first
// bad key.
func (c *Config) Validate() error {
	if len(c.Roles) == 0 {
		return keyErr("roles", "empty; use all or a comma list of %s", strings.Join(knownRoles, ","))
	}
	for _, r := range c.Roles {
		if r != "all" && !slices.Contains(knownRoles, r) {
			return keyErr("roles", "unknown role %q (known: all, %s)", r, strings.Join(knownRoles, ", "))
		}
	}
	for key, addr := range map[string]string{
		"http_addr": c.HTTPAddr, "admin_addr": c.AdminAddr, "frontend.addr": c.Frontend.Addr,
		"origin.addr": c.Origin.Addr, "edge.addr": c.Edge.Addr,
	} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return keyErr(key, "%q is not host:port: %v", addr, err)
		}
	}
	if c.Broker.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Broker.Addr); err != nil {
			return keyErr("broker.addr", "%q is not host:port: %v", c.Broker.Addr, err)
		}
	}
	if c.Secret != "" && len(c.Secret) < 16 {
		return keyErr("secret", "at least 16 characters (or leave it empty to have one generated)")
	}
	if c.DataDir == "" {
		return keyErr("data_dir", "empty")
	}
	if c.Database.ShardCatalog != "" && (!isPostgresURL(c.Database.ShardCatalog) || !isPostgresURL(c.Database.URL)) {
		return keyErr("database.shard_catalog", "needs postgres:// URLs for both it and database.url")
	}
	for i, r := range c.Database.Replicas {
		if !isPostgresURL(c.Database.URL) {
			return keyErr("database.replicas", "needs a postgres:// database.url")
		}
		if !isPostgresURL(r) {
			return keyErr(fmt.Sprintf("database.replicas[%d]", i), "not a postgres:// or postgresql:// URL")
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return keyErr("log.level", "unknown level %q (want debug, info, warn or error)", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		return keyErr("log.format", "unknown format %q (want json or text)", c.Log.Format)
	}
	switch c.LB.Strategy {
	case "round_robin", "least_conn", "consistent_hash":
	default:
		return keyErr("lb.strategy", "unknown strategy %q (want round_robin, least_conn or consistent_hash)", c.LB.Strategy)
	}
	checks := []struct {
		key string
		ok  bool
	}{
		{"gateway.rate_limit", c.Gateway.RateLimit > 0},
		{"gateway.rate_burst", c.Gateway.RateBurst > 0},
		{"gateway.max_body_bytes", c.Gateway.MaxBodyBytes > 0},
		{"lb.health_interval", c.LB.HealthInterval > 0},
		{"frontend.instances", c.Frontend.Instances >= 0},
		{"edge.memory_bytes", c.Edge.MemoryBytes > 0},
		{"edge.disk_bytes", c.Edge.DiskBytes > 0},
		{"edge.max_object_bytes", c.Edge.MaxObjectBytes > 0},
		{"upload.max_bytes", c.Upload.MaxBytes > 0},
		{"queue.ack_wait", c.Queue.AckWait >= time.Second},
		{"queue.max_deliver", c.Queue.MaxDeliver >= 1},
		{"worker.concurrency", c.Worker.Concurrency >= 1},
		{"worker.max_pixels", c.Worker.MaxPixels > 0},
		{"worker.segment_seconds", c.Worker.SegmentSeconds >= 1 && c.Worker.SegmentSeconds <= 30},
		{"account.session_ttl", c.Account.SessionTTL >= time.Minute},
		{"account.min_password_length", c.Account.MinPasswordLength >= 1},
		{"lock.ttl", c.Lock.TTL >= 100*time.Millisecond},
	}
	for _, ch := range checks {
		if !ch.ok {
			return keyErr(ch.key, "out of range")
		}
	}
	for _, r := range []string{"worker", "frontend"} {
		if c.HasRole(r) && !c.HasRole("broker") && c.Queue.URL == "" {
			return keyErr("queue.url", "the %s role needs a broker: run the broker role in this process or set queue.url", r)
		}
	}
	if _, port, _ := net.SplitHostPort(c.Frontend.Addr); port != "0" && c.Frontend.Instances > 1 {
		return keyErr("frontend.addr", "a fixed port (%s) cannot serve %d instances; use port 0", c.Frontend.Addr, c.Frontend.Instances)
	}
	if !slices.Contains(x264Presets, c.Worker.Preset) {
		return keyErr("worker.preset", "unknown x264 preset %q (want one of %s)", c.Worker.Preset, strings.Join(x264Presets, ", "))
	}
	if c.Worker.FFmpegThreads < 0 {
		return keyErr("worker.ffmpeg_threads", "must be 0 (ffmpeg decides) or more")
	}
	for _, v := range []interface{ validate() error }{c.Cache, c.ColdStore, c.Archive, c.Social, c.KV, c.DNS, c.Search, c.Notify, c.Payment, c.Analytics, c.Dispatch} {
		if err := v.validate(); err != nil {
			return err
		}
	}
	return nil
}

func keyErr(key, format string, args ...any) error {
	return fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, args...))
}
