package analytics

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestResentBatchesCountOnce sends what the browser tracker
// (static/analytics.js) sends when a page is left at once and the next
// page load re-sends the outbox it left in sessionStorage: a batch in
// flight, a superset of it beaconed on page hide under a new batch ID, the
// beaconed batch re-sent by the next page with its acknowledged part
// trimmed (same ID), the whole outbox again as the stream would take it
// after its duplicate window, and a reload of the page. Every event counts
// exactly once, and the reload is not a new view.
func TestResentBatchesCountOnce(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	const video = 301
	e.videos[video] = VideoInfo{CreatorID: 3, Title: "resent", Duration: 100, Ready: true}
	v := e.newViewer()
	p := v.session(video)
	evs := []EventIn{
		{Type: "page_view", Seq: 1, Path: "/watch/301"},
		{Type: "view_start", Seq: 2, Pos: pos(0)},
		{Type: "quality", Seq: 3, Rendition: "720p", Pos: pos(0.5)},
		{Type: "heartbeat", Seq: 4, Pos: pos(4.5), Played: 4.5, Rendition: "720p"},
		{Type: "heartbeat", Seq: 5, Pos: pos(7.75), Played: 3.25, Rendition: "720p"},
		{Type: "heartbeat", Seq: 6, Pos: pos(7.75), Played: 0, Rendition: "720p"},
	}
	batch := func(id string, from, to int) Batch {
		return Batch{BatchID: id, Session: p.token, Events: append([]EventIn(nil), evs[from-1:to]...)}
	}
	// The batch in flight when the page is hidden, then the beacon of the
	// whole outbox (a new ID: an ID never carries more than it first did).
	if out := p.post(batch("inflight-1", 1, 3), http.StatusAccepted); out.Duplicate || out.Accepted != 3 {
		t.Fatalf("batch in flight: %+v", out)
	}
	if out := p.post(batch("beacon-01", 1, 6), http.StatusAccepted); out.Duplicate || out.Accepted != 6 {
		t.Fatalf("beacon: %+v", out)
	}
	// The next page load re-sends the beaconed batch, less what the 202 of
	// the batch in flight acknowledged: the stream drops it.
	if out := p.post(batch("beacon-01", 4, 6), http.StatusAccepted); !out.Duplicate {
		t.Fatalf("re-sent beacon not reported as duplicate: %+v", out)
	}
	// The same events once the stream has forgotten the ID: stored, and
	// the rollup drops them by seq.
	if out := p.post(batch("beacon-01-after-window", 1, 6), http.StatusAccepted); out.Duplicate || out.Accepted != 6 {
		t.Fatalf("re-sent outbox: %+v", out)
	}
	if out := p.post(batch("tail-only", 5, 6), http.StatusAccepted); out.Duplicate || out.Accepted != 2 {
		t.Fatalf("re-sent tail: %+v", out)
	}
	// A reload a minute later: a new session, watch time but no view.
	e.clock.add(time.Minute)
	r := v.session(video)
	r.send(EventIn{Type: "page_view", Path: "/watch/301"}, EventIn{Type: "view_start", Pos: pos(0)},
		EventIn{Type: "heartbeat", Pos: pos(2), Played: 2})
	e.rollUp()

	rg := LastDays(e.clock.now(), 1)
	st, err := e.s.VideoStats(ctx, video, rg)
	if err != nil {
		t.Fatal(err)
	}
	if st.Views != 1 || st.UniqueViewers != 1 {
		t.Errorf("views %d, unique viewers %d; want 1 and 1", st.Views, st.UniqueViewers)
	}
	if got := int64(math.Round(st.WatchSeconds * 1000)); got != 4500+3250+2000 {
		t.Errorf("watch %d ms, want %d", got, 4500+3250+2000)
	}
	if len(st.Retention) != 8 || st.Retention[7] != 1 {
		t.Errorf("retention %v: the one view reached second 7", st.Retention)
	}
	if len(st.Renditions) != 1 || st.Renditions[0].Switches != 1 {
		t.Errorf("renditions %+v: one switch to 720p", st.Renditions)
	}
	pl, err := e.s.PlatformStats(ctx, rg)
	if err != nil {
		t.Fatal(err)
	}
	if pl.Events != 9 || pl.PageViews != 2 {
		t.Errorf("platform events %d, page views %d; want 9 and 2", pl.Events, pl.PageViews)
	}
	applied := testutil.ToFloat64(e.s.m.rollupEvents.WithLabelValues("applied"))
	replayed := testutil.ToFloat64(e.s.m.rollupEvents.WithLabelValues("replayed"))
	if applied != 9 || replayed != 3+6+2 {
		t.Errorf("rollup applied %v, replayed %v; want 9 and 11", applied, replayed)
	}
}

// TestReadBody reads bodies whose declared length is right, unknown, too
// small and too large, into fresh and used buffers.
func TestReadBody(t *testing.T) {
	body := strings.Repeat("0123456789", 3000)
	for _, size := range []int64{int64(len(body)), -1, 0, 10, int64(len(body)) * 2} {
		for _, buf := range [][]byte{nil, make([]byte, 0, 16), []byte("stale")[:0]} {
			got, err := readBody(strings.NewReader(body), buf, size)
			if err != nil || string(got) != body {
				t.Fatalf("size %d, cap %d: %d bytes, %v", size, cap(buf), len(got), err)
			}
		}
	}
	if _, err := readBody(iotest.ErrReader(errors.New("broken")), nil, 5); err == nil {
		t.Fatal("a read error was not returned")
	}
}
