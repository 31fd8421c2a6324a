package e2e

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// newBrowser starts a headless Debian Chromium with its own profile.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	requireTool(t, "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath("/usr/bin/chromium"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.Flag("headless", "new"),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil { // launches the browser
		t.Fatalf("chromium did not start: %v", err)
	}
	return ctx
}

// settle waits until the page at path want has finished
// loading, then runs actions, retrying a few times: right after a
// navigation chromedp may still hold node IDs of the previous document
// ("Could not find node with given id").
func settle(ctx context.Context, t *testing.T, want string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	var err error
	for attempt := range 10 {
		if attempt > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		loc, lerr := chromedp.Run(ctx, chromedp.Location())
		ready, rerr := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.readyState === 'complete'`))
		u, _ := url.Parse(loc)
		if lerr != nil || rerr != nil || u == nil || u.Path != want || !ready {
			err = fmt.Errorf("page not ready: %s %v %v", loc, lerr, rerr)
			continue
		}
		if err = chromedp.Do(ctx, actions...); err == nil {
			return
		}
	}
	t.Fatalf("on %s: %v", want, err)
}

// TestBrowserUploadAndPlayback drives the real web UI in headless
// Chromium: log in through the form, upload through the upload page
// (tus-js-client), land on the watch page, and play the HLS stream with
// hls.js until playback is past 2 s.
func TestBrowserUploadAndPlayback(t *testing.T) {
	p := startPlatform(t, nil)
	c := p.user(t, "bea")
	clip := filepath.Join(clipDir(t), "browser.mp4")
	makeClip(t, clip, 854, 480, 8, true)

	bctx := newBrowser(t)
	ctx, cancel := context.WithTimeout(bctx, 3*time.Minute)
	defer cancel()
	base := p.urls.Gateway

	// Log in through the form.
	err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/login?next=/upload"),
		chromedp.WaitVisible(`input[name=username]`),
		chromedp.SendKeys(`input[name=username]`, "bea"),
		chromedp.SendKeys(`input[name=password]`, "password-bea"),
		chromedp.Submit(`input[name=password]`),
	)
	if err != nil {
		t.Fatalf("log in: %v", err)
	}
	settle(ctx, t, "/upload", chromedp.WaitVisible(`#upload-form`))
	who, err := chromedp.Run(ctx, chromedp.Text(`.who`))
	if err != nil {
		t.Fatal(err)
	}
	if who != "bea" {
		t.Fatalf("logged in as %q", who)
	}

	// Upload through the page; it redirects to the watch page when done.
	settle(ctx, t, "/upload",
		chromedp.SetUploadFiles(`#file`, []string{clip}),
		chromedp.SendKeys(`#title`, "Browser upload"),
	)
	err = chromedp.Do(ctx,
		chromedp.Click(`#start`),
		chromedp.WaitVisible(`article.watch`),
	)
	if err != nil {
		status, _ := chromedp.Run(ctx, chromedp.Text(`#status`))
		t.Fatalf("upload through the page: %v (status: %q)", err, status)
	}
	watchURL, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(watchURL, "/watch/") {
		t.Fatalf("after upload the browser is at %s", watchURL)
	}
	id := watchURL[strings.LastIndex(watchURL, "/")+1:]
	v, err := c.WaitReady(ctx, id, 250*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if v.Title != "Browser upload" {
		t.Fatalf("title %q", v.Title)
	}

	// The page polls the status and reloads itself once ready; then
	// hls.js plays. Assert that playback advances past 2 s.
	deadline := time.Now().Add(90 * time.Second)
	var current float64
	for time.Now().Before(deadline) {
		var err error
		current, err = chromedp.Run(ctx,
			chromedp.Evaluate[float64](`(function(){const v=document.getElementById('video'); if(!v) return -1; if(v.paused) v.play().catch(()=>{}); return v.currentTime;})()`),
		)
		if err != nil {
			t.Fatal(err)
		}
		if current > 2 {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if current <= 2 {
		diag, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({status: document.querySelector('article.watch').dataset.status, src: (document.getElementById('video')||{}).dataset, err: (document.getElementById('video')||{}).error, hls: !!window.blueprintHls, mse: !!window.MediaSource, h264: window.MediaSource && MediaSource.isTypeSupported('video/mp4; codecs="avc1.64001f,mp4a.40.2"')})`))
		t.Fatalf("playback did not advance past 2 s (currentTime %.2f); page: %s", current, diag)
	}
	levels, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`window.blueprintHls ? window.blueprintHls.levels.length : 0`))
	if levels < 3 {
		t.Fatalf("hls.js sees %d quality levels, want ≥ 3", levels)
	}
	options, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#quality option').length`))
	if options < 4 { // Auto + 3 rungs
		t.Fatalf("quality selector has %d options", options)
	}
	t.Logf("playback at %.2f s with %d levels", current, levels)

	// Screenshot for humans (kept when BLUEPRINT_TEST_SCREENSHOTS is set).
	if dir := os.Getenv("BLUEPRINT_TEST_SCREENSHOTS"); dir != "" {
		png, _ := chromedp.Run(ctx, chromedp.FullScreenshot(90))
		os.WriteFile(filepath.Join(dir, "watch.png"), png, 0o644)
	}
}

// statusJS reads the upload page's status line without waiting for it to
// exist (chromedp.Text would block once the page has moved on).
const statusJS = `(document.getElementById('status') || {}).textContent || ''`

// TestBrowserUploadResumesAfterReload: an upload paused partway, then the
// page reloaded and the same file picked again, continues where it stopped
// (tus-js-client's stored fingerprint) instead of starting over.
func TestBrowserUploadResumesAfterReload(t *testing.T) {
	p := startPlatform(t, nil)
	p.user(t, "rex")
	file := filepath.Join(clipDir(t), "big.bin")
	data := make([]byte, 48<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	bctx := newBrowser(t)
	ctx, cancel := context.WithTimeout(bctx, 2*time.Minute)
	defer cancel()
	err := chromedp.Do(ctx,
		chromedp.Navigate(p.urls.Gateway+"/login?next=/upload"),
		chromedp.WaitVisible(`input[name=username]`),
		chromedp.SendKeys(`input[name=username]`, "rex"),
		chromedp.SendKeys(`input[name=password]`, "password-rex"),
		chromedp.Submit(`input[name=password]`),
	)
	if err != nil {
		t.Fatal(err)
	}
	settle(ctx, t, "/upload", chromedp.WaitVisible(`#upload-form`), chromedp.SetUploadFiles(`#file`, []string{file}))
	// Pause the upload once a third of it is sent: wrap tus.Upload so the
	// page's own Pause button is clicked from the progress callback.
	_, err = chromedp.Run(ctx, chromedp.Evaluate[bool](`(function(){
		const Orig = tus.Upload;
		tus.Upload = function(file, opts) {
			const onProgress = opts.onProgress;
			opts.onProgress = function(sent, total) {
				onProgress(sent, total);
				if (!window.__paused && sent > total / 3) {
					window.__paused = true;
					document.getElementById('pause').click();
				}
			};
			return new Orig(file, opts);
		};
		return true;
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(`#start`)); err != nil {
		t.Fatal(err)
	}
	var status string
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(status, "Paused"); {
		if time.Now().After(deadline) {
			t.Fatalf("upload never paused; status %q", status)
		}
		time.Sleep(50 * time.Millisecond)
		status, _ = chromedp.Run(ctx, chromedp.Evaluate[string](statusJS))
	}
	pausedAt, _ := chromedp.Run(ctx, chromedp.Evaluate[float64](`document.getElementById('bar').value`))
	if pausedAt <= 0 || pausedAt >= 100 {
		t.Fatalf("paused at %v%%", pausedAt)
	}

	// Reload the page and pick the same file again.
	if err := chromedp.Do(ctx, chromedp.Navigate(p.urls.Gateway+"/upload")); err != nil {
		t.Fatal(err)
	}
	settle(ctx, t, "/upload", chromedp.WaitVisible(`#upload-form`), chromedp.SetUploadFiles(`#file`, []string{file}))
	if err := chromedp.Do(ctx, chromedp.Click(`#start`)); err != nil {
		t.Fatal(err)
	}
	resumed := false
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		if strings.Contains(loc, "/watch/") {
			break
		}
		if s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](statusJS)); strings.Contains(s, "Resuming") {
			resumed = true
		}
	}
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	status, _ = chromedp.Run(ctx, chromedp.Evaluate[string](statusJS))
	if !resumed || !strings.Contains(loc, "/watch/") {
		t.Fatalf("after the reload: resumed=%v, page %s, status %q", resumed, loc, status)
	}
	db, err := sqlstore.Open(context.Background(), filepath.Join(p.dir, "blueprint.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var uploads, finished int
	db.R.QueryRow(`SELECT COUNT(*), SUM(state = 'finished') FROM uploads`).Scan(&uploads, &finished)
	if uploads != 1 || finished != 1 {
		t.Fatalf("uploads %d (finished %d); want exactly one upload, resumed and finished", uploads, finished)
	}
}
