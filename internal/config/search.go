package config

import (
	"math"
	"strings"
	"time"
)

// Search configures the search service.
type Search struct {
	Enabled           bool          `yaml:"enabled" help:"run the search service in the processes whose roles need it"`
	Driver            string        `yaml:"driver" help:"auto (postgres when database.url is PostgreSQL, else bleve), bleve (embedded index under data_dir/search, one process per index) or postgres (full-text search in search.postgres_url)"`
	PostgresURL       string        `yaml:"postgres_url" secret:"true" help:"PostgreSQL URL for the postgres driver (default: database.url); needs the pg_trgm extension"`
	FreshnessWeight   float64       `yaml:"freshness_weight" help:"ranking: extra weight of a brand-new item (score × (1 + w × 0.5^(age/half-life)))"`
	FreshnessHalfLife time.Duration `yaml:"freshness_half_life" help:"ranking: age at which the freshness bonus has halved"`
	PopularityWeight  float64       `yaml:"popularity_weight" help:"ranking: weight of popularity (score × (1 + w × ln(1 + likes)))"`
	MaxConcurrent     int           `yaml:"max_concurrent" help:"searches in flight per process; more wait up to a second, then get 503"`
}

func defaultSearch() Search {
	return Search{
		Enabled: true, Driver: "auto",
		FreshnessWeight: 0.5, FreshnessHalfLife: 30 * 24 * time.Hour, PopularityWeight: 0.25,
		MaxConcurrent: 32,
	}
}

func isPostgresURL(u string) bool {
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}

// SearchDriver resolves search.driver "auto" to the driver this
// configuration runs.
func (c *Config) SearchDriver() string {
	if c.Search.Driver != "auto" {
		return c.Search.Driver
	}
	if isPostgresURL(c.Database.URL) {
		return "postgres"
	}
	return "bleve"
}

// SearchPostgresURL returns the database URL of the postgres search
// driver.
func (c *Config) SearchPostgresURL() string {
	if c.Search.PostgresURL != "" {
		return c.Search.PostgresURL
	}
	return c.Database.URL
}

func (c Search) validate() error {
	switch c.Driver {
	case "auto", "bleve", "postgres":
	default:
		return keyErr("search.driver", "unknown driver %q (want auto, bleve or postgres)", c.Driver)
	}
	if c.PostgresURL != "" && !isPostgresURL(c.PostgresURL) {
		return keyErr("search.postgres_url", "want a postgres:// or postgresql:// URL")
	}
	for key, w := range map[string]float64{"search.freshness_weight": c.FreshnessWeight, "search.popularity_weight": c.PopularityWeight} {
		if w < 0 || w > 100 || math.IsNaN(w) {
			return keyErr(key, "must be between 0 and 100")
		}
	}
	if c.FreshnessHalfLife < time.Minute {
		return keyErr("search.freshness_half_life", "at least 1m")
	}
	if c.MaxConcurrent < 1 || c.MaxConcurrent > 10000 {
		return keyErr("search.max_concurrent", "must be between 1 and 10000")
	}
	return nil
}
