package media

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/account"
	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/idgen/idgentest"
	"github.com/blueprint-media/blueprint/internal/queue"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// TestLifecycle: an item is created once, its job is published (or
// re-published by Reconcile when the broker was unreachable), and it moves
// to ready exactly once.
func TestLifecycle(t *testing.T) {
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
	ids := idgentest.New(t)
	u, err := account.New(db, ids, account.Config{SessionTTL: time.Hour, MinPasswordLength: 8}).SignUp(ctx, "mia", "m@example.com", "password1")
	if err != nil {
		t.Fatal(err)
	}

	// The first service's broker connection is closed: publishing fails.
	dead, err := queue.Connect(ctx, "", broker, logger)
	if err != nil {
		t.Fatal(err)
	}
	dead.Close()
	m := New(db, dead, "http://edge.test/media", logger)
	id, _ := ids.Next(0)
	item := NewItem{ID: id, UserID: u.ID, Title: "t", SourceKey: "sources/1", SourceSize: 10}
	if err := m.Create(ctx, item, nil); err != nil {
		t.Fatalf("create must succeed without the broker: %v", err)
	}
	if err := m.Create(ctx, item, nil); err != nil { // idempotent
		t.Fatal(err)
	}
	var enqueued *int64
	db.R.QueryRow(`SELECT enqueued_at FROM videos WHERE id = ?`, id).Scan(&enqueued)
	if enqueued != nil {
		t.Fatal("marked enqueued although the publish failed")
	}

	live, err := queue.Connect(ctx, "", broker, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	m2 := New(db, live, "http://edge.test/media", logger)
	if n, err := m2.Reconcile(ctx); err != nil || n != 1 {
		t.Fatalf("reconcile: %d, %v", n, err)
	}
	if n, _ := m2.Reconcile(ctx); n != 0 {
		t.Fatalf("second reconcile published %d again", n)
	}
	if d, _ := live.Depth(ctx); d != 1 {
		t.Fatalf("queue depth %d, want 1", d)
	}

	v, err := m2.Get(ctx, id)
	if err != nil || v.Status != StatusProcessing || v.HLSURL != "" {
		t.Fatalf("processing item: %+v %v", v, err)
	}
	res := Result{Kind: "video", MasterKey: "videos/1/hls/master.m3u8", ThumbKey: "videos/1/poster.jpg",
		Renditions: []Rendition{{Name: "360p", Width: 640, Height: 360, Key: "videos/1/hls/v0/index.m3u8"}}}
	if made, err := m2.MarkReady(ctx, id, res, nil); !made || err != nil {
		t.Fatalf("ready: %v %v", made, err)
	}
	if made, _ := m2.MarkReady(ctx, id, res, nil); made {
		t.Fatal("second ready transition made")
	}
	if made, _ := m2.MarkFailed(ctx, id, "late failure", nil); made {
		t.Fatal("a ready item became failed")
	}
	v, _ = m2.Get(ctx, id)
	if v.HLSURL != "http://edge.test/media/videos/1/hls/master.m3u8" || v.Renditions[0].URL != "http://edge.test/media/videos/1/hls/v0/index.m3u8" {
		t.Fatalf("urls: %+v", v)
	}
	var events int
	db.R.QueryRow(`SELECT COUNT(*) FROM events WHERE subject_id = ?`, id).Scan(&events)
	if events != 2 { // video.uploaded + video.ready
		t.Fatalf("events = %d, want 2", events)
	}
	if _, err := m2.Get(ctx, 12345); errs.KindOf(err) != errs.NotFound {
		t.Fatalf("unknown id: %v", err)
	}
	list, next, err := m2.List(ctx, ListOptions{Status: StatusReady, Limit: 1})
	if err != nil || len(list) != 1 || next != 0 {
		t.Fatalf("list: %d %d %v", len(list), next, err)
	}
}
