package app

import "context"

// startDNS starts the dns service; its package is being written.
func (a *App) startDNS(ctx context.Context) error { return nil }
