package search

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/outbox"
	"github.com/blueprint-media/blueprint/internal/queue"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

type env struct {
	dir    string
	db     *sqlstore.DB
	q      *queue.Queue
	logger *slog.Logger
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := sqlstore.Open(ctx, filepath.Join(dir, "bp.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	b := queue.NewBroker(queue.BrokerConfig{StoreDir: filepath.Join(dir, "broker")}, logger)
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Stop(ctx) })
	q, err := queue.Connect(ctx, "", b, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	return &env{dir: dir, db: db, q: q, logger: logger}
}

// relay runs the outbox relay until the test ends.
func (e *env) relay(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); outbox.NewRelay(e.db, e.q, e.logger, nil).Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func (e *env) openBleve(t *testing.T, path string) *Bleve {
	t.Helper()
	b, err := OpenBleve(BleveConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (e *env) exec(t *testing.T, f func(tx *sql.Tx) error) {
	t.Helper()
	if err := e.db.Tx(context.Background(), f); err != nil {
		t.Fatal(err)
	}
}

func (e *env) addUser(t *testing.T, id int64, name string) {
	t.Helper()
	e.exec(t, func(tx *sql.Tx) error {
		if _, err := tx.Exec(`INSERT INTO users(id, username, email, password_hash, created_at) VALUES (?, ?, ?, 'x', ?)`,
			id, name, name+"@example.com", time.Now().Unix()); err != nil {
			return err
		}
		return outbox.Insert(context.Background(), tx, "user.created", id, map[string]string{"username": name})
	})
}

func (e *env) addVideo(t *testing.T, id, user int64, title, desc string) {
	t.Helper()
	now := time.Now().Unix()
	e.exec(t, func(tx *sql.Tx) error {
		if _, err := tx.Exec(`INSERT INTO videos(id, user_id, title, description, status, source_key, source_size, created_at, updated_at)
			VALUES (?, ?, ?, ?, 'processing', 'src', 1, ?, ?)`, id, user, title, desc, now, now); err != nil {
			return err
		}
		return outbox.Insert(context.Background(), tx, "video.uploaded", id, nil)
	})
}

func (e *env) finish(t *testing.T, id int64, status string) {
	t.Helper()
	e.exec(t, func(tx *sql.Tx) error {
		if _, err := tx.Exec(`UPDATE videos SET status = ?, thumbnail_key = 'thumbs/x.jpg', ready_at = ? WHERE id = ?`, status, time.Now().Unix(), id); err != nil {
			return err
		}
		return outbox.Insert(context.Background(), tx, "video."+status, id, nil)
	})
}

func (e *env) like(t *testing.T, video, user, owner int64) {
	t.Helper()
	e.exec(t, func(tx *sql.Tx) error {
		return outbox.Insert(context.Background(), tx, "video.liked", video, map[string]string{
			"user_id": itoa(user), "video_owner_id": itoa(owner),
		})
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// eventually polls cond for up to 15 s; the bound only stops a broken
// test, it does not measure anything.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func hits(t *testing.T, idx Index, typ DocType, text string) []Hit {
	t.Helper()
	res, err := idx.Search(context.Background(), Query{Text: text, Type: typ})
	if err != nil {
		t.Fatal(err)
	}
	return res.Hits
}

// TestIndexerFollowsEvents: creators on sign-up, videos only once ready,
// found by a misspelled word and by a prefix, likes counted on the video
// and its creator, failed videos removed.
func TestIndexerFollowsEvents(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	b := e.openBleve(t, filepath.Join(e.dir, "search"))
	defer b.Close()
	ix := NewIndexer(b, e.db, e.q, e.logger, nil)
	if err := ix.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer ix.Stop(ctx)
	e.relay(t)

	e.addUser(t, 1, "gracehopper")
	eventually(t, "the creator document", func() bool { return len(hits(t, b, Creator, "gracehop")) == 1 })

	e.addVideo(t, 10, 1, "Debugging the harvard mark", "The first actual bug, found in a relay. #history #computing")
	e.addVideo(t, 11, 1, "Compilers explained", "")
	time.Sleep(300 * time.Millisecond) // the uploads' events are not for us; give them a chance to do harm
	if h := hits(t, b, Video, "debugging"); len(h) != 0 {
		t.Fatalf("a processing video is searchable: %+v", h)
	}
	e.finish(t, 10, "ready")
	e.finish(t, 11, "failed")
	eventually(t, "the ready video", func() bool { return len(hits(t, b, Video, "debuging ")) == 1 })
	if h := hits(t, b, Video, "harv"); len(h) != 1 || h[0].ID != 10 || h[0].Creator != "gracehopper" || h[0].Thumbnail != "thumbs/x.jpg" {
		t.Fatalf("prefix search: %+v", h)
	}
	if h := hits(t, b, Video, "computing "); len(h) != 1 || len(h[0].Tags) != 2 {
		t.Fatalf("tag search: %+v", h)
	}
	if h := hits(t, b, Video, "compilers"); len(h) != 0 {
		t.Fatalf("a failed video is searchable: %+v", h)
	}

	e.like(t, 10, 2, 1)
	e.like(t, 10, 3, 1)
	eventually(t, "two likes on the video and its creator", func() bool {
		h := hits(t, b, Video, "debugging")
		c := hits(t, b, Creator, "gracehopper")
		return len(h) == 1 && h[0].Popularity == 2 && len(c) == 1 && c[0].Popularity == 2
	})
	st := ix.Status(ctx)
	if !st.Subscribed || st.Documents != 2 || st.LastEventID == 0 || st.PendingEvents == nil {
		t.Fatalf("status: %+v", st)
	}
}

// TestIndexerCrashBetweenIndexAndCommit: the handler wrote the index but
// its transaction rolled back (the process died before the commit); the
// redelivered event leaves the index as one application would.
func TestIndexerCrashBetweenIndexAndCommit(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	b := e.openBleve(t, filepath.Join(e.dir, "search"))
	defer b.Close()
	ix := NewIndexer(b, e.db, e.q, e.logger, nil)
	e.addUser(t, 1, "ada")
	e.addVideo(t, 10, 1, "Analytical engine", "")
	e.exec(t, func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE videos SET status = 'ready' WHERE id = 10`)
		return err
	})

	like := outbox.Event{ID: 99, Kind: "video.liked", SubjectID: 10, Payload: []byte(`{"user_id":"5","video_owner_id":"1"}`), CreatedAt: time.Now()}
	ready := outbox.Event{ID: 98, Kind: "video.ready", SubjectID: 10, Payload: []byte(`{}`), CreatedAt: time.Now()}
	// First delivery: applied to the index, then the transaction is lost.
	for _, ev := range []outbox.Event{ready, like} {
		tx, err := e.db.W.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := ix.apply(ctx, tx, ev); err != nil {
			t.Fatal(err)
		}
		tx.Rollback()
	}
	// Redelivery: applied and committed.
	for _, ev := range []outbox.Event{ready, like} {
		e.exec(t, func(tx *sql.Tx) error { return ix.apply(ctx, tx, ev) })
	}
	h := hits(t, b, Video, "analytical")
	if len(h) != 1 || h[0].Popularity != 1 {
		t.Fatalf("after a lost commit and a redelivery: %+v, want one hit with 1 like", h)
	}
	if h := hits(t, b, Creator, "ada"); len(h) != 1 || h[0].Popularity != 1 {
		t.Fatalf("creator after a lost commit and a redelivery: %+v, want one hit with 1 like", h)
	}
	if n, _ := b.Count(ctx); n != 2 {
		t.Fatalf("%d documents, want 2 (the video and its creator)", n)
	}
	// A malformed payload does not wedge the consumer.
	bad := outbox.Event{ID: 100, Kind: "video.liked", SubjectID: 10, Payload: []byte(`not json`), CreatedAt: time.Now()}
	e.exec(t, func(tx *sql.Tx) error { return ix.apply(ctx, tx, bad) })
}

// TestReindexRecoversLostIndex: the index directory is deleted; at the
// next start the index is rebuilt from the tables, like counters included,
// and events keep flowing afterwards.
func TestReindexRecoversLostIndex(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	path := filepath.Join(e.dir, "search")
	e.relay(t)

	b := e.openBleve(t, path)
	ix := NewIndexer(b, e.db, e.q, e.logger, nil)
	if err := ix.Start(ctx); err != nil {
		t.Fatal(err)
	}
	e.addUser(t, 1, "linus")
	for i := range 30 {
		e.addVideo(t, int64(100+i), 1, "kernel hacking part "+itoa(int64(i)), "")
		e.finish(t, int64(100+i), "ready")
	}
	e.like(t, 100, 2, 1)
	eventually(t, "31 documents", func() bool { n, _ := b.Count(ctx); return n == 31 })
	eventually(t, "the like", func() bool {
		for _, h := range hits(t, b, Video, "kernel 0 ") {
			if h.ID == 100 {
				return h.Popularity == 1
			}
		}
		return false
	})
	// The index shows the like before its transaction commits; stopping in
	// between would roll it back and leave it to a redelivery after the
	// ack wait, so wait for the commit.
	eventually(t, "the like's commit", func() bool {
		var likes int
		e.db.R.QueryRow(`SELECT likes FROM search_popularity WHERE kind = 'video' AND id = 100`).Scan(&likes)
		return likes == 1
	})
	if err := ix.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	b.Close()

	if err := os.RemoveAll(path); err != nil {
		t.Fatal(err)
	}
	b = e.openBleve(t, path)
	defer b.Close()
	if !b.Recreated {
		t.Fatal("a missing index was not recreated")
	}
	ix = NewIndexer(b, e.db, e.q, e.logger, nil)
	if need, err := ix.NeedsReindex(ctx); err != nil || !need {
		t.Fatalf("NeedsReindex = %v, %v; want true", need, err)
	}
	if err := ix.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer ix.Stop(ctx)
	eventually(t, "the rebuild", func() bool { n, _ := b.Count(ctx); return n == 31 && ix.Running() })
	if h := hits(t, b, Video, "kernel 0 "); len(h) == 0 || h[0].ID != 100 || h[0].Popularity != 1 {
		t.Fatalf("after the rebuild: %+v", h)
	}
	if need, _ := ix.NeedsReindex(ctx); need {
		t.Fatal("the index still needs a rebuild after one")
	}
	st := ix.Status(ctx)
	if st.LastReindex == nil || st.LastReindex.Videos != 30 || st.LastReindex.Creators != 1 {
		t.Fatalf("status after the rebuild: %+v", st)
	}
	// New events still arrive.
	e.addVideo(t, 500, 1, "scheduler deep dive", "")
	e.finish(t, 500, "ready")
	eventually(t, "a new video after the rebuild", func() bool { return len(hits(t, b, Video, "schedular ")) == 1 })

	// A rebuild cut short is run again at the next start.
	e.exec(t, func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO search_state(key, value) VALUES ('reindex_started', 'x')`)
		return err
	})
	if need, _ := ix.NeedsReindex(ctx); !need {
		t.Fatal("an unfinished rebuild is not noticed")
	}
}

// TestBleveOlderLayout: an index written by an older layout of this
// package is deleted and recreated empty, not kept aside.
func TestBleveOlderLayout(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "search")
	b, err := OpenBleve(BleveConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Upsert(ctx, Doc{Type: Video, ID: 1, Title: "old"}); err != nil {
		t.Fatal(err)
	}
	if err := b.idx.SetInternal([]byte(bleveLayoutKey), []byte("blueprint-search-0")); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b, err = OpenBleve(BleveConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if !b.Recreated || b.MovedAside != "" {
		t.Fatalf("older layout: recreated %v, moved aside to %q", b.Recreated, b.MovedAside)
	}
	if n, _ := b.Count(ctx); n != 0 {
		t.Fatalf("%d documents survived a layout change", n)
	}
}
