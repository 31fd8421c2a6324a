package config

// Payment configures the payment service.
type Payment struct {
	Enabled bool `yaml:"enabled" help:"run the payment service in the processes whose roles need it"`
}

func defaultPayment() Payment { return Payment{Enabled: true} }

func (c Payment) validate() error { return nil }
