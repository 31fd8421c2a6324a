package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/blueprint-media/blueprint/internal/queue"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

func setup(t *testing.T) (*sqlstore.DB, *queue.Queue, *slog.Logger) {
	t.Helper()
	return testenv.Store(t), testenv.Queue(t), slog.New(slog.NewTextHandler(io.Discard, nil))
}

// TestCrashesBetweenPublishAndMark: the relay "dies" after publishing many
// of its events but before marking them; restarted, it publishes them
// again. Every event is applied exactly once by the consumer.
func TestCrashesBetweenPublishAndMark(t *testing.T) {
	ctx := context.Background()
	db, q, logger := setup(t)
	const n = 500
	for i := range n {
		err := db.Tx(ctx, func(tx *sql.Tx) error {
			_, err := tx.Exec(`INSERT INTO events(kind, subject_id, payload, created_at) VALUES ('test.happened', ?, '{"i":1}', ?)`, i+1, time.Now().Unix())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	applied := map[int64]int{}
	sub, err := Subscribe(ctx, q, db, "counter", []string{"test.happened"}, func(ctx context.Context, tx *sql.Tx, e Event) error {
		mu.Lock()
		applied[e.SubjectID]++
		mu.Unlock()
		return nil
	}, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()

	crash := errors.New("simulated crash")
	for round := 0; ; round++ {
		r := NewRelay(db, q, logger, nil)
		r.batch = 64
		if round%2 == 0 { // every other incarnation dies after 40 publishes
			count := 0
			r.afterPublish = func(int64) error {
				if count++; count > 40 {
					return crash
				}
				return nil
			}
		}
		if _, err := EnsureStream(ctx, q); err != nil {
			t.Fatal(err)
		}
		_, err := r.RelayOnce(ctx)
		if err != nil && !errors.Is(err, crash) {
			t.Fatal(err)
		}
		var left int
		db.R.QueryRow(`SELECT COUNT(*) FROM events WHERE published_at IS NULL`).Scan(&left)
		if left == 0 {
			break
		}
		if round > 100 {
			t.Fatalf("%d events still unpublished", left)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		got := len(applied)
		mu.Unlock()
		if got == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("applied %d of %d events", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // let any duplicate arrive
	mu.Lock()
	defer mu.Unlock()
	for id, c := range applied {
		if c != 1 {
			t.Fatalf("event for subject %d applied %d times", id, c)
		}
	}
	var inbox int
	db.R.QueryRow(`SELECT COUNT(*) FROM processed_events WHERE consumer = 'counter'`).Scan(&inbox)
	if inbox != n {
		t.Fatalf("inbox rows %d, want %d", inbox, n)
	}
}

// TestInboxSkipsCopiesPastTheDedupWindow: a copy the broker does not
// recognise (published under another message ID, as after the
// de-duplication window) is still applied once; a failing handler rolls
// back and is retried.
func TestInboxSkipsCopiesPastTheDedupWindow(t *testing.T) {
	ctx := context.Background()
	db, q, logger := setup(t)
	if _, err := EnsureStream(ctx, q); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	calls, failures := 0, 0
	sub, err := Subscribe(ctx, q, db, "flaky", nil, func(ctx context.Context, tx *sql.Tx, e Event) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if failures == 0 {
			failures++
			return errors.New("transient")
		}
		_, err := tx.Exec(`INSERT INTO events(kind, subject_id, created_at) VALUES ('derived', ?, 0)`, e.ID)
		return err
	}, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	data, _ := json.Marshal(Event{ID: 77, Kind: "x", SubjectID: 1, Payload: json.RawMessage(`{}`)})
	for _, id := range []string{"evt-77", "evt-77-late-copy"} {
		if _, err := q.JetStream().Publish(ctx, "events.x", data, jetstream.WithMsgID(id)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var derived int
		db.R.QueryRow(`SELECT COUNT(*) FROM events WHERE kind = 'derived' AND subject_id = 77`).Scan(&derived)
		if derived == 1 {
			break
		}
		if derived > 1 || time.Now().After(deadline) {
			t.Fatalf("derived rows %d", derived)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	var derived int
	db.R.QueryRow(`SELECT COUNT(*) FROM events WHERE kind = 'derived' AND subject_id = 77`).Scan(&derived)
	mu.Lock()
	defer mu.Unlock()
	if derived != 1 || calls != 2 {
		t.Fatalf("derived %d (want 1), handler calls %d (want 2: one failure, one success; the copy skipped)", derived, calls)
	}
}

// TestPruneInbox: rows applied before the cutoff go, in batches; newer
// ones stay, and the consumer still skips an event whose row stayed.
func TestPruneInbox(t *testing.T) {
	ctx := context.Background()
	db := testenv.Store(t)
	now := time.Now()
	old, recent := now.Add(-InboxRetention-time.Hour).Unix(), now.Add(-time.Hour).Unix()
	if err := db.Tx(ctx, func(tx *sql.Tx) error {
		for i := range 25 {
			at := old
			if i%5 == 0 {
				at = recent
			}
			if _, err := tx.Exec(`INSERT INTO processed_events(consumer, event_id, processed_at) VALUES ('c', ?, ?)`, i+1, at); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	n, err := PruneInbox(ctx, db, now.Add(-InboxRetention), 7)
	if err != nil || n != 20 {
		t.Fatalf("PruneInbox = %d, %v; want 20 rows (in batches of 7)", n, err)
	}
	var left int
	db.R.QueryRow(`SELECT COUNT(*) FROM processed_events WHERE consumer = 'c' AND processed_at = ?`, recent).Scan(&left)
	var all int
	db.R.QueryRow(`SELECT COUNT(*) FROM processed_events WHERE consumer = 'c'`).Scan(&all)
	if left != 5 || all != 5 {
		t.Fatalf("after pruning: %d recent rows of %d (want 5 of 5)", left, all)
	}
	calls := 0
	if err := Apply(ctx, db, "c", Event{ID: 1}, func(context.Context, *sql.Tx, Event) error { calls++; return nil }); err != nil || calls != 0 {
		t.Fatalf("a kept row no longer stops a copy: calls %d, %v", calls, err)
	}
	if n, err := PruneInbox(ctx, db, now.Add(-InboxRetention), 0); err != nil || n != 0 {
		t.Fatalf("second prune = %d, %v; want 0", n, err)
	}
}
