package dispatch

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/outbox"
	"github.com/blueprint-media/blueprint/internal/queue"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// publish puts an event on the event stream the way the outbox relay does.
func publish(t *testing.T, q *queue.Queue, id int64, kind string) {
	t.Helper()
	data, _ := json.Marshal(outbox.Event{ID: id, Kind: kind, SubjectID: id, Payload: json.RawMessage(`{}`), CreatedAt: time.Now()})
	if _, err := outbox.EnsureStream(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	if _, err := q.JetStream().Publish(context.Background(), "events."+kind, data); err != nil {
		t.Fatal(err)
	}
}

func start(t *testing.T, q *queue.Queue, db *sqlstore.DB, cfg Config, handlers map[string]outbox.Handler) *Dispatcher {
	t.Helper()
	d, err := New(q, db, cfg, quietLog, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, h := range handlers {
		if err := d.Handle(name, h); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop(context.Background()) })
	return d
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// recorder is a handler that records the events it applied.
type recorder struct {
	mu   sync.Mutex
	seen map[int64]int
}

func (r *recorder) handle(ctx context.Context, tx *sql.Tx, e outbox.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[int64]int{}
	}
	r.seen[e.ID]++
	return nil
}

func (r *recorder) count() (events, applications int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.seen {
		applications += n
	}
	return len(r.seen), applications
}

func TestRoutesByKind(t *testing.T) {
	q, db := testenv.Queue(t), testenv.Store(t)
	var a, b, all recorder
	start(t, q, db, Config{Routes: []Route{
		{Name: "a", Kinds: []string{"video.ready"}, Lane: P0},
		{Name: "b", Kinds: []string{"user.followed", "video.ready"}, Lane: P1},
		{Name: "all", Lane: P2},
	}}, map[string]outbox.Handler{"a": a.handle, "b": b.handle, "all": all.handle})
	for i := range int64(30) {
		kind := []string{"video.ready", "user.followed", "comment.created"}[i%3]
		publish(t, q, i+1, kind)
	}
	publish(t, q, 1, "video.ready") // a duplicate publish of event 1
	waitFor(t, "all routes", func() bool {
		na, _ := a.count()
		nb, _ := b.count()
		nall, _ := all.count()
		return na == 10 && nb == 20 && nall == 30
	})
	time.Sleep(200 * time.Millisecond)
	for name, r := range map[string]*recorder{"a": &a, "b": &b, "all": &all} {
		if ev, apps := r.count(); ev != apps {
			t.Errorf("route %s: %d events applied %d times; want once each", name, ev, apps)
		}
	}
}

// TestPoisonEventGoesToDLQAndReplays: an event whose handler always fails
// lands in the DLQ after MaxDeliver deliveries with the error, the other
// events flow past it, and once the cause is fixed a replay applies it
// exactly once.
func TestPoisonEventGoesToDLQAndReplays(t *testing.T) {
	q, db := testenv.Queue(t), testenv.Store(t)
	var broken atomic.Bool
	broken.Store(true)
	var tries atomic.Int32
	var ok recorder
	h := func(ctx context.Context, tx *sql.Tx, e outbox.Event) error {
		if e.ID == 13 && broken.Load() {
			tries.Add(1)
			return errors.New("cannot render event 13")
		}
		return ok.handle(ctx, tx, e)
	}
	d := start(t, q, db, Config{Routes: []Route{
		{Name: "svc", Lane: P1, MaxDeliver: 3, Backoff: []time.Duration{10 * time.Millisecond}},
	}}, map[string]outbox.Handler{"svc": h})
	for i := range int64(20) {
		publish(t, q, i+1, "video.ready")
	}
	var dead []DeadLetter
	waitFor(t, "the dead letter", func() bool {
		var err error
		dead, err = d.DeadLetters(context.Background(), 10)
		return err == nil && len(dead) == 1
	})
	if n, _ := ok.count(); n != 19 {
		waitFor(t, "the other events", func() bool { n, _ := ok.count(); return n == 19 })
	}
	if dead[0].Event.ID != 13 || dead[0].Route != "svc" || dead[0].Deliveries != 3 || !strings.Contains(dead[0].Error, "cannot render event 13") {
		t.Fatalf("dead letter %+v", dead[0])
	}
	if got := tries.Load(); got != 3 {
		t.Errorf("handler tried %d times, want 3 (MaxDeliver)", got)
	}

	// The admin page lists it; a replay through it applies it once.
	mux := http.NewServeMux()
	d.AdminRoutes(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/dispatch")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "cannot render event 13") {
		t.Errorf("admin page does not show the dead letter:\n%s", page)
	}
	broken.Store(false)
	req, _ := http.NewRequest("POST", fmt.Sprintf("%s/dispatch/dlq/%d/replay", srv.URL, dead[0].Seq), nil)
	req.Header.Set("Accept", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("replay: %s", resp.Status)
	}
	waitFor(t, "the replayed event", func() bool { n, _ := ok.count(); return n == 20 })
	if left, _ := d.DeadLetters(context.Background(), 10); len(left) != 0 {
		t.Errorf("DLQ after replay: %+v", left)
	}
	if err := d.Replay(context.Background(), dead[0].Seq); !errors.Is(err, ErrNotFound) {
		t.Errorf("second replay: %v, want not found", err)
	}
	time.Sleep(100 * time.Millisecond)
	if ev, apps := ok.count(); ev != apps {
		t.Errorf("%d events applied %d times", ev, apps)
	}
}

// TestUserFacingLaneFirst: with one worker busy on a backlog of bulk
// events, user-facing events published later are handled before the bulk
// backlog is done.
func TestUserFacingLaneFirst(t *testing.T) {
	q, db := testenv.Queue(t), testenv.Store(t)
	var mu sync.Mutex
	var order []string
	bulkStarted := make(chan struct{}, 1)
	rec := func(lane string, delay time.Duration) outbox.Handler {
		return func(ctx context.Context, tx *sql.Tx, e outbox.Event) error {
			if lane == "bulk" {
				select {
				case bulkStarted <- struct{}{}:
				default:
				}
			}
			time.Sleep(delay)
			mu.Lock()
			order = append(order, lane)
			mu.Unlock()
			return nil
		}
	}
	start(t, q, db, Config{Workers: 1, Routes: []Route{
		{Name: "urgent", Kinds: []string{"comment.created"}, Lane: P0},
		{Name: "bulk", Kinds: []string{"page.viewed"}, Lane: P2, Capacity: 4},
	}}, map[string]outbox.Handler{"urgent": rec("urgent", 0), "bulk": rec("bulk", 20*time.Millisecond)})
	for i := range int64(60) {
		publish(t, q, 1000+i, "page.viewed")
	}
	<-bulkStarted
	for i := range int64(5) {
		publish(t, q, 1+i, "comment.created")
	}
	waitFor(t, "everything", func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == 65 })
	mu.Lock()
	defer mu.Unlock()
	lastUrgent := 0
	for i, l := range order {
		if l == "urgent" {
			lastUrgent = i
		}
	}
	bulkAfter := len(order) - 1 - lastUrgent
	t.Logf("%d of 60 bulk events ran after the last urgent one", bulkAfter)
	if bulkAfter < 20 {
		t.Errorf("only %d bulk events ran after the last urgent one; user-facing work waited for the bulk backlog: %v", bulkAfter, order)
	}
}

func TestMalformedEventsAreDeadLettered(t *testing.T) {
	q, db := testenv.Queue(t), testenv.Store(t)
	var r recorder
	d := start(t, q, db, Config{Routes: []Route{{Name: "svc", Lane: P1}}}, map[string]outbox.Handler{"svc": r.handle})
	if _, err := q.JetStream().Publish(context.Background(), "events.video.ready", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	publish(t, q, 7, "video.ready")
	waitFor(t, "the good event", func() bool { n, _ := r.count(); return n == 1 })
	waitFor(t, "the dead letter", func() bool {
		dl, _ := d.DeadLetters(context.Background(), 10)
		return len(dl) == 1 && dl[0].Raw == "{not json" && dl[0].Route == "pump"
	})
}

func TestRouteTableValidation(t *testing.T) {
	for _, routes := range [][]Route{
		{{Name: ""}},
		{{Name: "a.b"}},
		{{Name: "x"}, {Name: "x"}},
		{{Name: "x", Lane: 7}},
	} {
		if _, err := New(nil, nil, Config{Routes: routes}, quietLog, nil); err == nil {
			t.Errorf("routes %+v accepted", routes)
		}
	}
	d, err := New(nil, nil, Config{Routes: []Route{{Name: "x"}}}, quietLog, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Handle("y", nil); err == nil {
		t.Error("handler for a route not in the table accepted")
	}
}
