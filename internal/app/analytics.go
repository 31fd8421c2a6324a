package app

import "context"

// startAnalytics starts the analytics service; its package is being written.
func (a *App) startAnalytics(ctx context.Context) error { return nil }
