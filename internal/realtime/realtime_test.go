package realtime

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/queue"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// broker starts an embedded NATS server and returns a function that opens
// a new connection to it — one per simulated process.
func broker(t *testing.T) func() *nats.Conn {
	t.Helper()
	ctx := context.Background()
	b := queue.NewBroker(queue.BrokerConfig{StoreDir: filepath.Join(t.TempDir(), "broker"), Addr: "127.0.0.1:0"}, quiet())
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Stop(ctx) })
	return func() *nats.Conn {
		nc, err := nats.Connect(b.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
}

// process is one simulated frontend process: a connection, a registry, a
// router and one hub served over HTTP.
type process struct {
	nc     *nats.Conn
	m      *Metrics
	reg    *Registry
	router *Router
	hub    *Hub
	srv    *httptest.Server
}

func startProcess(t *testing.T, connect func() *nats.Conn, name string, cfg HubConfig, backlog Backlog) *process {
	t.Helper()
	ctx := context.Background()
	p := &process{nc: connect(), m: NewMetrics(nil)}
	p.reg = NewRegistry(p.nc, p.m, quiet())
	if err := p.reg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.reg.Stop)
	p.router = NewRouter(p.nc, p.reg, p.m)
	cfg.Name = name
	p.hub = NewHub(cfg, p.nc, p.m, quiet())
	if err := p.hub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.hub.Stop(context.Background()) })
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _ := strconv.ParseInt(r.URL.Query().Get("user"), 10, 64)
		if err := p.hub.Serve(w, r, user, backlog); err != nil {
			http.Error(w, errs.Message(err), errs.HTTPStatus(err))
		}
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// event is one parsed server-sent event.
type event struct{ name, id, data string }

// stream is an open SSE response.
type stream struct {
	resp   *http.Response
	events chan event
	cancel context.CancelFunc
}

func open(t *testing.T, url string, header http.Header) (*stream, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		return nil, resp
	}
	s := &stream{resp: resp, events: make(chan event, 100), cancel: cancel}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	go func() {
		defer close(s.events)
		for e := range parseSSE(resp.Body) {
			s.events <- e
		}
	}()
	return s, resp
}

// parseSSE yields the events of a text/event-stream (comments and retry
// lines skipped).
func parseSSE(r io.Reader) func(func(event) bool) {
	return func(yield func(event) bool) {
		sc := bufio.NewScanner(r)
		var e event
		var data []string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if e.name != "" || len(data) > 0 {
					e.data = strings.Join(data, "\n")
					if !yield(e) {
						return
					}
				}
				e, data = event{}, nil
			case strings.HasPrefix(line, ":"):
			case strings.HasPrefix(line, "event: "):
				e.name = line[len("event: "):]
			case strings.HasPrefix(line, "id: "):
				e.id = line[len("id: "):]
			case strings.HasPrefix(line, "data: "):
				data = append(data, line[len("data: "):])
			}
		}
	}
}

func (s *stream) next(t *testing.T) event {
	t.Helper()
	select {
	case e, ok := <-s.events:
		if !ok {
			t.Fatal("stream ended")
		}
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10 s")
	}
	return event{}
}

// waitFor polls until cond holds (synchronisation only: the deadline is a
// hang guard, not a performance bound).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func msg(event, id, data string) Message {
	return Message{Event: event, ID: id, Data: json.RawMessage(data)}
}

// TestRoutesOnlyToTheHoldingInstance: two processes, a user on each; a
// message sent from either process reaches only the instance holding its
// user, and a message for a user connected nowhere is not published.
func TestRoutesOnlyToTheHoldingInstance(t *testing.T) {
	connect := broker(t)
	p1 := startProcess(t, connect, "frontend-1", HubConfig{}, nil)
	p2 := startProcess(t, connect, "frontend-1", HubConfig{}, nil) // same name, other process
	if p1.hub.ID() == p2.hub.ID() {
		t.Fatalf("two processes share the instance ID %s", p1.hub.ID())
	}
	alice, _ := open(t, p1.srv.URL+"?user=1", nil)
	bob, _ := open(t, p2.srv.URL+"?user=2", nil)
	if h := alice.next(t); h.name != "hello" || !strings.Contains(h.data, p1.hub.ID()) {
		t.Fatalf("first event %+v", h)
	}
	bob.next(t)
	for _, p := range []*process{p1, p2} {
		waitFor(t, "registries to learn both users", func() bool {
			return slicesEqual(p.reg.Lookup(1), []string{p1.hub.ID()}) && slicesEqual(p.reg.Lookup(2), []string{p2.hub.ID()})
		})
	}

	// From process 2 to alice (on process 1), and from process 1 to bob.
	if n, err := p2.router.Send(context.Background(), 1, msg("note", "10", `{"text":"for alice"}`)); err != nil || n != 1 {
		t.Fatalf("send to alice: %d instances, %v", n, err)
	}
	if n, err := p1.router.Send(context.Background(), 2, msg("note", "11", `{"text":"for bob"}`)); err != nil || n != 1 {
		t.Fatalf("send to bob: %d instances, %v", n, err)
	}
	if e := alice.next(t); e.name != "note" || e.id != "10" || e.data != `{"text":"for alice"}` {
		t.Fatalf("alice got %+v", e)
	}
	if e := bob.next(t); e.id != "11" {
		t.Fatalf("bob got %+v", e)
	}
	// Nobody received a message for a user it does not hold.
	for _, p := range []*process{p1, p2} {
		if st := p.hub.Stats(); st.Dropped != 0 || st.Delivered != 1 {
			t.Fatalf("%s: %+v", p.hub.ID(), st)
		}
	}
	// A user connected nowhere: nothing is published.
	if n, err := p1.router.Send(context.Background(), 3, msg("note", "12", `{}`)); err != nil || n != 0 {
		t.Fatalf("send to carol: %d, %v", n, err)
	}

	// Alice opens a second tab on process 2: both tabs get her messages.
	alice2, _ := open(t, p2.srv.URL+"?user=1", nil)
	alice2.next(t)
	waitFor(t, "alice on both instances", func() bool { return len(p1.reg.Lookup(1)) == 2 })
	if n, _ := p1.router.Send(context.Background(), 1, msg("note", "13", `{}`)); n != 2 {
		t.Fatalf("alice's message went to %d instances, want 2", n)
	}
	if alice.next(t).id != "13" || alice2.next(t).id != "13" {
		t.Fatal("a tab missed the message")
	}

	// She closes the first tab: process 1 withdraws her.
	alice.cancel()
	waitFor(t, "alice withdrawn from process 1", func() bool {
		return slicesEqual(p2.reg.Lookup(1), []string{p2.hub.ID()}) && p1.hub.Stats().Connections == 0
	})
}

func slicesEqual(a, b []string) bool {
	return strings.Join(a, ",") == strings.Join(b, ",")
}

// TestLimits: connections beyond the per-user limit get 429, beyond the
// instance's total 503; closing one frees its slot.
func TestLimits(t *testing.T) {
	connect := broker(t)
	p := startProcess(t, connect, "frontend-1", HubConfig{MaxConnsPerUser: 2, MaxConns: 3}, nil)
	a1, _ := open(t, p.srv.URL+"?user=1", nil)
	a1.next(t)
	a2, _ := open(t, p.srv.URL+"?user=1", nil)
	a2.next(t)
	if _, resp := open(t, p.srv.URL+"?user=1", nil); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third connection of one user: %d", resp.StatusCode)
	}
	b1, _ := open(t, p.srv.URL+"?user=2", nil)
	b1.next(t)
	if _, resp := open(t, p.srv.URL+"?user=3", nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("connection over the total: %d", resp.StatusCode)
	}
	a1.cancel()
	waitFor(t, "slot freed", func() bool { return p.hub.Stats().Connections == 2 })
	c, resp := open(t, p.srv.URL+"?user=3", nil)
	if c == nil {
		t.Fatalf("after a close: %d", resp.StatusCode)
	}
	if st := p.hub.Stats(); st.Refused != 2 {
		t.Fatalf("refused %d, want 2", st.Refused)
	}
}

// TestResumeFromLastEventID: the backlog function receives the client's
// Last-Event-ID (header or query), its messages come before live ones, and
// a message both in the backlog and live is written once.
func TestResumeFromLastEventID(t *testing.T) {
	connect := broker(t)
	gotLast := make(chan string, 2)
	release := make(chan struct{})
	backlog := func(ctx context.Context, user int64, last string) ([]Message, error) {
		gotLast <- last
		<-release // hold the backlog until the live message is queued
		return []Message{msg("note", "21", `{"n":21}`), msg("note", "22", `{"n":22}`)}, nil
	}
	p := startProcess(t, connect, "frontend-1", HubConfig{}, backlog)
	s, _ := open(t, p.srv.URL+"?user=7", http.Header{"Last-Event-Id": {"20"}})
	if last := <-gotLast; last != "20" {
		t.Fatalf("backlog saw Last-Event-ID %q", last)
	}
	waitFor(t, "registry", func() bool { return len(p.reg.Lookup(7)) == 1 })
	p.router.Send(context.Background(), 7, msg("note", "22", `{"n":22}`)) // also in the backlog
	p.router.Send(context.Background(), 7, msg("note", "23", `{"n":23}`))
	waitFor(t, "live messages queued", func() bool {
		p.hub.mu.Lock()
		defer p.hub.mu.Unlock()
		for c := range p.hub.users[7] {
			c.qmu.Lock()
			defer c.qmu.Unlock()
			return len(c.q) == 2
		}
		return false
	})
	close(release)
	var ids []string
	for range 4 {
		ids = append(ids, s.next(t).id)
	}
	if got := strings.Join(ids, ","); got != ",21,22,23" {
		t.Fatalf("event ids %q, want hello then 21,22,23", got)
	}

	// The query parameter works too (clients reconnecting by hand).
	release = make(chan struct{})
	close(release)
	open(t, p.srv.URL+"?user=8&last_event_id=99", nil)
	if last := <-gotLast; last != "99" {
		t.Fatalf("backlog saw last_event_id %q", last)
	}
}

// TestSlowClientIsDisconnected: a connection whose queue is full is
// closed instead of blocking the hub; others are unaffected.
func TestSlowClientIsDisconnected(t *testing.T) {
	connect := broker(t)
	nc := connect()
	h := NewHub(HubConfig{Name: "f", SendQueue: 2}, nc, nil, quiet())
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer h.Stop(context.Background())
	slow, err := h.register(1)
	if err != nil {
		t.Fatal(err)
	}
	fast, _ := h.register(1)
	for i := range 3 {
		m := msg("note", strconv.Itoa(i), `{}`)
		m.UserID = 1
		b, _ := json.Marshal(m)
		h.receive(&nats.Msg{Data: b})
		fast.take(nil) // the fast one keeps up
	}
	select {
	case <-slow.kill:
	default:
		t.Fatal("slow connection not closed")
	}
	select {
	case <-fast.kill:
		t.Fatal("fast connection closed")
	default:
	}
	if st := h.Stats(); st.Dropped != 1 {
		t.Fatalf("dropped %d", st.Dropped)
	}
}

// TestRegistryExpiresSilentInstances: an instance that stops refreshing
// (a crashed process) drops out after its TTL; a refresh keeps it.
func TestRegistryExpiresSilentInstances(t *testing.T) {
	now := time.Unix(1000, 0)
	r := NewRegistry(nil, nil, quiet())
	r.now = func() time.Time { return now }
	r.apply(presence{Instance: "a", Op: opAdd, Users: []int64{1, 2}, TTLMilli: 30_000})
	r.apply(presence{Instance: "b", Op: opAdd, Users: []int64{1}, TTLMilli: 30_000})
	if got := r.Lookup(1); !slicesEqual(got, []string{"a", "b"}) {
		t.Fatalf("lookup %v", got)
	}
	now = now.Add(20 * time.Second)
	r.apply(presence{Instance: "a", Op: opRefresh, Users: []int64{1}, TTLMilli: 30_000}) // user 2 left silently
	now = now.Add(20 * time.Second)
	if got := r.Lookup(1); !slicesEqual(got, []string{"a"}) {
		t.Fatalf("after b went silent: %v", got)
	}
	if got := r.Lookup(2); len(got) != 0 {
		t.Fatalf("user 2 still at %v", got)
	}
	r.sweep()
	if n := len(r.Instances()); n != 1 {
		t.Fatalf("%d instances after the sweep", n)
	}
	r.apply(presence{Instance: "a", Op: opDel, Users: []int64{1}})
	r.apply(presence{Instance: "a", Op: opGone})
	if got := r.Lookup(1); len(got) != 0 || len(r.Instances()) != 0 {
		t.Fatalf("after gone: %v %v", got, r.Instances())
	}
}

// TestLateRegistryLearnsOpenConnections: a registry started after the
// connections were opened learns them at once from the sync request, and
// a stopped hub is withdrawn.
func TestLateRegistryLearnsOpenConnections(t *testing.T) {
	connect := broker(t)
	p := startProcess(t, connect, "frontend-1", HubConfig{PresenceInterval: time.Hour}, nil)
	s, _ := open(t, p.srv.URL+"?user=5", nil)
	s.next(t)
	late := NewRegistry(connect(), nil, quiet())
	if err := late.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer late.Stop()
	waitFor(t, "late registry", func() bool { return slicesEqual(late.Lookup(5), []string{p.hub.ID()}) })
	if err := p.hub.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stopped hub withdrawn", func() bool { return len(late.Lookup(5)) == 0 })
	if _, ok := <-s.events; ok {
		t.Fatal("stream still open after the hub stopped")
	}
}

func TestMessageValidate(t *testing.T) {
	good := Message{UserID: 1, Event: "notification", ID: "123", Data: json.RawMessage(`{"a":1}`)}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string]Message{
		"no user":      {Event: "x"},
		"no event":     {UserID: 1},
		"event break":  {UserID: 1, Event: "a\nb"},
		"id break":     {UserID: 1, Event: "a", ID: "1\n2"},
		"not json":     {UserID: 1, Event: "a", Data: json.RawMessage(`{`)},
		"upper event":  {UserID: 1, Event: "Note"},
		"huge data":    {UserID: 1, Event: "a", Data: json.RawMessage(`"` + strings.Repeat("x", MaxDataBytes) + `"`)},
		"long id":      {UserID: 1, Event: "a", ID: strings.Repeat("1", 65)},
		"event spaces": {UserID: 1, Event: "a b"},
	} {
		if err := m.Validate(); !errors.Is(err, ErrBadMessage) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzEncodeSSE: every message that validates encodes to exactly one event
// that parses back to the same name, id and data.
func FuzzEncodeSSE(f *testing.F) {
	f.Add("notification", "1", `{"a":"b"}`)
	f.Add("unread", "", "{\n\"a\": 1\n}")
	f.Add("x", "id", "\"line\\nbreak\"")
	f.Add("hello", "", "[1,\r\n2]")
	f.Fuzz(func(t *testing.T, name, id, data string) {
		m := Message{UserID: 1, Event: name, ID: id, Data: json.RawMessage(data)}
		if m.Validate() != nil || len(data) == 0 {
			return
		}
		enc := EncodeSSE(m)
		if strings.Contains(string(enc), "\r") {
			t.Fatalf("a CR in %q ends a line for browsers", enc)
		}
		var got []event
		for e := range parseSSE(strings.NewReader(string(enc))) {
			got = append(got, e)
		}
		if len(got) != 1 {
			t.Fatalf("%d events from %q", len(got), EncodeSSE(m))
		}
		// Line breaks inside the data may change form (CRLF to LF), the
		// JSON value may not.
		var a, b any
		if json.Unmarshal([]byte(got[0].data), &b) != nil || json.Unmarshal([]byte(data), &a) != nil {
			t.Fatalf("data %q does not parse back", got[0].data)
		}
		ab, _ := json.Marshal(a)
		bb, _ := json.Marshal(b)
		if got[0].name != name || got[0].id != id || string(ab) != string(bb) {
			t.Fatalf("got %+v from %+v", got[0], m)
		}
	})
}
