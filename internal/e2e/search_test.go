package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/blueprint-media/blueprint/client"
)

// TestSearch: a video uploaded through the API is found, once ready, by a
// misspelled word and by a prefix, through the gateway; its creator is
// found among creators; bad queries get 400; the operator's status shows
// the index. The poll is bounded only to stop a broken run; how long the
// video took to show up is logged, not asserted.
func TestSearch(t *testing.T) {
	p := startPlatform(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := p.user(t, "searchfan")

	clip := filepath.Join(clipDir(t), "walrus.mp4")
	makeClip(t, clip, 320, 240, 1, false)
	up, err := c.Upload(ctx, clip, client.UploadOptions{
		Title:       "Walrus colony documentary",
		Description: "A summer on the ice floes of Svalbard. #arctic #wildlife",
	})
	if err != nil {
		t.Fatal(err)
	}
	// Not searchable while it is processing (it may finish fast, so this
	// only checks when the status says processing afterwards too).
	if res, err := c.Search(ctx, "walrus ", client.SearchOptions{}); err != nil {
		t.Fatal(err)
	} else if len(res.Hits) > 0 {
		if v, _ := c.Video(ctx, up.VideoID); v.Status != "ready" {
			t.Fatalf("a video in status %q is searchable: %+v", v.Status, res.Hits)
		}
	}
	if _, err := c.WaitReady(ctx, up.VideoID, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	ready := time.Now()

	anon := client.New(p.urls.Gateway) // search needs no login
	find := func(q string, opts client.SearchOptions) client.SearchResult {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			res, err := anon.Search(ctx, q, opts)
			if err != nil {
				t.Fatalf("search %q: %v", q, err)
			}
			for _, h := range res.Hits {
				if h.ID == up.VideoID || (h.Type == "creator" && h.Title == "searchfan") {
					return res
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("search %q never found the video: last answer %+v", q, res)
			}
		}
	}
	misspelled := find("walrsu documentery", client.SearchOptions{})
	t.Logf("searchable %v after the video was reported ready", time.Since(ready).Round(time.Millisecond))
	h := misspelled.Hits[0]
	if h.ID != up.VideoID || h.Title != "Walrus colony documentary" || h.Creator != "searchfan" || h.URL != "/watch/"+up.VideoID ||
		h.ThumbnailURL == "" || strings.Join(h.Tags, ",") != "arctic,wildlife" {
		t.Fatalf("hit: %+v", h)
	}
	find("walr", client.SearchOptions{})          // prefix, as typed
	find("svalbard colo", client.SearchOptions{}) // a description word and a prefix
	find("#wildlife", client.SearchOptions{})     // a tag
	find("searchf", client.SearchOptions{Type: "creators"})

	var apiErr *client.Error
	if _, err := anon.Search(ctx, strings.Repeat("long ", 50), client.SearchOptions{}); !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest {
		t.Fatalf("an over-long query: %v, want 400", err)
	}
	if _, err := anon.Search(ctx, "walrus", client.SearchOptions{Size: 500}); !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest {
		t.Fatalf("a page of 500: %v, want 400", err)
	}

	// The search page renders results server-side for ?q=.
	resp, body := get(t, p.urls.Gateway+"/search?q=walrus")
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Walrus colony documentary") {
		t.Fatalf("search page: %d\n%s", resp.StatusCode, body)
	}

	// The page in a real browser: results appear as the user types, the
	// URL follows, the keyboard moves into the results.
	t.Run("Browser", func(t *testing.T) {
		bctx := newBrowser(t)
		bctx, cancel := context.WithTimeout(bctx, time.Minute)
		defer cancel()
		err := chromedp.Do(bctx,
			chromedp.Navigate(p.urls.Gateway+"/search"),
			chromedp.WaitVisible(`#q`),
			chromedp.SendKeys(`#q`, "walr"),
		)
		if err != nil {
			t.Fatal(err)
		}
		waitJS := func(what, js string) {
			t.Helper()
			for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				ok, err := chromedp.Run(bctx, chromedp.Evaluate[bool](js))
				if err == nil && ok {
					return
				}
				if time.Now().After(deadline) {
					page, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector('main').innerText`))
					t.Fatalf("%s never happened; page:\n%s", what, page)
				}
			}
		}
		waitJS("a result for the prefix", `[...document.querySelectorAll('#results a.hit')].some(a => a.textContent.includes('Walrus colony documentary'))`)
		waitJS("the URL to follow the query", `location.search.includes('q=walr')`)
		// Keep typing into a misspelled query: the results follow.
		if err := chromedp.Do(bctx, chromedp.SendKeys(`#q`, "su documentery")); err != nil {
			t.Fatal(err)
		}
		waitJS("a result for the misspelled query", `document.getElementById('q').value === 'walrsu documentery' && location.search.includes('documentery') && document.querySelectorAll('#results a.hit').length === 1`)
		if err := chromedp.Do(bctx, chromedp.KeyEvent(kb.ArrowDown)); err != nil {
			t.Fatal(err)
		}
		waitJS("ArrowDown to focus the first result", `document.activeElement && document.activeElement.matches('#results a.hit')`)
		// A query that is too long gets the server's reason, not a crash.
		if err := chromedp.Do(bctx, chromedp.Navigate(p.urls.Gateway+"/search?q="+strings.Repeat("x", 201))); err != nil {
			t.Fatal(err)
		}
		waitJS("the reason for a bad query", `document.getElementById('search-status').textContent.includes('longer than')`)
	})

	// The operator sees the index.
	resp, body = get(t, p.urls.Admin+"/search/status")
	var st struct {
		Driver     string
		Documents  int64
		Subscribed bool
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &st) != nil || st.Driver != "bleve" || st.Documents < 2 || !st.Subscribed {
		t.Fatalf("search status: %d %s", resp.StatusCode, body)
	}
}
