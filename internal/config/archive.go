package config

import (
	"slices"
	"time"
)

// archiveTables are the tables internal/archive knows how to tier.
var archiveTables = []string{"events", "notifications"}

// Archive configures the hot/cold tiering of high-volume tables: old time
// partitions move to Parquet files in object storage (internal/archive).
type Archive struct {
	After         time.Duration `yaml:"after" help:"partitions of the tiered tables that ended this long ago move to Parquet files under cold/tables/ in object storage and leave the database; 0 turns tiering off"`
	Partition     time.Duration `yaml:"partition" help:"time span of one partition (one Parquet file) by creation time: a divisor or a multiple of 24h"`
	Interval      time.Duration `yaml:"interval" help:"how often the maintenance leader archives closed partitions"`
	Tables        []string      `yaml:"tables" help:"tables to tier: events, notifications"`
	MaxPartitions int           `yaml:"max_partitions" help:"most partitions one run archives"`
	LeaseTTL      time.Duration `yaml:"lease_ttl" help:"how long a killed run keeps the tiering job's lock in the database before another run may take it"`
}

func defaultArchive() Archive {
	return Archive{
		After:         90 * 24 * time.Hour,
		Partition:     24 * time.Hour,
		Interval:      time.Hour,
		Tables:        slices.Clone(archiveTables),
		MaxPartitions: 30,
		LeaseTTL:      10 * time.Minute,
	}
}

func (c Archive) validate() error {
	day := 24 * time.Hour
	switch {
	case c.After < 0:
		return keyErr("archive.after", "must be 0 (off) or more")
	case c.Partition < time.Minute || c.Partition%time.Minute != 0 || (day%c.Partition != 0 && c.Partition%day != 0):
		return keyErr("archive.partition", "%s is neither a divisor nor a multiple of 24h in whole minutes", c.Partition)
	case c.After > 0 && c.After < c.Partition:
		return keyErr("archive.after", "must be at least archive.partition (%s)", c.Partition)
	case c.Interval < time.Second:
		return keyErr("archive.interval", "must be at least 1s")
	case c.MaxPartitions < 1:
		return keyErr("archive.max_partitions", "must be at least 1")
	case c.LeaseTTL < time.Minute:
		return keyErr("archive.lease_ttl", "must be at least 1m")
	}
	for _, t := range c.Tables {
		if !slices.Contains(archiveTables, t) {
			return keyErr("archive.tables", "unknown table %q (known: events, notifications)", t)
		}
	}
	return nil
}
