package notify

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/account"
	"github.com/blueprint-media/blueprint/internal/idgen/idgentest"
	"github.com/blueprint-media/blueprint/internal/media"
	"github.com/blueprint-media/blueprint/internal/notify/mailpit"
	"github.com/blueprint-media/blueprint/internal/outbox"
	"github.com/blueprint-media/blueprint/internal/queue"
	"github.com/blueprint-media/blueprint/internal/realtime"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/testenv"
	"github.com/blueprint-media/blueprint/internal/web"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// clock is a settable time source shared with the service's loops.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a notification service on a real SQLite store and an embedded
// NATS broker, with a live hub served over HTTP and, when asked, email to
// a real Mailpit.
type env struct {
	db     *sqlstore.DB
	q      *queue.Queue
	svc    *Service
	mail   *mailpit.Server
	hub    *realtime.Hub
	reg    *realtime.Registry
	module *Module
	srv    *httptest.Server // the module's routes, caller from ?as=<user id>
	clk    *clock
	seq    int64
}

type options struct {
	mail   bool
	pusher *Pusher
	page   int
}

func newEnv(t *testing.T, o options) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{db: testenv.Store(t), q: testenv.Queue(t), clk: &clock{t: time.Now()}}
	m := realtime.NewMetrics(nil)
	e.reg = realtime.NewRegistry(e.q.Conn(), m, quiet())
	if err := e.reg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.reg.Stop)
	var mailer *Mailer
	if o.mail {
		e.mail = mailpit.Start(t)
		var err error
		mailer, err = NewMailer(SMTPConfig{Host: e.mail.SMTPHost, Port: e.mail.SMTPPort, From: "Blueprint <noreply@blueprint.test>", TLS: "none", Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
	}
	e.svc = New(Config{BaseURL: "https://media.example", FanoutPage: o.page, PollInterval: 20 * time.Millisecond, DigestCheck: time.Hour}, Deps{
		DB: e.db, IDs: idgentest.New(t), Media: media.New(e.db, e.q, "http://edge.test/o/", quiet()),
		Router: realtime.NewRouter(e.q.Conn(), e.reg, m), Mailer: mailer, Pusher: o.pusher, Logger: quiet(),
	})
	e.svc.now = e.clk.Now
	pages, err := web.NewPages()
	if err != nil {
		t.Fatal(err)
	}
	hubCtx, stopHubs := context.WithCancel(ctx)
	e.module = &Module{S: e.svc, Pages: pages, Logger: quiet(), MaxBodyBytes: 1 << 20, NC: e.q.Conn(), Metrics: m, Context: hubCtx}
	mux := http.NewServeMux()
	e.module.Routes(mux, "frontend-1")
	e.hub = e.module.Hubs()[0]
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.ParseInt(r.URL.Query().Get("as"), 10, 64)
		mux.ServeHTTP(w, r.WithContext(account.NewContext(r.Context(), account.Identity{UserID: id, Username: "u" + strconv.FormatInt(id, 10)})))
	}))
	t.Cleanup(func() { stopHubs(); e.module.Stop(context.Background()); e.srv.Close() })
	return e
}

// run runs the service's consumer and loops until the test ends.
func (e *env) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if err := e.svc.Start(ctx, e.q); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { e.svc.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait(); e.svc.Stop(context.Background()) })
}

func (e *env) user(t *testing.T, name string) int64 {
	t.Helper()
	e.seq++
	id := 1000 + e.seq
	if _, err := e.db.W.Exec(`INSERT INTO users(id, username, email, password_hash, created_at) VALUES (?, ?, ?, 'x', ?)`,
		id, name, name+"@example.com", time.Now().Unix()); err != nil {
		t.Fatal(err)
	}
	return id
}

func (e *env) video(t *testing.T, owner int64, title string) int64 {
	t.Helper()
	e.seq++
	id := 500000 + e.seq
	now := time.Now().Unix()
	if _, err := e.db.W.Exec(`INSERT INTO videos(id, user_id, kind, title, status, error, source_key, source_size, created_at, updated_at)
		VALUES (?, ?, 'video', ?, 'ready', 'the codec is unknown', 'src', 1, ?, ?)`, id, owner, title, now, now); err != nil {
		t.Fatal(err)
	}
	return id
}

func (e *env) follow(t *testing.T, follower, followee int64) {
	t.Helper()
	if _, err := e.db.W.Exec(`INSERT INTO follows(follower_id, followee_id, created_at) VALUES (?, ?, ?)`, follower, followee, time.Now().Unix()); err != nil {
		t.Fatal(err)
	}
}

// emit writes an event through the outbox (relayed by publish).
func (e *env) emit(t *testing.T, kind string, subject int64, payload any) {
	t.Helper()
	if err := e.db.Tx(context.Background(), func(tx *sql.Tx) error { return outbox.Insert(context.Background(), tx, kind, subject, payload) }); err != nil {
		t.Fatal(err)
	}
}

// publish relays every unpublished event to the broker.
func (e *env) publish(t *testing.T) {
	t.Helper()
	r := outbox.NewRelay(e.db, e.q, quiet(), nil)
	if _, err := outbox.EnsureStream(context.Background(), e.q); err != nil {
		t.Fatal(err)
	}
	for {
		n, err := r.RelayOnce(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

// handle applies one event directly, in a transaction, as the consumer
// would.
func (e *env) handle(t *testing.T, kind string, subject int64, payload any) {
	t.Helper()
	raw, _ := json.Marshal(payload)
	if payload == nil {
		raw = []byte("{}")
	}
	ev := outbox.Event{ID: time.Now().UnixNano(), Kind: kind, SubjectID: subject, Payload: raw, CreatedAt: e.clk.Now()}
	if err := e.db.Tx(context.Background(), func(tx *sql.Tx) error { return e.svc.Handle(context.Background(), tx, ev) }); err != nil {
		t.Fatal(err)
	}
}

// drain runs a delivery step until it reports no more work.
func drain(t *testing.T, step func(context.Context) (bool, error)) {
	t.Helper()
	for range 10_000 {
		more, err := step(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !more {
			return
		}
	}
	t.Fatal("step never ran out of work")
}

func (e *env) count(t *testing.T, q string, args ...any) int {
	t.Helper()
	var n int
	if err := e.db.R.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *env) inbox(t *testing.T, user int64) []Notification {
	t.Helper()
	items, _, err := e.svc.List(context.Background(), user, ListOptions{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	return items
}

// waitFor polls cond (synchronisation; the deadline only guards a hang).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sse is an open notification stream.
type sse struct {
	events chan sseEvent
	cancel context.CancelFunc
}

type sseEvent struct{ name, id, data string }

func (e *env) stream(t *testing.T, user int64, lastID string) *sse {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/api/v1/notifications/stream?as=%d", e.srv.URL, user), nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		cancel()
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &sse{events: make(chan sseEvent, 100), cancel: cancel}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	go func() {
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" {
					s.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.name = line[7:]
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "data: "):
				ev.data += line[6:]
			}
		}
	}()
	return s
}

// next returns the next event other than pings.
func (s *sse) next(t *testing.T) sseEvent {
	t.Helper()
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				t.Fatal("stream ended")
			}
			if ev.name != "ping" {
				return ev
			}
		case <-time.After(20 * time.Second):
			t.Fatal("no event within 20 s")
		}
	}
}

type liveData struct {
	Notification Notification `json:"notification"`
	Unread       int          `json:"unread"`
}

// TestUploadReachesFollowers is the whole path in one process: a video
// becomes ready (event through the outbox relay and the consumer), the
// uploader is told, the fan-out notifies each follower in pages according
// to their preferences, the connected follower gets it live with the
// unread count, and each email recipient gets exactly one email, read
// back from a real SMTP server. A second ready event for the same video
// changes nothing.
func TestUploadReachesFollowers(t *testing.T) {
	e := newEnv(t, options{mail: true, page: 2})
	ctx := context.Background()
	creator := e.user(t, "creator")
	fan := e.user(t, "fan")
	quietFan := e.user(t, "quietfan") // no email for uploads
	muted := e.user(t, "muted")       // nothing at all for uploads
	other := e.user(t, "other")       // follows somebody else
	for _, f := range []int64{fan, quietFan, muted} {
		e.follow(t, f, creator)
	}
	e.follow(t, other, fan)
	if err := e.svc.SetPreferences(ctx, quietFan, Preferences{Types: map[string]map[string]bool{TypeNewUpload: {ChannelEmail: false}}}); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetPreferences(ctx, muted, Preferences{Types: map[string]map[string]bool{TypeNewUpload: {ChannelWeb: false, ChannelEmail: false, ChannelPush: false}}}); err != nil {
		t.Fatal(err)
	}
	live := e.stream(t, fan, "")
	if ev := live.next(t); ev.name != "hello" {
		t.Fatalf("first event %+v", ev)
	}
	if ev := live.next(t); ev.name != "unread" || ev.data != `{"unread":0}` {
		t.Fatalf("second event %+v", ev)
	}
	waitFor(t, "the registry to know the fan's connection", func() bool { return len(e.reg.Lookup(fan)) == 1 })
	e.run(t)

	video := e.video(t, creator, "Sunset over the bay")
	e.emit(t, "video.ready", video, nil)
	e.publish(t)

	ev := live.next(t)
	var d liveData
	if err := json.Unmarshal([]byte(ev.data), &d); err != nil {
		t.Fatal(err)
	}
	if ev.name != "notification" || d.Notification.Type != TypeNewUpload || d.Unread != 1 || ev.id != strconv.FormatInt(d.Notification.ID, 10) {
		t.Fatalf("live event %+v %+v", ev, d)
	}
	if d.Notification.Title != "creator uploaded a new video" || !strings.Contains(d.Notification.Text, "Sunset over the bay") || d.Notification.URL != fmt.Sprintf("/watch/%d", video) {
		t.Fatalf("notification %+v", d.Notification)
	}

	// Email: the creator (ready) and the fan (upload); nobody else.
	e.mail.WaitTo(t, "creator@example.com", 1, 20*time.Second)
	e.mail.WaitTo(t, "fan@example.com", 1, 20*time.Second)
	waitFor(t, "every email sent", func() bool {
		return e.count(t, `SELECT COUNT(*) FROM notify_emails WHERE status = 'sent'`) == 2
	})
	waitFor(t, "the fan-out to finish", func() bool { return e.count(t, `SELECT COUNT(*) FROM notify_fanout`) == 0 })

	// A duplicate fact: the video is reported ready again.
	e.emit(t, "video.ready", video, nil)
	e.publish(t)
	waitFor(t, "the duplicate event consumed", func() bool {
		return e.count(t, `SELECT COUNT(*) FROM processed_events WHERE consumer = 'notify'`) == 2
	})
	waitFor(t, "the second fan-out", func() bool { return e.count(t, `SELECT COUNT(*) FROM notify_fanout`) == 0 })

	got := map[int64][]string{}
	for _, u := range []int64{creator, fan, quietFan, muted, other} {
		for _, n := range e.inbox(t, u) {
			got[u] = append(got[u], n.Type)
		}
	}
	want := map[int64][]string{creator: {TypeVideoReady}, fan: {TypeNewUpload}, quietFan: {TypeNewUpload}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("inboxes %v, want %v", got, want)
	}
	if n := e.count(t, `SELECT COUNT(*) FROM notify_emails`); n != 2 {
		t.Fatalf("%d emails queued, want 2", n)
	}
	for _, addr := range []string{"creator@example.com", "fan@example.com"} {
		msgs := e.mail.To(t, addr)
		if len(msgs) != 1 {
			t.Fatalf("%d emails to %s, want exactly 1", len(msgs), addr)
		}
		m := e.mail.Message(t, msgs[0].ID)
		link := fmt.Sprintf("https://media.example/watch/%d", video)
		if !strings.Contains(m.Text, "Sunset over the bay") || !strings.Contains(m.Text, link) ||
			!strings.Contains(m.HTML, "Sunset over the bay") || !strings.Contains(m.HTML, `href="`+link+`"`) {
			t.Fatalf("email to %s lacks the content or link:\ntext: %s\nhtml: %s", addr, m.Text, m.HTML)
		}
		if m.From.Address != "noreply@blueprint.test" || !strings.HasPrefix(m.MessageID, "notify-") {
			t.Fatalf("email headers: from %+v, id %s", m.From, m.MessageID)
		}
	}
	if s := e.mail.Message(t, e.mail.To(t, "fan@example.com")[0].ID).Subject; s != "creator uploaded a new video" {
		t.Fatalf("subject %q", s)
	}
	// The fan's stream got exactly one notification.
	select {
	case ev := <-live.events:
		if ev.name == "notification" {
			t.Fatalf("a second live notification: %+v", ev)
		}
	default:
	}
}

// TestRules covers comments, follows and failures, the de-duplication of
// each, and malformed payloads (skipped, not retried forever).
func TestRules(t *testing.T) {
	e := newEnv(t, options{})
	owner := e.user(t, "owner")
	bob := e.user(t, "bob")
	video := e.video(t, owner, "My clip")
	s := func(id int64) string { return strconv.FormatInt(id, 10) }

	// Comments: the owner's own is not notified; bob's is, once.
	e.handle(t, "comment.created", video, map[string]string{"comment_id": "1", "video_id": s(video), "user_id": s(owner), "video_owner_id": s(owner), "body": "first"})
	for range 2 {
		e.handle(t, "comment.created", video, map[string]string{"comment_id": "2", "video_id": s(video), "user_id": s(bob), "video_owner_id": s(owner), "body": "  nice\n\nclip  "})
	}
	// Follows: once a day however often repeated.
	for range 3 {
		e.handle(t, "user.followed", owner, map[string]string{"follower_id": s(bob), "followee_id": s(owner)})
	}
	e.clk.Add(25 * time.Hour)
	e.handle(t, "user.followed", owner, map[string]string{"follower_id": s(bob), "followee_id": s(owner)})
	// Failure.
	e.handle(t, "video.failed", video, nil)
	// Malformed and unknown: no error, nothing created.
	e.handle(t, "comment.created", video, map[string]string{"comment_id": "x"})
	e.handle(t, "user.followed", owner, map[string]any{"follower_id": 12})
	e.handle(t, "video.ready", 999999, nil) // no such video
	e.handle(t, "video.liked", video, nil)

	items := e.inbox(t, owner)
	var got []string
	for _, n := range items {
		got = append(got, n.Type+": "+n.Title+" / "+n.Text)
	}
	want := []string{
		"video_failed: Your upload failed / “My clip” could not be processed: the codec is unknown",
		"new_follower: bob followed you / bob now follows your uploads.",
		"new_follower: bob followed you / bob now follows your uploads.",
		"comment: bob commented on “My clip” / nice clip",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("inbox:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(e.inbox(t, bob)) != 0 {
		t.Fatal("bob got notifications")
	}
	// Email is off (no SMTP), push is off: no delivery rows; every web
	// notification has a live hint waiting.
	if n := e.count(t, `SELECT COUNT(*) FROM notify_deliveries`); n != 0 {
		t.Fatalf("%d delivery rows with email and push off", n)
	}
	if n := e.count(t, `SELECT COUNT(*) FROM notify_live`); n != 4 {
		t.Fatalf("%d live hints, want 4", n)
	}
	drain(t, e.svc.routeLive)
	if n := e.count(t, `SELECT COUNT(*) FROM notify_live`); n != 0 {
		t.Fatalf("%d live hints left after routing", n)
	}
}

// TestInboxAPI drives the HTTP API: list with cursor and unread filter,
// mark read (one, all) with the count pushed live, preferences get and
// put, and the 4xx answers to bad input.
func TestInboxAPI(t *testing.T) {
	e := newEnv(t, options{})
	owner := e.user(t, "owner")
	s := func(id int64) string { return strconv.FormatInt(id, 10) }
	for i := range 5 {
		e.handle(t, "comment.created", 1, map[string]string{"comment_id": s(int64(i + 1)), "video_id": "1", "user_id": s(e.user(t, fmt.Sprintf("c%d", i))), "video_owner_id": s(owner), "body": "hi"})
	}
	call := func(method, path string, as int64, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, fmt.Sprintf("%s%s%sas=%d", e.srv.URL, path, map[bool]string{true: "&", false: "?"}[strings.Contains(path, "?")], as), strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	code, out := call("GET", "/api/v1/notifications?limit=3", owner, "")
	if code != 200 || len(out["notifications"].([]any)) != 3 || out["unread"].(float64) != 5 || out["next"] == nil {
		t.Fatalf("first page: %d %v", code, out)
	}
	code, out = call("GET", "/api/v1/notifications?limit=3&before="+out["next"].(string), owner, "")
	if code != 200 || len(out["notifications"].([]any)) != 2 || out["next"] != nil {
		t.Fatalf("second page: %d %v", code, out)
	}
	first := out["notifications"].([]any)[0].(map[string]any)["id"].(string)

	live := e.stream(t, owner, "")
	live.next(t) // hello
	live.next(t) // unread 5
	waitFor(t, "registry", func() bool { return len(e.reg.Lookup(owner)) == 1 })
	if code, out = call("POST", "/api/v1/notifications/read", owner, `{"ids":["`+first+`"]}`); code != 200 || out["unread"].(float64) != 4 {
		t.Fatalf("mark one read: %d %v", code, out)
	}
	if ev := live.next(t); ev.name != "unread" || ev.data != `{"unread":4}` {
		t.Fatalf("live unread after mark read: %+v", ev)
	}
	code, out = call("GET", "/api/v1/notifications?unread=true", owner, "")
	if len(out["notifications"].([]any)) != 4 {
		t.Fatalf("unread filter: %v", out)
	}
	if code, out = call("POST", "/api/v1/notifications/read", owner, `{"all":true}`); code != 200 || out["unread"].(float64) != 0 {
		t.Fatalf("mark all read: %d %v", code, out)
	}

	code, out = call("GET", "/api/v1/notifications/preferences", owner, "")
	if code != 200 || out["email_digest"] != "instant" || out["types"].(map[string]any)["comment"].(map[string]any)["email"] != true || out["email_enabled"] != false {
		t.Fatalf("default preferences: %d %v", code, out)
	}
	code, out = call("PUT", "/api/v1/notifications/preferences", owner, `{"email_digest":"daily","types":{"comment":{"email":false}}}`)
	if code != 200 || out["email_digest"] != "daily" || out["types"].(map[string]any)["comment"].(map[string]any)["email"] != false ||
		out["types"].(map[string]any)["comment"].(map[string]any)["web"] != true {
		t.Fatalf("put preferences: %d %v", code, out)
	}

	for _, c := range []struct {
		method, path, body string
		as                 int64
		want               int
	}{
		{"GET", "/api/v1/notifications", "", 0, 401},
		{"GET", "/api/v1/notifications/stream", "", 0, 401},
		{"GET", "/api/v1/notifications?limit=0", "", owner, 400},
		{"GET", "/api/v1/notifications?limit=abc", "", owner, 400},
		{"GET", "/api/v1/notifications?before=-1", "", owner, 400},
		{"GET", "/api/v1/notifications?unread=maybe", "", owner, 400},
		{"POST", "/api/v1/notifications/read", `{}`, owner, 400},
		{"POST", "/api/v1/notifications/read", `{"ids":["abc"]}`, owner, 400},
		{"POST", "/api/v1/notifications/read", `{"ids":["1"],"x":1}`, owner, 400},
		{"POST", "/api/v1/notifications/read", `{"ids":[` + strings.TrimSuffix(strings.Repeat(`"1",`, MaxMarkRead+1), ",") + `]}`, owner, 400},
		{"PUT", "/api/v1/notifications/preferences", `{"email_digest":"weekly"}`, owner, 400},
		{"PUT", "/api/v1/notifications/preferences", `{"types":{"spam":{"web":true}}}`, owner, 400},
		{"PUT", "/api/v1/notifications/preferences", `{"types":{"comment":{"sms":true}}}`, owner, 400},
		{"PUT", "/api/v1/notifications/preferences", `not json`, owner, 400},
		{"PUT", "/api/v1/notifications/preferences", `{"types":{}} {}`, owner, 400},
		{"GET", "/api/v1/push/key", "", owner, 404},
		{"POST", "/api/v1/push/subscriptions", `{}`, owner, 503},
	} {
		if code, out := call(c.method, c.path, c.as, c.body); code != c.want {
			t.Errorf("%s %s %s: %d %v, want %d", c.method, c.path, c.body, code, out, c.want)
		}
	}
}

// TestPage renders the notifications page and submits its forms.
func TestPage(t *testing.T) {
	e := newEnv(t, options{})
	owner := e.user(t, "owner")
	e.handle(t, "user.followed", owner, map[string]string{"follower_id": strconv.FormatInt(e.user(t, "zed"), 10), "followee_id": strconv.FormatInt(owner, 10)})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(fmt.Sprintf("%s/notifications?as=%d", e.srv.URL, owner))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(b)
	for _, want := range []string{"zed followed you", `id="notification-list"`, `name="new_upload.email" checked`, `<option value="instant" selected>`, "no mail server configured"} {
		if !strings.Contains(page, want) {
			t.Fatalf("page lacks %q:\n%s", want, page)
		}
	}
	resp, _ = client.Get(e.srv.URL + "/notifications")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Fatalf("anonymous: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Save preferences: everything unticked except comment by web; hourly.
	resp, err = client.PostForm(fmt.Sprintf("%s/notifications/preferences?as=%d", e.srv.URL, owner), map[string][]string{
		"comment.web": {"on"}, "email_digest": {"hourly"},
	})
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("save: %v %d", err, resp.StatusCode)
	}
	p, _ := e.svc.Preferences(context.Background(), owner)
	if p.EmailDigest != DigestHourly || !p.Types[TypeComment][ChannelWeb] || p.Types[TypeComment][ChannelEmail] || p.Types[TypeNewUpload][ChannelWeb] {
		t.Fatalf("saved %+v", p)
	}
	resp, err = client.PostForm(fmt.Sprintf("%s/notifications/read?as=%d", e.srv.URL, owner), map[string][]string{"all": {"1"}})
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("mark all: %v %d", err, resp.StatusCode)
	}
	if n, _ := e.svc.Unread(context.Background(), owner); n != 0 {
		t.Fatalf("unread %d", n)
	}
}

// TestResumeAfterReconnect: a client that reconnects with the ID of the
// last event it saw gets what it missed from the inbox, in order.
func TestResumeAfterReconnect(t *testing.T) {
	e := newEnv(t, options{})
	owner := e.user(t, "owner")
	var ids []int64
	for i := range 3 {
		e.handle(t, "comment.created", 1, map[string]string{"comment_id": strconv.Itoa(i + 1), "video_id": "1", "user_id": strconv.FormatInt(e.user(t, fmt.Sprintf("r%d", i)), 10), "video_owner_id": strconv.FormatInt(owner, 10), "body": "x"})
	}
	for _, n := range e.inbox(t, owner) {
		ids = append([]int64{n.ID}, ids...)
	}
	s := e.stream(t, owner, strconv.FormatInt(ids[0], 10))
	if ev := s.next(t); ev.name != "hello" {
		t.Fatal(ev)
	}
	if ev := s.next(t); ev.data != `{"unread":3}` {
		t.Fatal(ev)
	}
	for _, want := range ids[1:] {
		if ev := s.next(t); ev.name != "notification" || ev.id != strconv.FormatInt(want, 10) {
			t.Fatalf("replayed %+v, want id %d", ev, want)
		}
	}
}

// FuzzParsePreferences: untrusted preference documents are either
// refused with an Invalid error or valid to store.
func FuzzParsePreferences(f *testing.F) {
	f.Add([]byte(`{"email_digest":"hourly","types":{"comment":{"email":false}}}`))
	f.Add([]byte(`{"types":{"x":{}}}`))
	f.Add([]byte(`{"email_digest":"` + strings.Repeat("a", 100) + `"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePreferences(b)
		if err != nil {
			return
		}
		if p.validate() != nil {
			t.Fatalf("accepted invalid %s", b)
		}
		for typ, chans := range p.Types {
			if !knownType(typ) {
				t.Fatalf("accepted type %q", typ)
			}
			for c := range chans {
				if c != ChannelWeb && c != ChannelEmail && c != ChannelPush {
					t.Fatalf("accepted channel %q", c)
				}
			}
		}
	})
}
