package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/cookiejar"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/blueprint-media/blueprint/client"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// TestAnalyticsIngestSIGKILL runs the real blueprint binary, has several
// viewers stream event batches into the analytics ingest, kills the
// process with SIGKILL mid-stream, and starts it again on the same data
// directory. Each viewer retries a batch that got no 202 with the same
// batch ID, as the browser tracker does. In the end every event is counted
// exactly once: watch time, views, retention and the platform's event
// count all equal what was sent — nothing acknowledged was lost, nothing
// retried was doubled.
func TestAnalyticsIngestSIGKILL(t *testing.T) {
	dir := t.TempDir()
	p := &platform{dir: dir}
	httpAddr := freeAddr(t)
	base := "http://" + httpAddr
	args := []string{"--roles", "gateway,frontend,origin,edge,broker", "--data-dir", dir, "--http-addr", httpAddr,
		"--admin-addr", "127.0.0.1:0", "--edge-addr", "127.0.0.1:0", "--gateway-rate-limit", "100000", "--gateway-rate-burst", "100000",
		"--lock-ttl", "1s", "--analytics-fetch-batch", "20"}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	waitUp := func() {
		t.Helper()
		for {
			if resp, err := http.Get(base + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return
				}
			}
			if ctx.Err() != nil {
				t.Fatal("blueprint never came up")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	proc := startProcess(t, p, "blueprint-1", args...)
	waitUp()

	// A creator with videos, written straight into the database the
	// process uses (SQLite allows a second process).
	creator := client.New(base)
	u, err := creator.SignUp(ctx, "crashcreator", "crash@example.com", "password-crash")
	if err != nil {
		t.Fatal(err)
	}
	if err := creator.Login(ctx, "crashcreator", "password-crash"); err != nil {
		t.Fatal(err)
	}
	db, err := sqlstore.Open(ctx, filepath.Join(dir, "blueprint.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const viewers, batches, perBatch = 6, 120, 10
	videos := make([]string, viewers)
	for i := range videos {
		id := int64(7_000_000 + i)
		videos[i] = fmt.Sprint(id)
		if _, err := db.W.ExecContext(ctx, `INSERT INTO videos(id, user_id, kind, title, status, source_key, source_size, duration, created_at, updated_at)
			VALUES (?, ?, 'video', ?, 'ready', 'src', 0, 10000, unixepoch(), unixepoch())`, id, u.ID, fmt.Sprintf("crash %d", i)); err != nil {
			t.Fatal(err)
		}
	}

	// Viewers: one session each, batches sent in order, each retried
	// with the same batch ID until acknowledged.
	var acked atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, viewers)
	for w := range viewers {
		wg.Go(func() {
			jar, _ := cookiejar.New(nil)
			c := client.New(base)
			c.HTTP = &http.Client{Jar: jar, Timeout: 5 * time.Second}
			var sess client.AnalyticsSession
			for {
				var err error
				if sess, err = c.AnalyticsSession(ctx, videos[w]); err == nil {
					break
				}
				if ctx.Err() != nil {
					errs <- err
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			seq := int64(0)
			for b := range batches {
				batch := client.AnalyticsBatch{BatchID: fmt.Sprintf("viewer-%d-batch-%04d", w, b), Session: sess.Session}
				for i := range perBatch {
					seq++
					ev := client.AnalyticsEvent{Type: "heartbeat", Seq: seq, Played: 1}
					if b == 0 && i == 0 {
						ev = client.AnalyticsEvent{Type: "view_start", Seq: seq}
					}
					at := float64(seq - 1)
					ev.Pos = &at
					batch.Events = append(batch.Events, ev)
				}
				for {
					_, err := c.SendAnalytics(ctx, batch)
					if err == nil {
						acked.Add(1)
						break
					}
					if ctx.Err() != nil {
						errs <- fmt.Errorf("viewer %d batch %d: %w", w, b, err)
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}

	// Kill the process mid-stream, then start it again.
	for acked.Load() < viewers*batches/4 {
		if ctx.Err() != nil {
			t.Fatal("batches are not being acknowledged")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	proc.Wait()
	atKill := acked.Load()
	t.Logf("SIGKILL after %d acknowledged batches", atKill)
	if atKill >= viewers*batches {
		t.Fatal("every batch was acknowledged before the kill; make the stream longer")
	}
	startProcess(t, p, "blueprint-2", args...)
	waitUp()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Every event counts exactly once.
	heartbeats := int64(batches*perBatch - 1)
	for _, v := range videos {
		var st client.AnalyticsStats
		for {
			st, err = creator.VideoAnalytics(ctx, v, 2)
			if err != nil {
				t.Fatal(err)
			}
			if int64(st.WatchSeconds) >= heartbeats || ctx.Err() != nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if st.Views != 1 || int64(st.WatchSeconds*1000) != heartbeats*1000 || len(st.Retention) != int(heartbeats)+1 || st.Retention[heartbeats] != 1 {
			t.Fatalf("video %s: views %d, watch %.3f s (want %d), retention length %d (want %d)", v, st.Views, st.WatchSeconds, heartbeats, len(st.Retention), heartbeats+1)
		}
	}
	var events int64
	if err := db.R.QueryRowContext(ctx, `SELECT COALESCE(SUM(events), 0) FROM analytics_platform_daily`).Scan(&events); err != nil {
		t.Fatal(err)
	}
	if events != viewers*batches*perBatch {
		t.Fatalf("platform events = %d, want %d", events, viewers*batches*perBatch)
	}
}

// TestBrowserPlayerAnalytics plays a video in headless Chromium and checks
// what watch.js and analytics.js reported, with the analytics requests
// recorded from the DevTools network events (fetches, re-sends included; a
// beacon sent while a page unloads is not reported there, but everything it
// carried stays in sessionStorage and is sent again by the next page):
//
//   - First visit with the session endpoint blocked: the page plays and is
//     left at once, before any view session arrived. Nothing reaches the
//     server then; the next page of the tab adopts the events it left in
//     sessionStorage, opens a session for them and sends them.
//   - "Come back": the page plays again (a reload: same viewer cookie) and
//     is left at once; what it held is beaconed and sent again by the next
//     page load.
//
// Every event the browser reported counts exactly once (the platform's
// event count equals the distinct (session, seq) pairs sent, watch time
// equals the sum of their played seconds, although the server's counters
// show events that arrived twice),
// there is one view and one viewer (the reload is not a new view), and
// /studio shows it.
func TestBrowserPlayerAnalytics(t *testing.T) {
	p := startPlatform(t, nil)
	c := p.user(t, "vic")
	clip := filepath.Join(clipDir(t), "analytics.mp4")
	makeClip(t, clip, 854, 480, 10, true)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := c.Upload(ctx, clip, client.UploadOptions{Title: "watched"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitReady(ctx, res.VideoID, 250*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	db, err := sqlstore.Open(ctx, filepath.Join(p.dir, "blueprint.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	bctx := newBrowser(t)
	bctx, bcancel := context.WithTimeout(bctx, 2*time.Minute)
	defer bcancel()
	sent := &sentEvents{sends: map[sentKey]int{}}
	if err := chromedp.Listen(bctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			sent.add(e.Request, string(e.Type))
		}
	}); err != nil {
		t.Fatal(err)
	}
	maxPost := int64(1 << 20)
	if _, err := chromedp.Call(bctx, network.Enable, network.EnableParams{MaxPostDataSize: &maxPost}); err != nil {
		t.Fatal(err)
	}
	block := func(patterns ...string) {
		t.Helper()
		var ps []*network.BlockPattern
		for _, pat := range patterns {
			ps = append(ps, &network.BlockPattern{URLPattern: pat, Block: true})
		}
		if _, err := chromedp.Call(bctx, network.SetBlockedURLs, network.SetBlockedURLsParams{URLPatterns: ps}); err != nil {
			t.Fatal(err)
		}
	}
	watch := p.urls.Gateway + "/watch/" + res.VideoID
	play := func(until float64) {
		t.Helper()
		if err := chromedp.Do(bctx, chromedp.Navigate(watch)); err != nil {
			t.Fatal(err)
		}
		for {
			cur, err := chromedp.Run(bctx, chromedp.Evaluate[float64](`(function(){const v=document.getElementById('video'); if(!v) return -1; if(v.paused) v.play().catch(()=>{}); return v.currentTime;})()`))
			if err == nil && cur > until {
				break
			}
			if bctx.Err() != nil {
				t.Fatalf("playback did not pass %.0f s", until)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`(document.getElementById('video').pause(), true)`)); err != nil {
			t.Fatal(err)
		}
	}
	// leave goes to the home page at once; it waits until that page has
	// sent every outbox (its own and the ones it adopted) and the rollup
	// has counted every distinct event the browser sent.
	leave := func() {
		t.Helper()
		if err := chromedp.Do(bctx, chromedp.Navigate(p.urls.Gateway+"/")); err != nil {
			t.Fatal(err)
		}
		for {
			left, err := chromedp.Run(bctx, chromedp.Evaluate[int](`Object.keys(sessionStorage).filter(function(k){return k.indexOf('bp_analytics:')===0;}).length`))
			if err == nil && left == 0 {
				break
			}
			if bctx.Err() != nil {
				t.Fatalf("the home page never sent what the tab held: %d outboxes left (%v)", left, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		for {
			n, _, _ := sent.totals()
			if got := platformEvents(t, ctx, db); got >= n {
				break
			}
			if ctx.Err() != nil {
				t.Fatal("the rollup never counted what was sent")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// exactly checks the server against what the browser sent.
	exactly := func(step string) client.AnalyticsStats {
		t.Helper()
		time.Sleep(time.Second) // anything still in flight lands
		n, playedMs, resent := sent.totals()
		st, err := c.VideoAnalytics(ctx, res.VideoID, 1)
		if err != nil {
			t.Fatal(err)
		}
		events := platformEvents(t, ctx, db)
		t.Logf("%s: %d distinct events sent (%d sent more than once), %d counted; watch %.3f s sent, %.3f s counted; views %d",
			step, n, resent, events, float64(playedMs)/1000, st.WatchSeconds, st.Views)
		sent.mu.Lock()
		t.Logf("batches sent so far: %s", strings.Join(sent.log, "; "))
		sent.mu.Unlock()
		if events != n {
			t.Fatalf("%s: the platform counted %d events; the browser sent %d distinct ones", step, events, n)
		}
		if got := int64(math.Round(st.WatchSeconds * 1000)); got != playedMs {
			t.Fatalf("%s: watch time %d ms counted, %d ms sent", step, got, playedMs)
		}
		if st.Views != 1 || st.UniqueViewers != 1 {
			t.Fatalf("%s: views %d, unique viewers %d; want 1 and 1", step, st.Views, st.UniqueViewers)
		}
		return st
	}

	// First visit: no view session can be had; play, leave at once.
	block("*://*:*/api/v1/analytics/sessions")
	play(4)
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := sent.totals(); n != 0 {
		t.Fatalf("%d events sent without a view session", n)
	}
	block()
	leave()
	if st := exactly("first visit, left before its session"); st.WatchSeconds < 3.5 {
		t.Fatalf("the first play was not reported in full: watch %.2f s", st.WatchSeconds)
	}

	// Come back (a reload of the page), play, leave at once.
	play(1)
	leave()
	st := exactly("second visit, left at once")
	// The page left at once beaconed what it held and the next page sent
	// it again: the server saw events twice (DevTools may not report a
	// beacon of a page being unloaded, so the server's counters tell).
	dup := labelled(t, p.urls.Admin, "blueprint_analytics_ingest_events_total", `result="duplicate"`)
	replayed := labelled(t, p.urls.Admin, "blueprint_analytics_rollup_events_total", `result="replayed"`)
	t.Logf("re-sent events: %.0f dropped by the stream as duplicates, %.0f by the rollup as replays", dup, replayed)
	if dup+replayed == 0 {
		t.Fatal("no event arrived twice: the page left at once should beacon what it held and the next page send it again")
	}
	t.Logf("views %d, unique %d, watch %.2f s, retention %d s, renditions %+v", st.Views, st.UniqueViewers, st.WatchSeconds, len(st.Retention), st.Renditions)
	// Over 5 s were played (past 4 s, then past 1 s); watch.js counts
	// from timeupdate steps, so up to a step per page may be missing.
	if st.WatchSeconds < 3.5 || st.WatchSeconds > 12 {
		t.Fatalf("watch time %.2f s, want about 5 (4 + 1 played)", st.WatchSeconds)
	}
	if len(st.Retention) < 5 || st.Retention[4] != 1 {
		t.Fatalf("retention %v: the one view reached second 4", st.Retention)
	}
	switches := int64(0)
	for _, r := range st.Renditions {
		switches += r.Switches
	}
	if switches < 1 {
		t.Fatalf("no quality switch reported: %+v", st.Renditions)
	}

	// The creator's dashboard shows the same numbers, with its charts.
	err = chromedp.Do(bctx,
		chromedp.Navigate(p.urls.Gateway+"/login?next=/studio"),
		chromedp.WaitVisible(`input[name=username]`),
		chromedp.SendKeys(`input[name=username]`, "vic"),
		chromedp.SendKeys(`input[name=password]`, "password-vic"),
		chromedp.Submit(`input[name=password]`),
	)
	if err != nil {
		t.Fatal(err)
	}
	for {
		got, err := chromedp.Run(bctx, chromedp.Evaluate[string](`(function(){const b=document.querySelector('#cards b'); const c=document.querySelectorAll('#chart-daily canvas').length; const v=document.querySelectorAll('#videos tr[data-video]').length; return b ? b.textContent+'/'+c+'/'+v : '';})()`))
		if err == nil && got == "1/1/1" {
			break
		}
		if bctx.Err() != nil {
			t.Fatalf("studio page shows %q, want 1 view, a chart and the video", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sentKey is an analytics event's identity: its session token and seq.
type sentKey struct {
	session string
	seq     int64
}

// sentEvents records the analytics events a browser sent, from the
// request bodies DevTools reports.
type sentEvents struct {
	mu       sync.Mutex
	sends    map[sentKey]int
	playedMs int64    // of distinct events, as the ingest converts them
	log      []string // one line per request: batch ID, first and last seq
}

func (s *sentEvents) add(r *network.Request, kind string) {
	if r == nil || r.Method != http.MethodPost || !strings.HasSuffix(r.URL, "/api/v1/analytics/events") {
		return
	}
	var body []byte
	for _, e := range r.PostDataEntries {
		body = append(body, e.Bytes...)
	}
	var b client.AnalyticsBatch
	if json.Unmarshal(body, &b) != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(b.Events) > 0 {
		s.log = append(s.log, fmt.Sprintf("%s %s seq %d-%d of …%s", kind, b.BatchID, b.Events[0].Seq, b.Events[len(b.Events)-1].Seq, b.Session[max(0, len(b.Session)-6):]))
	}
	for _, e := range b.Events {
		k := sentKey{session: b.Session, seq: e.Seq}
		if e.Session != "" {
			k.session = e.Session
		}
		if s.sends[k] == 0 {
			s.playedMs += int64(e.Played * 1000)
		}
		s.sends[k]++
	}
}

// totals returns the distinct events sent, their played milliseconds and
// how many were sent more than once.
func (s *sentEvents) totals() (distinct, playedMs, resent int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.sends {
		if n > 1 {
			resent++
		}
	}
	return int64(len(s.sends)), s.playedMs, resent
}

// platformEvents is the number of events the rollup has counted.
func platformEvents(t *testing.T, ctx context.Context, db *sqlstore.DB) int64 {
	t.Helper()
	var n int64
	if err := db.R.QueryRowContext(ctx, `SELECT COALESCE(SUM(events), 0) FROM analytics_platform_daily`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// labelled sums the samples of a metric whose labels include label, from
// an admin listener.
func labelled(t *testing.T, adminURL, name, label string) float64 {
	t.Helper()
	resp, err := http.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var total float64
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, name+"{"); ok && strings.Contains(rest[:strings.Index(rest+"}", "}")], label) {
			f, _ := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
			total += f
		}
	}
	return total
}
