// Command analytics measures Blueprint's analytics pipeline on this
// machine: sustained ingest (events/s through gateway → load balancer →
// frontend → ANALYTICS stream, 202 after the PubAck) with its
// acknowledgement latency, and the rollup lag (time from a batch being
// acknowledged to the rollup transaction that applied it committing). It
// runs, in the same process and on the same embedded broker, the peer: bare
// JetStream publishes of the same batches (no HTTP, no validation) — the
// ceiling the ingest is compared with. At the end it checks the rollups
// against an exact oracle kept by the generator: views and watch time
// exactly, unique viewers of the busiest video within 2 %.
//
//	go run ./bench/analytics
//	go run ./bench/analytics -seconds 30 -conc 32 -rates 20000,40000,50000 -sessions 60000
//	go run ./bench/analytics -closed=false -seconds 10 -sessions 70000 -rates 25000,50000,75000,100000
//
// Phases: (1) view sessions opened over HTTP (sessions/s); (2) closed loop:
// conc senders as fast as acknowledgements come back (-closed); (3) open
// loop: a warm-up, then a ladder of rates (events/s on a fixed schedule,
// latency measured from the scheduled send time, so no coordinated
// omission), each followed by the peer on the same schedule; a rate is
// sustained when it is carried with p99 acknowledgement ≤ -slo, and the
// ladder stops at a rate carried under 80 %; (4) the peer, closed loop
// with the same concurrency; (5) drain and oracle check. -tracker shapes
// batches as the browser tracker sends them. Each phase also reports the process's CPU time per event
// (server, broker and generator together), a figure that holds when other
// work shares the machine.
package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/axiomhq/hyperloglog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/blueprint-media/blueprint/internal/analytics"
	"github.com/blueprint-media/blueprint/internal/app"
	"github.com/blueprint-media/blueprint/internal/config"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/telemetry"
)

var (
	seconds  = flag.Int("seconds", 20, "length of each load phase")
	conc     = flag.Int("conc", 32, "concurrent senders")
	rates    = flag.String("rates", "10000,20000,30000,40000,50000,60000", "events/s of the open-loop phases, in order; the ladder stops after the first whose p99 acknowledgement is over -slo or that is not kept up")
	slo      = flag.Duration("slo", 100*time.Millisecond, "p99 acknowledgement an open-loop rate must hold to count as sustained")
	closedOn = flag.Bool("closed", true, "run the closed-loop phase (it uses up sessions the open-loop ladder could use)")
	warmup   = flag.Duration("warmup", 5*time.Second, "open loop at the first rate before the ladder, not judged")
	peerOpen = flag.Bool("peer-open", true, "after each open-loop rate, run the peer (bare JetStream publishes) on the same schedule")
	tracker  = flag.Bool("tracker", false, "send batches as the browser tracker does: one session's next events per batch, the token once at batch level (default: a collector's batches of many sessions' events, a token per event)")
	sessions = flag.Int("sessions", 40000, "view sessions (= distinct viewers)")
	videos   = flag.Int("videos", 10000, "videos (Zipf popularity)")
	perBatch = flag.Int("batch", 100, "events per batch")
	direct   = flag.Bool("direct", false, "send events straight to a frontend, past the gateway and load balancer")
	peerGrp  = flag.Int("peer-group", 0, "after each open-loop rate, also run the peer with group commit: batches waiting together merged into one message of at most this many batches (0: off)")
	grpConc  = flag.Int("peer-group-conc", 4, "committers (messages in flight) of the group-commit peer")
	cpuprof  = flag.String("cpuprofile", "", "write a CPU profile of the load phases (closed and open loop) to this file")
)

func main() {
	flag.Parse()
	log.SetFlags(0)
	dir, err := os.MkdirTemp("", "bench-analytics-")
	check(err)
	defer os.RemoveAll(dir)

	cfg := config.Default()
	cfg.DataDir = dir
	cfg.Roles = []string{"gateway", "frontend", "origin", "edge", "broker"}
	cfg.HTTPAddr, cfg.AdminAddr, cfg.Edge.Addr, cfg.Broker.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Gateway.RateLimit, cfg.Gateway.RateBurst = 1e9, 1_000_000_000
	cfg.Analytics.SessionRate, cfg.Analytics.SessionBurst = 1e6, 1_000_000
	cfg.Log.Level = "warn"
	// Payments' background jobs have nothing to do with analytics and share
	// the SQLite writer; they are off so the run measures analytics alone.
	cfg.Payment.Enabled = false
	a := app.New(cfg, telemetry.NewLogger(io.Discard, "warn", "json"))
	ctx := context.Background()
	check(a.Start(ctx))
	defer a.Stop(ctx)
	urls := a.URLs()

	db, err := sqlstore.Open(ctx, filepath.Join(dir, "blueprint.db"))
	check(err)
	defer db.Close()
	durations := seed(ctx, db)

	tr := &http.Transport{MaxIdleConns: 4 * *conc, MaxIdleConnsPerHost: 4 * *conc}
	g := &generator{base: urls.Gateway, events: urls.Gateway, tr: tr, durations: durations, oracle: newOracle()}
	if *direct {
		g.events = urls.Frontends[0]
	}
	fmt.Printf("bench/analytics  %s  nproc %d  GOMAXPROCS %d  load %s\n", time.Now().UTC().Format(time.RFC3339), runtime.NumCPU(), runtime.GOMAXPROCS(0), loadavg())
	fmt.Printf("videos %d (Zipf s=1.1), sessions %d (one viewer each), %d events per batch, %d senders, %d s per phase\n\n",
		*videos, *sessions, *perBatch, *conc, *seconds)

	start := time.Now()
	g.openSessions(ctx)
	fmt.Printf("sessions   %d opened in %.1f s: %.0f sessions/s\n", *sessions, time.Since(start).Seconds(), float64(*sessions)/time.Since(start).Seconds())

	nc, err := nats.Connect(urls.Broker)
	check(err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	check(err)
	lag := newLagProbe(js, db)
	lagCtx, stopLag := context.WithCancel(ctx)
	go lag.run(lagCtx)

	if *cpuprof != "" {
		f, err := os.Create(*cpuprof)
		check(err)
		check(pprof.StartCPUProfile(f))
	}
	var closed result
	if *closedOn {
		closed = g.closedLoop(ctx, *conc, time.Duration(*seconds)*time.Second)
		report("ingest, closed loop", closed)
		lagClosed := lag.take()
		fmt.Printf("%-36s p50 %s p99 %s max %s\n", "  rollup lag", ms(pct(lagClosed, 50)), ms(pct(lagClosed, 99)), ms(pct(lagClosed, 100)))
	}
	var ladder []int
	for _, f := range strings.Split(*rates, ",") {
		r, err := strconv.Atoi(strings.TrimSpace(f))
		check(err)
		ladder = append(ladder, r)
	}
	if *warmup > 0 && len(ladder) > 0 {
		// Caches, SQLite pages and connections warm up; not judged.
		w := g.openLoop(ctx, ladder[0], *warmup)
		report(fmt.Sprintf("warm-up, open loop at %d ev/s", ladder[0]), w)
		lag.take()
	}
	sustained, sustainedLag := 0, []time.Duration(nil)
	var sustainedRes result
	for _, r := range ladder {
		if g.pos.Load() >= int64(len(g.sess)) {
			fmt.Println("  (out of sessions; raise -sessions)")
			break
		}
		open := g.openLoop(ctx, r, time.Duration(*seconds)*time.Second)
		report(fmt.Sprintf("ingest, open loop at %d ev/s", r), open)
		fmt.Printf("%-36s offered %d, achieved %.0f events/s (%.1f %%), load %s\n", "", r, open.eps, 100*open.eps/float64(r), loadavg())
		l := lag.take()
		fmt.Printf("%-36s p50 %s p99 %s max %s\n", "  rollup lag", ms(pct(l, 50)), ms(pct(l, 99)), ms(pct(l, 100)))
		if *peerOpen {
			// The peer on the same schedule: what the broker and the
			// machine alone do to the latency at this rate.
			report(fmt.Sprintf("  peer, open loop at %d ev/s", r), peerOpenLoop(ctx, js, r, time.Duration(*seconds)*time.Second))
		}
		if *peerGrp > 0 {
			g, avg := peerGroupOpenLoop(ctx, js, r, *grpConc, *peerGrp, time.Duration(*seconds)*time.Second)
			report(fmt.Sprintf("  peer, group commit at %d ev/s", r), g)
			fmt.Printf("%-36s %.1f batches per message on average\n", "", avg)
		}
		if open.ranOut {
			fmt.Println("  (ran out of sessions during the phase: not judged; raise -sessions)")
			break
		}
		if pct(open.lat, 99) <= *slo && open.eps >= 0.95*float64(r) {
			sustained, sustainedLag, sustainedRes = r, l, open
		}
		if open.eps < 0.8*float64(r) {
			fmt.Println("  (not kept up: the ladder stops)")
			break
		}
	}
	stopLag()
	if *cpuprof != "" {
		pprof.StopCPUProfile()
	}

	drainStart := time.Now()
	waitRolledUp(ctx, js, db)
	drain := time.Since(drainStart)

	peer := peerLoop(ctx, js, *conc, time.Duration(*seconds)*time.Second)
	report("peer: bare JetStream PubAck", peer)

	fmt.Printf("\ndrain after the load: %s\n", drain.Round(time.Millisecond))
	if *closedOn {
		fmt.Printf("ratio ingest/peer (closed loop events/s): %.2f; CPU per event ingest/peer: %.1f\n", closed.eps/peer.eps,
			(float64(closed.cpu)/float64(closed.events))/(float64(peer.cpu)/float64(peer.events)))
	}
	fmt.Printf("max sustained open-loop rate with p99 ack ≤ %s: %d events/s (achieved %.0f, ack p50 %s p99 %s, rollup lag p99 %s)\n",
		*slo, sustained, sustainedRes.eps, ms(pct(sustainedRes.lat, 50)), ms(pct(sustainedRes.lat, 99)), ms(pct(sustainedLag, 99)))
	fmt.Printf("load at the end: %s\n", loadavg())
	fmt.Printf("goal: ≥ 50,000 events/s, rollup lag ≤ 2 s\n")

	g.verify(ctx, db)
}

// seed writes users and videos straight into the database; it returns the
// videos' durations in seconds.
func seed(ctx context.Context, db *sqlstore.DB) []int {
	rng := rand.New(rand.NewPCG(7, 7))
	durations := make([]int, *videos)
	var err error
	for range 5 { // the platform's own start-up writes may hold the database for a moment
		if err = seedTx(ctx, db, rng, durations); err == nil {
			return durations
		}
		time.Sleep(time.Second)
	}
	check(err)
	return durations
}

func seedTx(ctx context.Context, db *sqlstore.DB, rng *rand.Rand, durations []int) error {
	return db.Tx(ctx, func(tx *sql.Tx) error {
		for u := 1; u <= 100; u++ {
			if _, err := tx.ExecContext(ctx, `INSERT INTO users(id, username, email, password_hash, created_at) VALUES (?, ?, ?, 'x', unixepoch())`,
				u, fmt.Sprintf("creator%d", u), fmt.Sprintf("creator%d@example.com", u)); err != nil {
				return err
			}
		}
		for v := range *videos {
			durations[v] = 120 + rng.IntN(1081)
			if _, err := tx.ExecContext(ctx, `INSERT INTO videos(id, user_id, kind, title, status, source_key, source_size, duration, created_at, updated_at)
				VALUES (?, ?, 'video', ?, 'ready', 'src', 0, ?, unixepoch(), unixepoch())`, videoID(v), 1+v%100, fmt.Sprintf("video %d", v), durations[v]); err != nil {
				return err
			}
		}
		return nil
	})
}

func videoID(i int) int64 { return 1_000_000 + int64(i) }

// session is one view session: its token and its script of events.
type session struct {
	token  string
	video  int
	next   int // events sent so far
	events int // heartbeats = duration / 10, plus the view_start
}

type generator struct {
	base      string
	events    string // where batches go
	tr        *http.Transport
	durations []int
	oracle    *oracle

	mu   sync.Mutex
	sess []*session
	pos  atomic.Int64 // next unused session
	seq  atomic.Int64 // batch IDs
}

// openSessions opens the view sessions over HTTP: videos drawn Zipf-style.
func (g *generator) openSessions(ctx context.Context) {
	rng := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(rng, 1.1, 1, uint64(*videos-1))
	picks := make([]int, *sessions)
	for i := range picks {
		picks[i] = int(zipf.Uint64())
	}
	g.sess = make([]*session, *sessions)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range *conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= *sessions {
					return
				}
				jar, _ := cookiejar.New(nil)
				c := &http.Client{Transport: g.tr, Jar: jar}
				body := fmt.Sprintf(`{"video_id":"%d"}`, videoID(picks[i]))
				resp, err := c.Post(g.base+"/api/v1/analytics/sessions", "application/json", strings.NewReader(body))
				check(err)
				var out analytics.SessionResponse
				check(json.NewDecoder(resp.Body).Decode(&out))
				resp.Body.Close()
				if !out.Tracking {
					log.Fatalf("session %d: not tracked (%d)", i, resp.StatusCode)
				}
				g.sess[i] = &session{token: out.Session, video: picks[i], events: 1 + g.durations[picks[i]]/10}
			}
		})
	}
	wg.Wait()
}

// claim returns sessions for one sender to script, nil when none are left.
func (g *generator) claim() *session {
	i := int(g.pos.Add(1)) - 1
	if i >= len(g.sess) {
		return nil
	}
	return g.sess[i]
}

// batch builds the next batch of a sender from its current session and
// the ones after it; each session's events go out in order.
func (g *generator) batch(cur **session) ([]byte, int) {
	evs := make([]analytics.EventIn, 0, *perBatch)
	for len(evs) < *perBatch {
		s := *cur
		if s == nil || s.next >= s.events {
			if *tracker && len(evs) > 0 {
				break // a tracker's batch holds one session's events
			}
			if s = g.claim(); s == nil {
				break
			}
			*cur = s
		}
		s.next++
		ev := analytics.EventIn{Seq: int64(s.next), Session: s.token}
		at := float64((s.next - 1) * 10)
		ev.Pos = &at
		if s.next == 1 {
			ev.Type = "view_start"
			ev.Referrer = "https://search.example/q"
			g.oracle.view(s.video, s)
		} else {
			ev.Type, ev.Played, ev.Rendition = "heartbeat", 10, "720p"
			g.oracle.watch(s.video, 10_000)
		}
		evs = append(evs, ev)
	}
	if len(evs) == 0 {
		return nil, 0
	}
	return appendBatch(nil, fmt.Sprintf("bench-%012d", g.seq.Add(1)), evs), len(evs)
}

// hoistSession moves the events' common session token to the batch, as
// the browser tracker sends it, when -tracker is set.
func hoistSession(evs []analytics.EventIn) string {
	if !*tracker || len(evs) == 0 {
		return ""
	}
	tok := evs[0].Session
	for i := range evs {
		evs[i].Session = ""
	}
	return tok
}

// appendBatch is json.Marshal of a batch, by hand: the generator shares the
// two cores with the server, so it should spend as little as it can.
func appendBatch(b []byte, id string, evs []analytics.EventIn) []byte {
	session := hoistSession(evs)
	b = append(b, `{"batch_id":"`...)
	b = append(b, id...)
	if session != "" {
		b = append(b, `","session":"`...)
		b = append(b, session...)
	}
	b = append(b, `","events":[`...)
	for i, e := range evs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"type":"`...)
		b = append(b, e.Type...)
		b = append(b, `","seq":`...)
		b = strconv.AppendInt(b, e.Seq, 10)
		if e.Session != "" {
			b = append(b, `,"session":"`...)
			b = append(b, e.Session...)
			b = append(b, '"')
		}
		if e.Pos != nil {
			b = append(b, `,"pos":`...)
			b = strconv.AppendFloat(b, *e.Pos, 'f', -1, 64)
		}
		if e.Played != 0 {
			b = append(b, `,"played":`...)
			b = strconv.AppendFloat(b, e.Played, 'f', -1, 64)
		}
		for _, f := range [][2]string{{"rendition", e.Rendition}, {"referrer", e.Referrer}} {
			if f[1] != "" {
				b = append(b, `,"`...)
				b = append(b, f[0]...)
				b = append(b, `":"`...)
				b = append(b, f[1]...)
				b = append(b, '"')
			}
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

type result struct {
	ranOut bool // the generator had no sessions left before the phase ended
	events int64
	eps    float64
	lat    []time.Duration
	errs   int64
	cpu    time.Duration // CPU time of this process (server and generator) during the phase
}

// cpuTime is the process's user + system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (g *generator) post(c *http.Client, body []byte) bool {
	resp, err := c.Post(g.events+"/api/v1/analytics/events", "application/json", bytes.NewReader(body))
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusAccepted
}

// send posts a batch until it is acknowledged (same batch ID on retry).
func (g *generator) send(c *http.Client, body []byte, errs *atomic.Int64) {
	for !g.post(c, body) {
		errs.Add(1)
		time.Sleep(10 * time.Millisecond)
	}
}

func (g *generator) closedLoop(ctx context.Context, n int, d time.Duration) result {
	cpu0 := cpuTime()
	var mu sync.Mutex
	var res result
	var errs atomic.Int64
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			c := &http.Client{Transport: g.tr}
			var cur *session
			var lat []time.Duration
			var events int64
			for time.Now().Before(deadline) {
				body, k := g.batch(&cur)
				if k == 0 {
					break
				}
				t0 := time.Now()
				g.send(c, body, &errs)
				lat = append(lat, time.Since(t0))
				events += int64(k)
			}
			events += g.finish(c, cur, &errs)
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.events += events
			mu.Unlock()
		})
	}
	wg.Wait()
	res.eps = float64(res.events) / time.Since(start).Seconds()
	res.cpu = cpuTime() - cpu0
	res.errs = errs.Load()
	return res
}

// finish sends the rest of the session in hand (cur may be nil), so that
// the oracle's sessions are whole, and returns the events sent.
func (g *generator) finish(c *http.Client, cur *session, errs *atomic.Int64) int64 {
	var events int64
	for cur != nil && cur.next < cur.events {
		body, k := g.batchOne(cur)
		g.send(c, body, errs)
		events += int64(k)
	}
	return events
}

// batchOne builds the next batch of one session only.
func (g *generator) batchOne(s *session) ([]byte, int) {
	evs := make([]analytics.EventIn, 0, *perBatch)
	for len(evs) < *perBatch && s.next < s.events {
		s.next++
		at := float64((s.next - 1) * 10)
		ev := analytics.EventIn{Seq: int64(s.next), Session: s.token, Pos: &at, Type: "heartbeat", Played: 10, Rendition: "720p"}
		g.oracle.watch(s.video, 10_000)
		evs = append(evs, ev)
	}
	return appendBatch(nil, fmt.Sprintf("bench-%012d", g.seq.Add(1)), evs), len(evs)
}

// openLoop sends batches on a fixed schedule (rate events/s) spread over
// the senders; latency counts from the scheduled time.
func (g *generator) openLoop(ctx context.Context, eps int, d time.Duration) result {
	cpu0 := cpuTime()
	sched := schedule(eps, d)
	var mu sync.Mutex
	var res result
	var errs atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range 4 * *conc {
		wg.Go(func() {
			c := &http.Client{Transport: g.tr}
			var cur *session
			var lat []time.Duration
			var events int64
			for at := range sched {
				body, k := g.batch(&cur)
				if k == 0 {
					mu.Lock()
					res.ranOut = true
					mu.Unlock()
					break
				}
				g.send(c, body, &errs)
				lat = append(lat, time.Since(at))
				events += int64(k)
			}
			events += g.finish(c, cur, &errs)
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.events += events
			mu.Unlock()
		})
	}
	wg.Wait()
	res.eps = float64(res.events) / time.Since(start).Seconds()
	res.cpu = cpuTime() - cpu0
	res.errs = errs.Load()
	return res
}

// schedule returns the planned send times of batches of -batch events at
// eps events/s for d. The times are planned from the start, whatever the
// senders manage, so a latency measured from them counts queueing.
func schedule(eps int, d time.Duration) <-chan time.Time {
	interval := time.Duration(float64(time.Second) * float64(*perBatch) / float64(eps))
	sched := make(chan time.Time, 1<<16)
	go func() {
		t := time.Now()
		end := t.Add(d)
		for t.Before(end) {
			if wait := time.Until(t); wait > 0 {
				time.Sleep(wait)
			}
			sched <- t
			t = t.Add(interval)
		}
		close(sched)
	}()
	return sched
}

// peerOpenLoop publishes -batch-event records straight to a JetStream
// stream on the schedule of an open-loop phase at eps events/s.
func peerOpenLoop(ctx context.Context, js jetstream.JetStream, eps int, d time.Duration) result {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "BENCH_PEER_OPEN", Subjects: []string{"benchpeeropen"}, Storage: jetstream.FileStorage, Duplicates: 10 * time.Minute})
	check(err)
	defer js.DeleteStream(ctx, "BENCH_PEER_OPEN")
	data := peerRecord()
	cpu0 := cpuTime()
	sched := schedule(eps, d)
	var mu sync.Mutex
	var res result
	var id, errs atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range 4 * *conc {
		wg.Go(func() {
			var lat []time.Duration
			var events int64
			for at := range sched {
				peerPublish(ctx, js, "benchpeeropen", data, fmt.Sprint("peer-open-", id.Add(1)), &errs)
				lat = append(lat, time.Since(at))
				events += int64(*perBatch)
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.events += events
			mu.Unlock()
		})
	}
	wg.Wait()
	res.eps = float64(res.events) / time.Since(start).Seconds()
	res.cpu = cpuTime() - cpu0
	res.errs = errs.Load()
	return res
}

// peerPublish publishes data until the broker acknowledges it (the same
// message ID on every try, as the ingest's clients retry), counting the
// failed tries: a stalled broker shows up as latency, not as a crash.
func peerPublish(ctx context.Context, js jetstream.JetStream, subj string, data []byte, id string, errs *atomic.Int64) {
	for {
		if _, err := js.Publish(ctx, subj, data, jetstream.WithMsgID(id)); err == nil {
			return
		}
		errs.Add(1)
	}
}

// peerRecord is a -batch-event record of the ingest's encoding.
func peerRecord() []byte {
	rec := analytics.Record{RecvMs: time.Now().UnixMilli()}
	for i := range *perBatch {
		rec.Events = append(rec.Events, analytics.Event{Type: analytics.Heartbeat, Session: 1 << 40, Viewer: 1 << 41, Video: 1_000_000, Seq: int64(i + 1), PosMs: int64(i) * 10_000, PlayedMs: 10_000, Rendition: "720p"})
	}
	return analytics.AppendRecord(nil, rec)
}

// peerLoop publishes 100-event records straight to a JetStream stream on
// the same broker (file storage, same sync settings), n at a time.
func peerLoop(ctx context.Context, js jetstream.JetStream, n int, d time.Duration) result {
	cpu0 := cpuTime()
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "BENCH_PEER", Subjects: []string{"benchpeer"}, Storage: jetstream.FileStorage, Duplicates: 10 * time.Minute})
	check(err)
	defer js.DeleteStream(ctx, "BENCH_PEER")
	data := peerRecord()
	var mu sync.Mutex
	var res result
	var id, errs atomic.Int64
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			var lat []time.Duration
			var events int64
			for time.Now().Before(deadline) {
				t0 := time.Now()
				peerPublish(ctx, js, "benchpeer", data, fmt.Sprint("peer-", id.Add(1)), &errs)
				lat = append(lat, time.Since(t0))
				events += int64(*perBatch)
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.events += events
			mu.Unlock()
		})
	}
	wg.Wait()
	res.eps = float64(res.events) / time.Since(start).Seconds()
	res.cpu = cpuTime() - cpu0
	res.errs = errs.Load()
	return res
}

func report(name string, r result) {
	per := float64(r.cpu.Microseconds()) / float64(max(r.events, 1))
	fmt.Printf("%-36s %7.0f events/s  ack p50 %s p99 %s max %s  (%d batches, %d retried)  CPU %.1f µs/event → %.0f events/s per idle core\n", name, r.eps,
		ms(pct(r.lat, 50)), ms(pct(r.lat, 99)), ms(pct(r.lat, 100)), len(r.lat), r.errs, per, 1e6/per)
}

// lagProbe samples the stream's last sequence and the rollup watermark;
// the lag of a sample is the time until the watermark reaches the stream
// sequence seen then.
type lagProbe struct {
	js jetstream.JetStream
	db *sqlstore.DB

	mu      sync.Mutex
	pending []struct {
		at  time.Time
		seq uint64
	}
	lags []time.Duration
}

func newLagProbe(js jetstream.JetStream, db *sqlstore.DB) *lagProbe { return &lagProbe{js: js, db: db} }

func (p *lagProbe) run(ctx context.Context) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		last, wm, err := positions(ctx, p.js, p.db)
		if err != nil {
			continue
		}
		now := time.Now()
		p.mu.Lock()
		p.pending = append(p.pending, struct {
			at  time.Time
			seq uint64
		}{now, last})
		i := 0
		for ; i < len(p.pending) && p.pending[i].seq <= wm; i++ {
			p.lags = append(p.lags, now.Sub(p.pending[i].at))
		}
		p.pending = p.pending[i:]
		p.mu.Unlock()
	}
}

// take returns the lags measured since the last call.
func (p *lagProbe) take() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.lags
	p.lags = nil
	return l
}

func positions(ctx context.Context, js jetstream.JetStream, db *sqlstore.DB) (last, wm uint64, err error) {
	st, err := js.Stream(ctx, analytics.StreamName)
	if err != nil {
		return 0, 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	var w int64
	db.R.QueryRowContext(ctx, `SELECT COALESCE(MAX(last_seq), 0) FROM analytics_watermarks WHERE name = ?`, analytics.RollupConsumer).Scan(&w)
	return info.State.LastSeq, uint64(w), nil
}

func waitRolledUp(ctx context.Context, js jetstream.JetStream, db *sqlstore.DB) {
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		last, wm, err := positions(ctx, js, db)
		if err == nil && wm >= last {
			return
		}
	}
	log.Fatal("the rollup did not catch up within 5 minutes")
}

// oracle is the exact answer: views and watch time per video, viewers of
// the busiest video.
type oracle struct {
	mu      sync.Mutex
	views   map[int]int64
	watchMs map[int]int64
	tokens  map[int]map[string]bool
}

func newOracle() *oracle {
	return &oracle{views: map[int]int64{}, watchMs: map[int]int64{}, tokens: map[int]map[string]bool{}}
}

func (o *oracle) view(video int, s *session) {
	o.mu.Lock()
	o.views[video]++
	if o.tokens[video] == nil {
		o.tokens[video] = map[string]bool{}
	}
	o.tokens[video][s.token] = true
	o.mu.Unlock()
}

func (o *oracle) watch(video int, ms int64) {
	o.mu.Lock()
	o.watchMs[video] += ms
	o.mu.Unlock()
}

// verify compares the rollups with the oracle.
func (g *generator) verify(ctx context.Context, db *sqlstore.DB) {
	o := g.oracle
	rows, err := db.R.QueryContext(ctx, `SELECT video_id, SUM(views), SUM(watch_ms) FROM analytics_video_daily GROUP BY video_id`)
	check(err)
	got := map[int]([2]int64){}
	for rows.Next() {
		var id, v, w int64
		check(rows.Scan(&id, &v, &w))
		got[int(id-1_000_000)] = [2]int64{v, w}
	}
	rows.Close()
	bad := 0
	var totalViews, totalWatch int64
	for v, n := range o.views {
		totalViews += n
		if got[v][0] != n {
			bad++
		}
	}
	for v, w := range o.watchMs {
		totalWatch += w
		if got[v][1] != w {
			bad++
		}
	}
	top := 0
	for v := range o.views {
		if o.views[v] > o.views[top] {
			top = v
		}
	}
	var sketch []byte
	var est float64
	check(db.R.QueryRowContext(ctx, `SELECT sketch FROM analytics_video_daily WHERE video_id = ? ORDER BY day DESC LIMIT 1`, videoID(top)).Scan(&sketch))
	est = hllEstimate(sketch)
	exact := float64(len(o.tokens[top]))
	fmt.Printf("\noracle: %d views, %.0f watch hours over %d videos; rows differing: %d\n", totalViews, float64(totalWatch)/3.6e6, len(o.views), bad)
	fmt.Printf("oracle: busiest video %d: unique viewers %.0f estimated vs %.0f exact (%.2f %% off)\n", videoID(top), est, exact, 100*math.Abs(est-exact)/exact)
	if bad > 0 || math.Abs(est-exact)/exact > 0.02 {
		fmt.Println("ORACLE MISMATCH")
		os.Exit(1)
	}
}

func hllEstimate(b []byte) float64 {
	sk := hyperloglog.New14()
	check(sk.UnmarshalBinary(b))
	return float64(sk.Estimate())
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
