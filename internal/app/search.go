package app

import "context"

// startSearch starts the search service; its package is being written.
func (a *App) startSearch(ctx context.Context) error { return nil }
