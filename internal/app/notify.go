package app

import "context"

// startNotify starts the notify service; its package is being written.
func (a *App) startNotify(ctx context.Context) error { return nil }
