package config

import "time"

// ColdStore configures the move of idle media to cold storage.
type ColdStore struct {
	IdleAfter time.Duration `yaml:"idle_after" help:"media not viewed for this long move to the cold prefix of the object store (still served); 0 turns the move off"`
	Interval  time.Duration `yaml:"interval" help:"how often the maintenance leader looks for idle media"`
}

func defaultColdStore() ColdStore {
	return ColdStore{IdleAfter: 90 * 24 * time.Hour, Interval: time.Hour}
}

func (c ColdStore) validate() error {
	switch {
	case c.IdleAfter < 0:
		return keyErr("coldstore.idle_after", "must be 0 (off) or more")
	case c.Interval < time.Second:
		return keyErr("coldstore.interval", "must be at least 1s")
	}
	return nil
}
