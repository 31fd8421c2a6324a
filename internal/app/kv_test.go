package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/config"
	"github.com/blueprint-media/blueprint/internal/kvstore"
	"github.com/blueprint-media/blueprint/internal/outbox"
	"github.com/blueprint-media/blueprint/internal/social"
	"github.com/blueprint-media/blueprint/internal/telemetry"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

// kvDefault is the kv section's default: Pebble in data_dir/kv, feeds in it.
var kvDefault = config.KV{Feeds: "kvstore", FeedLength: 1000, Activity: 100}

func kvTestApp(dir string) *App {
	cfg := config.Default()
	cfg.DataDir = dir
	return &App{cfg: cfg, logger: slog.New(slog.NewTextHandler(io.Discard, nil)), checks: &telemetry.Checks{}}
}

// TestHoldPebble is not a test on its own: run by TestFeedStoreLockedPebble
// as a child process, it holds the Pebble directory named in its
// environment until its stdin closes.
func TestHoldPebble(t *testing.T) {
	dir := os.Getenv("BLUEPRINT_TEST_HOLD_PEBBLE")
	if dir == "" {
		return
	}
	s, err := kvstore.OpenPebble(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	os.Stdout.WriteString("held\n")
	io.Copy(io.Discard, os.Stdin)
}

// TestFeedStoreLockedPebble: with kv.url empty the first process keeps the
// feeds in Pebble in data_dir/kv; another process on the same data
// directory finds it locked and falls back to the SQL feed store instead of
// failing to start. In one process a second open is refused the same way.
func TestFeedStoreLockedPebble(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()

	cmd := exec.Command(os.Args[0], "-test.run=^TestHoldPebble$")
	cmd.Env = append(os.Environ(), "BLUEPRINT_TEST_HOLD_PEBBLE="+filepath.Join(dir, "kv"))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(stdout, buf); err != nil || string(buf) != "held\n" {
		t.Fatalf("child: %q, %v", buf, err)
	}
	a := kvTestApp(dir)
	if _, _, err := a.openKV(ctx, kvDefault); !errors.Is(err, errKVLocked) {
		t.Fatalf("open while another process holds data_dir/kv: %v, want errKVLocked", err)
	}
	// A second process on the same data directory refuses to start rather
	// than keep feeds the first process cannot see; with kv.feeds = sql and
	// no activity lists it does not need the store.
	if _, _, err := a.socialStores(ctx, a.logger, kvDefault); !errors.Is(err, errKVLocked) || !strings.Contains(err.Error(), "kv.url") {
		t.Fatalf("social stores while Pebble is locked: %v, want errKVLocked naming kv.url", err)
	}
	feed, activity, err := a.socialStores(ctx, a.logger, config.KV{Feeds: "sql", FeedLength: 1000})
	if err != nil || feed.Name() != "sql" || activity != nil {
		t.Fatalf("kv.feeds = sql, no activity: %v, %v, %v; want the SQL feed store and no activity log", feed, activity, err)
	}
	stdin.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("child: %v", err)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("child did not exit")
	}

	// The lock is free now: this process opens Pebble and keeps feeds there.
	feed, activity, err = a.socialStores(ctx, a.logger, kvDefault)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := feed.(*social.KVFeed); !ok || activity == nil || activity.MaxLen != 100 {
		t.Fatalf("feed store %s, activity log %v with the lock free, want kvstore and one", feed.Name(), activity)
	}
	b := kvTestApp(dir)
	if _, _, err := b.openKV(ctx, kvDefault); !errors.Is(err, errKVLocked) {
		t.Fatalf("second open in one process: %v, want errKVLocked", err)
	}
	for _, stop := range a.stops {
		if err := stop(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := b.openKV(ctx, kvDefault); err != nil {
		t.Fatalf("open after the first App stopped: %v", err)
	}
	for _, stop := range b.stops {
		stop(ctx)
	}
}

// TestFeedStoreRedis: kv.url redis://… and redis-cluster://… put the feeds
// and activity lists in Redis (nothing in data_dir/kv); kv.feeds = sql
// keeps feeds in SQL and opens no store unless activity lists are on; a
// Redis nobody answers at is a startup error.
func TestFeedStoreRedis(t *testing.T) {
	ctx := context.Background()
	r := testenv.StartRedis(t)
	cluster := testenv.StartRedisCluster(t, 3)
	for _, url := range []string{"redis://" + r.Addr, "redis-cluster://" + cluster[0], "redis-cluster://" + strings.Join(cluster, ",")} {
		a := kvTestApp(t.TempDir())
		feed, activity, err := a.socialStores(ctx, a.logger, config.KV{URL: url, Feeds: "kvstore", FeedLength: 10, Activity: 5})
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		kf, ok := feed.(*social.KVFeed)
		if !ok || kf.MaxLen != 10 || activity == nil || activity.KV != kf.KV || activity.MaxLen != 5 {
			t.Fatalf("%s: feed store %#v", url, feed)
		}
		if err := kf.KV.Push(ctx, "feed:1", []byte("12345678"), 10); err != nil {
			t.Fatalf("%s: push: %v", url, err)
		}
		if _, err := os.Stat(filepath.Join(a.cfg.DataDir, "kv")); !os.IsNotExist(err) {
			t.Errorf("%s: data_dir/kv exists (%v)", url, err)
		}
		for _, stop := range a.stops {
			stop(ctx)
		}
	}
	a := kvTestApp(t.TempDir())
	if feed, activity, err := a.socialStores(ctx, a.logger, config.KV{Feeds: "sql", FeedLength: 10}); err != nil || feed.Name() != "sql" || activity != nil || len(a.stops) != 0 {
		t.Errorf("kv.feeds = sql, no activity: %v, %v, %v, %d stops", feed, activity, err, len(a.stops))
	}
	if feed, activity, err := a.socialStores(ctx, a.logger, config.KV{URL: "redis://" + r.Addr, Feeds: "sql", FeedLength: 10, Activity: 3}); err != nil || feed.Name() != "sql" || activity == nil {
		t.Errorf("kv.feeds = sql with activity: %v, %v, %v", feed, activity, err)
	}
	for _, stop := range a.stops {
		stop(ctx)
	}
	if _, _, err := a.socialStores(ctx, a.logger, config.KV{URL: "redis://" + freePort(t), Feeds: "kvstore", FeedLength: 10}); err == nil {
		t.Error("a kv.url nobody answers at: no error")
	}
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestFeedThroughPlatform starts the platform with the default kv section
// (Pebble in data_dir/kv): a follow through the API, then a video.ready
// event through the outbox, reaches the follower's feed through the feed
// consumer, with no feed_items rows written; the follow is in the
// follower's activity list.
func TestFeedThroughPlatform(t *testing.T) {
	a := start(t, testConfig(t))
	gw := a.URLs().Gateway
	do := apiCaller(t, gw)
	login := func(name string) (token, id string) {
		t.Helper()
		if code, out := do("POST", "/api/v1/users", "", `{"username":"`+name+`","email":"`+name+`@example.com","password":"correct horse"}`); code != 201 {
			t.Fatalf("sign up %s: %d %v", name, code, out)
		}
		_, out := do("POST", "/api/v1/sessions", "", `{"username":"`+name+`","password":"correct horse"}`)
		token, _ = out["token"].(string)
		_, me := do("GET", "/api/v1/me", token, "")
		id, _ = me["id"].(string)
		if token == "" || id == "" {
			t.Fatalf("login %s: %v %v", name, out, me)
		}
		return token, id
	}
	_, creatorID := login("creator")
	fanToken, _ := login("fan")
	if code, out := do("POST", "/api/v1/users/"+creatorID+"/follow", fanToken, ""); code != 200 {
		t.Fatalf("follow: %d %v", code, out)
	}
	ctx := context.Background()
	const video = 1 << 50
	err := a.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO videos(id, user_id, title, status, source_key, source_size, created_at, updated_at)
			VALUES (?, ?, 'heron', 'ready', 'k', 1, 0, 0)`, video, creatorID); err != nil {
			return err
		}
		return outbox.Insert(ctx, tx, "video.ready", video, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		_, out := do("GET", "/api/v1/feed", fanToken, "")
		if vs, _ := out["videos"].([]any); len(vs) == 1 {
			if v, _ := vs[0].(map[string]any); v["id"] != fmt.Sprint(video) {
				t.Fatalf("feed %v, want video %d", out, video)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the video never reached the follower's feed: %v", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var rows int
	if err := a.db.R.QueryRow(`SELECT COUNT(*) FROM feed_items`).Scan(&rows); err != nil || rows != 0 {
		t.Errorf("%d feed_items rows (%v), want 0: feeds belong in the key-value store", rows, err)
	}
	if _, err := os.Stat(filepath.Join(a.cfg.DataDir, "kv")); err != nil {
		t.Errorf("data_dir/kv: %v", err)
	}
	_, out := do("GET", "/api/v1/activity", fanToken, "")
	if items, _ := out["items"].([]any); len(items) != 1 || items[0].(map[string]any)["kind"] != "follow" {
		t.Errorf("activity %v, want one follow", out)
	}
}
