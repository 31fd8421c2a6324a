package payment

import (
	"context"
	"net/http"
)

// DialCheck dials addr with the outgoing webhooks' transport, for tests of
// the private-address guard.
func DialCheck(s *Service, _ string, addr string) error {
	conn, err := s.hooks.Transport.(*http.Transport).DialContext(context.Background(), "tcp", addr)
	if err == nil {
		conn.Close()
	}
	return err
}

// TouchMetrics gives every metric vector of s a child, so that a lint of
// the registry sees them all.
func TouchMetrics(s *Service) {
	s.m.intents.WithLabelValues("succeeded")
	s.m.payouts.WithLabelValues("paid")
	s.m.provider.WithLabelValues("charge")
	s.m.providerErrs.WithLabelValues("charge", "temporary")
	s.m.webhooksIn.WithLabelValues("applied")
	s.m.deliveries.WithLabelValues("delivered")
	s.m.recovered.WithLabelValues("payment_pending")
	s.m.reconciled.WithLabelValues("clean")
}
