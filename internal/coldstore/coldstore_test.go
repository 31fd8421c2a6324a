package coldstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/blob"
	"github.com/blueprint-media/blueprint/internal/origin"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

var errCrash = errors.New("crash")

type fixture struct {
	m      *Mover
	blobs  blob.Store
	origin *httptest.Server
	files  map[string][]byte
}

func setup(t *testing.T) *fixture {
	t.Helper()
	db := testenv.Store(t)
	store, err := blob.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	db.W.Exec(`INSERT INTO users(id, username, email, password_hash, created_at) VALUES (1, 'u', 'u@example.com', 'x', 0)`)
	f := &fixture{blobs: store, files: map[string][]byte{}}
	for id := int64(10); id < 14; id++ {
		viewed := now.Add(-40 * 24 * time.Hour).Unix() // idle
		if id == 13 {
			viewed = now.Add(-time.Hour).Unix() // watched recently: stays hot
		}
		if _, err := db.W.Exec(`INSERT INTO videos(id, user_id, title, status, source_key, source_size, created_at, updated_at, ready_at, last_viewed_at)
			VALUES (?, 1, 't', 'ready', 'k', 1, 0, 0, 0, ?)`, id, viewed); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"source", "master.m3u8", "v0/seg000.m4s", "v0/seg001.m4s"} {
			key := fmt.Sprintf("videos/%d/%s", id, name)
			data := bytes.Repeat([]byte(key), 100)
			if _, err := store.Put(context.Background(), key, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			f.files[key] = data
		}
	}
	f.m = New(db, store, Config{IdleAfter: 30 * 24 * time.Hour, Batch: 10}, slog.New(slog.DiscardHandler), nil)
	f.origin = httptest.NewServer(origin.Handler(store))
	t.Cleanup(f.origin.Close)
	return f
}

// servedAll checks that the origin serves every object with its bytes.
func (f *fixture) servedAll(t *testing.T, when string) {
	t.Helper()
	for key, want := range f.files {
		resp, err := http.Get(f.origin.URL + origin.Prefix + key)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(got, want) {
			t.Fatalf("%s: %s served %d, %d bytes", when, key, resp.StatusCode, len(got))
		}
	}
}

func (f *fixture) count(t *testing.T, prefix string) int {
	list, err := f.blobs.List(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	return len(list)
}

// TestKilledAtEveryStep crashes the move at each of its steps in turn,
// restarting it after each crash; every object stays served throughout,
// and the end state is the same as an uninterrupted run's.
func TestKilledAtEveryStep(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	crashes := 0
	seen := map[string]bool{}
	for round := 0; ; round++ {
		if round > 200 {
			t.Fatal("the move never finished")
		}
		// Crash at the first step not crashed at yet.
		f.m.crashAt = func(step string) error {
			if !seen[step] {
				seen[step] = true
				crashes++
				return errCrash
			}
			return nil
		}
		n, err := f.m.RunOnce(ctx)
		f.servedAll(t, fmt.Sprintf("after round %d", round))
		if err == nil && n == 0 {
			break
		}
		if err != nil && !errors.Is(err, errCrash) {
			t.Fatal(err)
		}
	}
	t.Logf("%d crashes, one at each step", crashes)
	if crashes < 3*(1+4+4) {
		t.Errorf("only %d crash points exercised", crashes)
	}
	if hot, cold := f.count(t, "videos/"), f.count(t, ColdPrefix); hot != 4 || cold != 12 {
		t.Errorf("%d hot and %d cold objects, want 4 (the watched item) and 12", hot, cold)
	}
	var moving, coldItems int
	f.m.db.R.QueryRow(`SELECT COUNT(*) FROM videos WHERE storage = 'moving'`).Scan(&moving)
	f.m.db.R.QueryRow(`SELECT COUNT(*) FROM videos WHERE storage = 'cold'`).Scan(&coldItems)
	if moving != 0 || coldItems != 3 {
		t.Errorf("%d items moving, %d cold; want 0 and 3", moving, coldItems)
	}
	// Idempotent: another run does nothing.
	f.m.crashAt = nil
	if n, err := f.m.RunOnce(ctx); n != 0 || err != nil {
		t.Errorf("a run after the moves: %d, %v", n, err)
	}
}

// TestCorruptCopyIsRedone: a cold copy that does not match its source is
// copied again, never trusted.
func TestCorruptCopyIsRedone(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	f.blobs.Put(ctx, ColdPrefix+"videos/10/source", bytes.NewReader([]byte("garbage")))
	if _, err := f.m.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	o, err := f.blobs.Open(ctx, ColdPrefix+"videos/10/source")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(o)
	o.Close()
	if !bytes.Equal(got, f.files["videos/10/source"]) {
		t.Fatal("the corrupt cold copy was kept")
	}
	f.servedAll(t, "after the move")
}
