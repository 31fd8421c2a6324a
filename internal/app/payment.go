package app

import "context"

// startPayment starts the payment service; its package is being written.
func (a *App) startPayment(ctx context.Context) error { return nil }
