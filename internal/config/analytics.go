package config

// Analytics configures the analytics service.
type Analytics struct {
	Enabled bool `yaml:"enabled" help:"run the analytics service in the processes whose roles need it"`
}

func defaultAnalytics() Analytics { return Analytics{Enabled: true} }

func (c Analytics) validate() error { return nil }
