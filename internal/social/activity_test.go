package social

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/blueprint-media/blueprint/internal/account"
	"github.com/blueprint-media/blueprint/internal/kvstore"
)

// TestActivity: first follows, first likes and comments are recorded,
// newest first, capped; repeats and refused actions are not; the API
// serves the caller's own list.
func TestActivity(t *testing.T) {
	ctx := context.Background()
	kv, err := kvstore.OpenPebble(filepath.Join(t.TempDir(), "kv"))
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	w := newWorld(t, 10)
	w.s.cfg.Activity = &ActivityLog{KV: kv, MaxLen: 4}
	me, creator := w.user(), w.user()
	video := w.video(creator, true)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.s.Follow(ctx, me, creator))
	must(w.s.Follow(ctx, me, creator)) // already following: nothing new
	if err := w.s.Follow(ctx, me, me); err == nil {
		t.Fatal("self-follow accepted")
	}
	_, err = w.s.Like(ctx, me, video)
	must(err)
	_, err = w.s.Like(ctx, me, video) // second like: a no-op
	must(err)
	_, err = w.s.Unlike(ctx, me, video)
	must(err)
	_, err = w.s.AddComment(ctx, me, video, "nice")
	must(err)
	got, err := w.s.Activity(ctx, me, 10)
	must(err)
	want := []Activity{{Kind: "comment", Target: video}, {Kind: "like", Target: video}, {Kind: "follow", Target: creator}}
	if len(got) != len(want) {
		t.Fatalf("activity %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Kind != want[i].Kind || got[i].Target != want[i].Target || got[i].At.IsZero() {
			t.Fatalf("activity %+v, want %+v", got, want)
		}
	}
	for range 2 { // five entries: the cap keeps the newest four
		_, err = w.s.AddComment(ctx, me, video, "again")
		must(err)
	}
	if got, _ := w.s.Activity(ctx, me, 10); len(got) != 4 || got[3].Kind != "like" || got[2].Kind != "comment" {
		t.Fatalf("after the cap of 4: %+v", got)
	}
	if got, _ := w.s.Activity(ctx, creator, 10); len(got) != 0 {
		t.Fatalf("the creator did nothing, activity %+v", got)
	}

	m := &Module{S: w.s, Logger: slog.New(slog.DiscardHandler)}
	mux := http.NewServeMux()
	m.Routes(mux, "frontend-1")
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/activity", nil))
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("anonymous: %d, want 401", rec.Code)
	}
	req := httptest.NewRequest("GET", "/api/v1/activity?limit=2", nil)
	req = req.WithContext(account.NewContext(req.Context(), account.Identity{UserID: me, Username: fmt.Sprint("u", me)}))
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	var body struct {
		Items []struct {
			Kind   string `json:"kind"`
			Target string `json:"target_id"`
		} `json:"items"`
		Enabled bool `json:"enabled"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != 200 || len(body.Items) != 2 || !body.Enabled ||
		body.Items[0].Kind != "comment" || body.Items[0].Target != fmt.Sprint(video) {
		t.Errorf("GET /api/v1/activity: %d %s", rec.Code, rec.Body)
	}
}
