package config

// Notify configures the notify service.
type Notify struct {
	Enabled bool `yaml:"enabled" help:"run the notify service in the processes whose roles need it"`
}

func defaultNotify() Notify { return Notify{Enabled: true} }

func (c Notify) validate() error { return nil }
