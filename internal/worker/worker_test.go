package worker

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/account"
	"github.com/blueprint-media/blueprint/internal/blob"
	"github.com/blueprint-media/blueprint/internal/idgen/idgentest"
	"github.com/blueprint-media/blueprint/internal/media"
	"github.com/blueprint-media/blueprint/internal/queue"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// TestJobThatKillsItsWorkersEndsFailed: deliveries that die without an
// answer (a worker killed every time) count; the first delivery past
// max_deliver marks the item failed instead of leaving it processing.
func TestJobThatKillsItsWorkersEndsFailed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := sqlstore.Open(ctx, filepath.Join(dir, "bp.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	broker := queue.NewBroker(queue.BrokerConfig{StoreDir: filepath.Join(dir, "broker")}, logger)
	if err := broker.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer broker.Stop(ctx)
	q, err := queue.Connect(ctx, "", broker, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	store, _ := blob.NewDisk(filepath.Join(dir, "objects"))
	ids := idgentest.New(t)
	u, err := account.New(db, ids, account.Config{SessionTTL: time.Hour, MinPasswordLength: 8}).SignUp(ctx, "wanda", "w@example.com", "password1")
	if err != nil {
		t.Fatal(err)
	}
	m := media.New(db, q, "http://edge/media/", logger)
	vid, _ := ids.Next(0)
	if err := m.Create(ctx, media.NewItem{ID: vid, UserID: u.ID, Title: "poison", SourceKey: "sources/x", SourceSize: 1}, nil); err != nil {
		t.Fatal(err)
	}

	// Two deliveries whose "worker" dies: never answered, lease runs out.
	const ackWait = time.Second
	died := make(chan struct{}, 10)
	c, err := q.Consume(ctx, queue.ConsumeConfig{Name: "process", Kind: media.JobKind, AckWait: ackWait, MaxDeliver: -1, Concurrency: 1},
		func(ctx context.Context, d *queue.Delivery) error {
			died <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		})
	if err != nil {
		t.Fatal(err)
	}
	<-died
	stop, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	c.Stop(stop) // abandons the handler; Nak counts as a delivery that died
	cancel()

	w := New(Config{Concurrency: 1, AckWait: ackWait, MaxDeliver: 1, ScratchDir: filepath.Join(dir, "work")}, q, store, m, nil, logger, nil)
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer w.Stop(ctx)
	deadline := time.Now().Add(20 * time.Second)
	for {
		v, err := m.Get(ctx, vid)
		if err != nil {
			t.Fatal(err)
		}
		if v.Status == media.StatusFailed {
			if v.Error != "processing failed after 1 attempts" {
				t.Fatalf("reason %q", v.Error)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %s after the deliveries ran out", v.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestScratchOfDeadWorkersIsRemoved: a worker removes the scratch
// directories of processes that no longer exist, and only those.
func TestScratchOfDeadWorkersIsRemoved(t *testing.T) {
	dir := t.TempDir()
	dead := filepath.Join(dir, "pid-999999999") // beyond pid_max: never alive
	alive := filepath.Join(dir, "pid-1")        // init is always alive
	other := filepath.Join(dir, "not-a-pid-dir")
	for _, d := range []string{dead, alive, other} {
		os.MkdirAll(filepath.Join(d, "job"), 0o755)
	}
	w := &Worker{cfg: Config{ScratchDir: dir}, q: nil}
	w.sweepScratch()
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Error("scratch of a dead process kept")
	}
	for _, d := range []string{alive, other} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s removed", d)
		}
	}
}
