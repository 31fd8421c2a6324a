package testenv

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/blueprint-media/blueprint/internal/queue"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// Store opens a migrated SQLite store in the test's temporary directory,
// closed when the test ends. With BLUEPRINT_TEST_DB=postgres it opens the
// store on a throwaway PostgreSQL server instead (StartPostgres): the same
// tests then run against the second engine.
func Store(t testing.TB) *sqlstore.DB {
	t.Helper()
	if os.Getenv("BLUEPRINT_TEST_DB") == sqlstore.Postgres {
		db, err := sqlstore.OpenPostgres(context.Background(), StartPostgres(t, false))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
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
