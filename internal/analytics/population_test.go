package analytics

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// oracle is the exact answer, kept with plain maps while the scripted
// population runs.
type oracle struct {
	views, watchMs, reach, capacity, stalls, stallMs map[int64]int64
	uniques                                          map[int64]map[int64]bool // video → viewer IDs (from sessions)
	furthest                                         map[int64][]int64        // video → furthest second per counted view
	hourViews                                        map[int64]map[int64]int64
	referrers                                        map[int64]map[string]int64
	switches, rendWatch                              map[string]int64
	pageViews                                        int64
	events                                           int64
}

func newOracle() *oracle {
	return &oracle{
		views: map[int64]int64{}, watchMs: map[int64]int64{}, reach: map[int64]int64{}, capacity: map[int64]int64{},
		stalls: map[int64]int64{}, stallMs: map[int64]int64{}, uniques: map[int64]map[int64]bool{}, furthest: map[int64][]int64{},
		hourViews: map[int64]map[int64]int64{}, referrers: map[int64]map[string]int64{}, switches: map[string]int64{}, rendWatch: map[string]int64{},
	}
}

// watch plays one session the way watch.js reports it: view_start, then a
// heartbeat every 10 s of playback with the position and the seconds
// played, in batches of a few events. counted says whether the oracle
// expects this session to count as a view.
func (o *oracle) watch(t *testing.T, e *env, v *viewer, video int64, dur float64, stop float64, ref string, counted bool) *page {
	t.Helper()
	p := v.session(video)
	claims, err := e.s.sign.parseSession(p.token, e.clock.now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if o.uniques[video] == nil {
		o.uniques[video] = map[int64]bool{}
	}
	o.uniques[video][claims.Viewer] = true
	hour := e.clock.now().UnixMilli() / hourMs
	evs := []EventIn{{Type: "view_start", Pos: pos(0), Referrer: ref}}
	furthest := int64(0)
	for at := 10.0; at <= stop; at += 10 {
		evs = append(evs, EventIn{Type: "heartbeat", Pos: pos(at + 0.4), Played: 10})
		o.watchMs[video] += 10000
		furthest = min(int64(at), int64(math.Ceil(dur)))
	}
	if stop > 0 && math.Mod(stop, 10) != 0 { // the final heartbeat on pause
		last := math.Floor(stop/10) * 10
		evs = append(evs, EventIn{Type: "heartbeat", Pos: pos(stop), Played: stop - last})
		o.watchMs[video] += int64((stop - last) * 1000)
		furthest = min(int64(stop), int64(math.Ceil(dur)))
	}
	for i := 0; i < len(evs); i += 4 {
		p.send(evs[i:min(i+4, len(evs))]...)
	}
	o.events += int64(len(evs))
	if counted {
		o.views[video]++
		o.furthest[video] = append(o.furthest[video], furthest)
		o.reach[video] += furthest
		o.capacity[video] += int64(math.Ceil(dur))
		if o.hourViews[video] == nil {
			o.hourViews[video] = map[int64]int64{}
		}
		o.hourViews[video][hour]++
		if o.referrers[video] == nil {
			o.referrers[video] = map[string]int64{}
		}
		name := referrerHost(ref)
		if name == "" {
			name = "direct"
		}
		o.referrers[video][name]++
	}
	return p
}

// TestScriptedPopulation drives a known viewer population through the
// real handlers, stream and rollup, and checks every number against the
// oracle: views, watch time, average % watched, traffic by hour and
// referrer, playback health exactly; unique viewers within 2 %; the
// retention curve exactly. Reloads, retried batches, replayed events and
// bots must not change any of them.
func TestScriptedPopulation(t *testing.T) { scriptedPopulation(t, newEnv(t, nil)) }

// TestScriptedPopulationPostgres runs the same population with the
// rollups on PostgreSQL (the scale-out SQL store).
func TestScriptedPopulationPostgres(t *testing.T) { scriptedPopulation(t, newEnvPostgres(t, nil)) }

func scriptedPopulation(t *testing.T, e *env) {
	ctx := context.Background()
	const (
		videoA, videoB, videoC = 101, 102, 201
		creator1, creator2     = 1, 2
	)
	e.videos[videoA] = VideoInfo{CreatorID: creator1, Title: "A", Duration: 60, Ready: true}
	e.videos[videoB] = VideoInfo{CreatorID: creator1, Title: "B", Duration: 30.5, Ready: true}
	e.videos[videoC] = VideoInfo{CreatorID: creator2, Title: "C", Duration: 120, Ready: true}
	e.clock.t = time.Date(2026, 11, 20, 10, 40, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(1, 2))
	o := newOracle()
	refs := []string{"", "https://news.example.com/a?b=c", "https://www.search.example/q", "https://social.example/p/1", "not a url"}

	// Video A: 1,200 viewers; every 10th reloads the page and watches
	// again (not a new view, but watch time); every 5th replays a batch.
	viewersA := make([]*viewer, 1200)
	var replays []*page
	for i := range viewersA {
		v := e.newViewer()
		viewersA[i] = v
		stop := float64(rng.IntN(75)) // some past the end: clamped to 60
		p := o.watch(t, e, v, videoA, 60, stop, refs[i%len(refs)], true)
		if i%10 == 0 {
			o.watch(t, e, v, videoA, 60, float64(rng.IntN(60)), refs[0], false)
		}
		if i%5 == 0 && p.seq >= 2 {
			replays = append(replays, p)
		}
	}
	// Retried batches (same batch ID): stored once.
	for _, p := range replays[:40] {
		b := Batch{BatchID: "batch-000001", Session: p.token, Events: []EventIn{{Type: "view_start", Seq: 1, Pos: pos(0)}, {Type: "heartbeat", Seq: 2, Pos: pos(10.4), Played: 10}}}
		if out := p.post(b, http.StatusAccepted); !out.Duplicate {
			// The first batch of a session is the one above when it had
			// 4 events; a batch shorter than that is a different body but
			// the same ID, which the stream still drops as a duplicate.
			t.Fatalf("retried batch not reported as duplicate: %+v", out)
		}
	}
	// Replayed events under a new batch ID: stored, but old sequence
	// numbers change nothing.
	for _, p := range replays[40:] {
		b := Batch{BatchID: "replayed-batch", Session: p.token, Events: []EventIn{{Type: "view_start", Seq: 1, Pos: pos(0)}, {Type: "heartbeat", Seq: 2, Pos: pos(59), Played: 10}}}
		if out := p.post(b, http.StatusAccepted); out.Duplicate || out.Accepted != 2 {
			t.Fatalf("replayed batch: %+v", out)
		}
	}

	// Video B: 300 logged-in viewers; 30 of them also watch on a second
	// device (another cookie, same account): one viewer, one view.
	for i := range 300 {
		v := e.newViewer()
		v.user = int64(1000 + i)
		o.watch(t, e, v, videoB, 30.5, float64(5+rng.IntN(30)), "https://social.example/p/2", true)
		if i%10 == 0 {
			v2 := e.newViewer()
			v2.user = v.user
			o.watch(t, e, v2, videoB, 30.5, 20, "", false)
		}
	}

	// Video C: 50 viewers with quality switches and stalls.
	for range 50 {
		v := e.newViewer()
		p := v.session(videoC)
		p.send(EventIn{Type: "view_start", Pos: pos(0)},
			EventIn{Type: "quality", Rendition: "720p", Pos: pos(1)},
			EventIn{Type: "heartbeat", Pos: pos(10), Played: 10, Rendition: "720p"},
			EventIn{Type: "stall", StallMs: 1500, Pos: pos(10)},
			EventIn{Type: "quality", Rendition: "360p", Pos: pos(11)},
			EventIn{Type: "heartbeat", Pos: pos(20), Played: 8.5, Rendition: "360p"})
		o.events += 6
		o.views[videoC]++
		o.watchMs[videoC] += 18500
		o.stalls[videoC]++
		o.stallMs[videoC] += 1500
		o.switches["720p"]++
		o.switches["360p"]++
		o.rendWatch["720p"] += 10000
		o.rendWatch["360p"] += 8500
		o.furthest[videoC] = append(o.furthest[videoC], 20)
		if o.hourViews[videoC] == nil {
			o.hourViews[videoC] = map[int64]int64{}
			o.referrers[videoC] = map[string]int64{}
		}
		o.hourViews[videoC][e.clock.now().UnixMilli()/hourMs]++
		o.referrers[videoC]["direct"]++
		o.reach[videoC] += 20
		o.capacity[videoC] += 120
	}

	// Page views outside watch pages, from one browser.
	browser := e.newViewer()
	for i := range 25 {
		p := browser.session(0)
		p.send(EventIn{Type: "page_view", Path: fmt.Sprintf("/search?q=%d", i)}, EventIn{Type: "page_view", Path: "/watch/" + fmt.Sprint(900+i)})
		o.pageViews += 2
		o.events += 2
	}

	// Bots: no session, and their events are dropped.
	bot := e.newViewer()
	bot.ua = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
	if p := bot.session(videoA); p.tracking || p.token != "" {
		t.Fatalf("bot got a session: %+v", p)
	}
	rec := e.do("POST", "/api/v1/analytics/events", Batch{BatchID: "bot-batch-1", Session: viewersA[0].session(videoA).token,
		Events: []EventIn{{Type: "view_start", Seq: 1}}}, map[string]string{"User-Agent": bot.ua})
	if rec.Code != http.StatusAccepted || !strings.Contains(rec.Body.String(), "bot") {
		t.Fatalf("bot batch: %d %s", rec.Code, rec.Body)
	}

	// Phase 2, 31 minutes later (next hour): every 50th viewer of A comes
	// back after the view window and counts again.
	e.clock.add(31 * time.Minute)
	for i, v := range viewersA {
		if i%50 == 0 {
			o.watch(t, e, v, videoA, 60, 60, "", true)
		}
	}

	e.rollUp()

	check := func(name string, got, want int64) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	rg := LastDays(e.clock.now(), 7)
	for _, vid := range []int64{videoA, videoB, videoC} {
		st, err := e.s.VideoStats(ctx, vid, rg)
		if err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("video %d views", vid), st.Views, o.views[vid])
		check(fmt.Sprintf("video %d watch ms", vid), int64(math.Round(st.WatchSeconds*1000)), o.watchMs[vid])
		check(fmt.Sprintf("video %d stalls", vid), st.Stalls, o.stalls[vid])
		check(fmt.Sprintf("video %d stall ms", vid), int64(math.Round(st.StallSeconds*1000)), o.stallMs[vid])
		wantPct := 100 * float64(o.reach[vid]) / float64(o.capacity[vid])
		if math.Abs(st.AvgPercentWatched-wantPct) > 1e-9 {
			t.Errorf("video %d avg %% watched = %v, want %v", vid, st.AvgPercentWatched, wantPct)
		}
		// Retention: exact.
		var want []float64
		f := o.furthest[vid]
		last := slices.Max(f)
		for sec := int64(0); sec <= last; sec++ {
			n := 0
			for _, x := range f {
				if x >= sec {
					n++
				}
			}
			want = append(want, float64(n)/float64(len(f)))
		}
		if !slices.Equal(st.Retention, want) {
			t.Errorf("video %d retention:\n got %v\nwant %v", vid, st.Retention, want)
		}
		// Hourly views: exact.
		for _, h := range st.Hourly {
			check(fmt.Sprintf("video %d views in hour %s", vid, h.Hour), h.Views, o.hourViews[vid][h.Hour.UnixMilli()/hourMs])
		}
		for _, r := range st.Referrers {
			check(fmt.Sprintf("video %d views from %s", vid, r.Name), r.Views, o.referrers[vid][r.Name])
		}
	}
	// Unique viewers: within 2 % of exact.
	stA, _ := e.s.VideoStats(ctx, videoA, rg)
	exact := float64(len(o.uniques[videoA]))
	if math.Abs(float64(stA.UniqueViewers)-exact)/exact > 0.02 {
		t.Errorf("video A unique viewers = %d, exact %v (more than 2 %% off)", stA.UniqueViewers, exact)
	}
	if exact != 1200 {
		t.Fatalf("oracle: %v unique viewers of A, want 1200", exact)
	}
	stB, _ := e.s.VideoStats(ctx, videoB, rg)
	if stB.UniqueViewers < 294 || stB.UniqueViewers > 306 {
		t.Errorf("video B unique viewers = %d, want 300 ± 2 %% (second devices of an account are the same viewer)", stB.UniqueViewers)
	}
	// Playback health of C.
	stC, _ := e.s.VideoStats(ctx, videoC, rg)
	for _, r := range stC.Renditions {
		check("switches to "+r.Name, r.Switches, o.switches[r.Name])
		check("watch ms on "+r.Name, int64(math.Round(r.WatchSeconds*1000)), o.rendWatch[r.Name])
	}
	if len(stC.Renditions) != 2 {
		t.Errorf("renditions of C: %+v", stC.Renditions)
	}

	// Creators: sums of their videos.
	c1, err := e.s.CreatorStats(ctx, creator1, rg)
	if err != nil {
		t.Fatal(err)
	}
	check("creator 1 views", c1.Views, o.views[videoA]+o.views[videoB])
	check("creator 1 watch ms", int64(math.Round(c1.WatchSeconds*1000)), o.watchMs[videoA]+o.watchMs[videoB])
	if u := float64(c1.UniqueViewers); math.Abs(u-1500)/1500 > 0.02 {
		t.Errorf("creator 1 unique viewers = %v, want 1500 ± 2 %%", u)
	}
	if len(c1.Videos) != 2 || c1.Videos[0].ID != fmt.Sprint(videoA) || c1.Videos[0].Title != "A" {
		t.Errorf("creator 1 top videos: %+v", c1.Videos)
	}
	c2, _ := e.s.CreatorStats(ctx, creator2, rg)
	check("creator 2 views", c2.Views, o.views[videoC])

	// Platform.
	pl, err := e.s.PlatformStats(ctx, rg)
	if err != nil {
		t.Fatal(err)
	}
	check("platform views", pl.Views, o.views[videoA]+o.views[videoB]+o.views[videoC])
	check("platform page views", pl.PageViews, o.pageViews)
	check("platform events", pl.Events, o.events)
	var searchViews int64
	for _, p := range pl.Pages {
		if p.Name == "/search" {
			searchViews = p.Views
		}
		if strings.ContainsAny(p.Name, "0123456789?") {
			t.Errorf("page path not normalized: %q", p.Name)
		}
	}
	check("page views of /search", searchViews, 25)

	// The API answers the creator, and only the creator.
	rec = e.do("GET", fmt.Sprintf("/api/v1/analytics/videos/%d?days=7", videoA), nil, map[string]string{"X-Test-User": "1"})
	var api Stats
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &api) != nil || api.Views != o.views[videoA] {
		t.Fatalf("video API as its creator: %d %s", rec.Code, rec.Body.String()[:min(200, rec.Body.Len())])
	}
	if rec := e.do("GET", fmt.Sprintf("/api/v1/analytics/videos/%d", videoA), nil, map[string]string{"X-Test-User": "2"}); rec.Code != 404 {
		t.Fatalf("video API as another creator: %d", rec.Code)
	}
	if rec := e.do("GET", fmt.Sprintf("/api/v1/analytics/videos/%d", videoA), nil, nil); rec.Code != 401 {
		t.Fatalf("video API anonymous: %d", rec.Code)
	}
	rec = e.do("GET", "/api/v1/analytics/creators/me?days=7", nil, map[string]string{"X-Test-User": "1"})
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &api) != nil || api.Views != c1.Views {
		t.Fatalf("creator API: %d", rec.Code)
	}

	// Rolling up again changes nothing (everything is below the watermark).
	e.rollUp()
	again, _ := e.s.PlatformStats(ctx, rg)
	check("platform views after a second rollup", again.Views, pl.Views)

	// Cold tier: every stored event lands in Parquet, the stream is
	// trimmed behind the files.
	before, _ := e.s.PipelineState(ctx)
	n, err := e.s.ExportOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if int64(n) != before.RollupEvents {
		t.Fatalf("exported %d events, rolled up %d", n, before.RollupEvents)
	}
	files, err := e.blobs.List(ctx, RawPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || !strings.HasPrefix(files[0].Key, RawPrefix+"2026-11-20/part-") {
		t.Fatalf("parquet files: %+v", files)
	}
	rows, err := e.s.ReadRaw(ctx, files[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != n {
		t.Fatalf("parquet rows %d, want %d", len(rows), n)
	}
	types := map[string]int{}
	for _, r := range rows {
		types[r.Type]++
	}
	if types["page_view"] != int(o.pageViews) || types["stall"] != 50 {
		t.Fatalf("parquet event types: %v", types)
	}
	after, _ := e.s.PipelineState(ctx)
	if after.StreamMessages != 0 || after.ExportSeq != before.RollupSeq || after.ExportFiles != 1 {
		t.Fatalf("after export: %+v", after)
	}
	if n, err := e.s.ExportOnce(ctx); err != nil || n != 0 {
		t.Fatalf("second export: %d, %v", n, err)
	}
}
