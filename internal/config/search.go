package config

// Search configures the search service.
type Search struct {
	Enabled bool `yaml:"enabled" help:"run the search service in the processes whose roles need it"`
}

func defaultSearch() Search { return Search{Enabled: true} }

func (c Search) validate() error { return nil }
