package testenv

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/blueprint-media/blueprint/internal/queue"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// Store opens a migrated SQLite store in the test's temporary directory,
// closed when the test ends.
func Store(t testing.TB) *sqlstore.DB {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), filepath.Join(t.TempDir(), "bp.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Queue starts an embedded NATS JetStream broker with its store in the
// test's temporary directory and returns a connection to it; both stop
// when the test ends.
func Queue(t testing.TB) *queue.Queue {
	t.Helper()
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := queue.NewBroker(queue.BrokerConfig{StoreDir: filepath.Join(t.TempDir(), "broker")}, logger)
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Stop(ctx) })
	q, err := queue.Connect(ctx, "", b, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	return q
}
