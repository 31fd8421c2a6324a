package config

import "time"

// Analytics configures the analytics service: the batched event ingest, the
// rollup consumer and the cold-tier export of raw events.
type Analytics struct {
	Enabled          bool          `yaml:"enabled" help:"run the analytics service in the processes whose roles need it"`
	MaxBatchEvents   int           `yaml:"max_batch_events" help:"most events one POST /api/v1/analytics/events may carry"`
	MaxBatchBytes    ByteSize      `yaml:"max_batch_bytes" help:"largest event batch body"`
	HeartbeatSeconds int           `yaml:"heartbeat_seconds" help:"how often the player reports its position while playing"`
	ViewWindow       time.Duration `yaml:"view_window" help:"a viewer's repeated views of one video within this window (reloads) count once"`
	SessionTTL       time.Duration `yaml:"session_ttl" help:"how long a view session token is accepted after the page load that issued it"`
	SessionRate      float64       `yaml:"session_rate" help:"view sessions per second one viewer (cookie or account) may open, per frontend"`
	SessionBurst     int           `yaml:"session_burst" help:"view sessions one viewer may open at once before session_rate applies"`
	BotUserAgents    []string      `yaml:"bot_user_agents" help:"case-insensitive substrings of User-Agent headers whose events are dropped as bots"`
	DuplicateWindow  time.Duration `yaml:"duplicate_window" help:"how long the ANALYTICS stream remembers batch IDs, so a retried batch is stored once"`
	StreamMaxAge     time.Duration `yaml:"stream_max_age" help:"raw events older than this leave the ANALYTICS stream even if not yet exported (a safety bound)"`
	FetchBatch       int           `yaml:"fetch_batch" help:"event batches the rollup consumer applies in one SQL transaction at most"`
	ExportInterval   time.Duration `yaml:"export_interval" help:"how often rolled-up raw events are written to Parquet under analytics/raw/ in object storage"`
	ExportMaxEvents  int           `yaml:"export_max_events" help:"most raw events in one Parquet export round"`
	MaxPosition      time.Duration `yaml:"max_position" help:"playback positions beyond this are clamped (bounds the retention curve)"`
}

func defaultAnalytics() Analytics {
	return Analytics{
		Enabled:          true,
		MaxBatchEvents:   500,
		MaxBatchBytes:    256 << 10,
		HeartbeatSeconds: 10,
		ViewWindow:       30 * time.Minute,
		SessionTTL:       6 * time.Hour,
		SessionRate:      0.5,
		SessionBurst:     30,
		BotUserAgents: []string{"bot", "crawl", "spider", "slurp", "curl/", "wget/", "python-requests", "python-urllib",
			"scrapy", "httpie", "libwww-perl", "facebookexternalhit"},
		DuplicateWindow: 10 * time.Minute,
		StreamMaxAge:    7 * 24 * time.Hour,
		FetchBatch:      1000,
		ExportInterval:  time.Minute,
		ExportMaxEvents: 1_000_000,
		MaxPosition:     6 * time.Hour,
	}
}

func (c Analytics) validate() error {
	switch {
	case c.MaxBatchEvents < 1 || c.MaxBatchEvents > 10_000:
		return keyErr("analytics.max_batch_events", "must be 1..10000")
	case c.MaxBatchBytes < 1024:
		return keyErr("analytics.max_batch_bytes", "must be at least 1KiB")
	case c.HeartbeatSeconds < 1 || c.HeartbeatSeconds > 300:
		return keyErr("analytics.heartbeat_seconds", "must be 1..300")
	case c.ViewWindow < 0:
		return keyErr("analytics.view_window", "must not be negative")
	case c.SessionTTL < time.Minute:
		return keyErr("analytics.session_ttl", "must be at least 1m")
	case c.SessionRate <= 0:
		return keyErr("analytics.session_rate", "must be positive")
	case c.SessionBurst < 1:
		return keyErr("analytics.session_burst", "must be at least 1")
	case c.DuplicateWindow < time.Second:
		return keyErr("analytics.duplicate_window", "must be at least 1s")
	case c.StreamMaxAge < time.Hour:
		return keyErr("analytics.stream_max_age", "must be at least 1h")
	case c.DuplicateWindow > c.StreamMaxAge:
		return keyErr("analytics.duplicate_window", "must not exceed analytics.stream_max_age")
	case c.FetchBatch < 1 || c.FetchBatch > 10_000:
		return keyErr("analytics.fetch_batch", "must be 1..10000")
	case c.ExportInterval < time.Second:
		return keyErr("analytics.export_interval", "must be at least 1s")
	case c.ExportMaxEvents < 1:
		return keyErr("analytics.export_max_events", "must be at least 1")
	case c.MaxPosition < time.Minute || c.MaxPosition > 48*time.Hour:
		return keyErr("analytics.max_position", "must be 1m..48h")
	}
	for _, ua := range c.BotUserAgents {
		if ua == "" {
			return keyErr("analytics.bot_user_agents", "empty entry")
		}
	}
	return nil
}
