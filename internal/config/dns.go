package config

// DNS configures the dns service.
type DNS struct {
	Enabled bool `yaml:"enabled" help:"run the dns service in the processes whose roles need it"`
}

func defaultDNS() DNS { return DNS{Enabled: true} }

func (c DNS) validate() error { return nil }
