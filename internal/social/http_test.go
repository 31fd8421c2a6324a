package social

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/blueprint-media/blueprint/internal/account"
	"github.com/blueprint-media/blueprint/internal/media"
	"github.com/blueprint-media/blueprint/internal/web"
)

// TestHTTP drives the module's API as the frontend mounts it: the caller's
// identity in the request context, errors as 4xx with a reason.
func TestHTTP(t *testing.T) {
	w := newWorld(t, 10)
	creator, fan := w.user(), w.user()
	video := w.video(creator, true)
	pages, err := web.NewPages()
	if err != nil {
		t.Fatal(err)
	}
	m := &Module{S: w.s, Media: media.New(w.db, nil, "http://edge/media/", slog.New(slog.DiscardHandler)), Pages: pages,
		Logger: slog.New(slog.DiscardHandler), MaxBodyBytes: 1 << 16}
	mux := http.NewServeMux()
	m.Routes(mux, "frontend-1")
	do := func(user int64, method, path, body string) (int, map[string]any) {
		t.Helper()
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if user != 0 {
			req = req.WithContext(account.NewContext(req.Context(), account.Identity{UserID: user, Username: fmt.Sprint("u", user)}))
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		var out map[string]any
		b, _ := io.ReadAll(rec.Body)
		json.Unmarshal(b, &out)
		return rec.Code, out
	}
	v, c := fmt.Sprint(video), fmt.Sprint(creator)
	for _, tc := range []struct {
		user         int64
		method, path string
		body         string
		want         int
	}{
		{0, "POST", "/api/v1/users/" + c + "/follow", "", 401},
		{fan, "POST", "/api/v1/users/nope/follow", "", 404},
		{fan, "POST", "/api/v1/users/" + fmt.Sprint(fan) + "/follow", "", 400},
		{fan, "POST", "/api/v1/users/" + c + "/follow", "", 200},
		{0, "GET", "/api/v1/users/" + c + "/stats", "", 200},
		{fan, "POST", "/api/v1/videos/" + v + "/like", "", 200},
		{fan, "POST", "/api/v1/videos/" + v + "/comments", `{"body":""}`, 400},
		{fan, "POST", "/api/v1/videos/" + v + "/comments", `{not json`, 400},
		{fan, "POST", "/api/v1/videos/" + v + "/comments", `{"body":"nice"}`, 201},
		{0, "GET", "/api/v1/videos/" + v + "/comments?limit=500", "", 400},
		{0, "GET", "/api/v1/videos/" + v + "/comments", "", 200},
		{0, "GET", "/api/v1/videos/" + v + "/social", "", 200},
		{fan, "GET", "/api/v1/feed?cursor=x", "", 400},
		{fan, "GET", "/api/v1/feed", "", 200},
		{0, "GET", "/api/v1/feed", "", 401},
		{fan, "DELETE", "/api/v1/videos/" + v + "/like", "", 200},
	} {
		code, out := do(tc.user, tc.method, tc.path, tc.body)
		if code != tc.want {
			t.Errorf("%s %s as %d: %d %v, want %d", tc.method, tc.path, tc.user, code, out, tc.want)
		}
		if reason, _ := out["error"].(string); code >= 400 && reason == "" {
			t.Errorf("%s %s: %d without a reason", tc.method, tc.path, code)
		}
	}
	code, out := do(fan, "GET", "/api/v1/videos/"+v+"/social", "")
	if code != 200 || out["comments"] != float64(1) || out["liked"] != false {
		t.Errorf("social summary: %d %v", code, out)
	}
	cr, _ := out["creator"].(map[string]any)
	if cr["followed_by_me"] != true || cr["followers"] != float64(1) {
		t.Errorf("creator stats: %v", cr)
	}
	// The feed page renders for a logged-in user and redirects anonymous ones.
	req := httptest.NewRequest("GET", "/feed", nil)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	if rec.Code != http.StatusSeeOther {
		t.Errorf("anonymous /feed: %d, want a redirect to the login", rec.Code)
	}
}
