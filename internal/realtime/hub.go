package realtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/blueprint-media/blueprint/internal/errs"
)

// HubConfig configures a Hub. Zero values take the defaults in brackets.
type HubConfig struct {
	Name             string        // instance name, e.g. "frontend-1"
	MaxConnsPerUser  int           // live connections per user [8]
	MaxConns         int           // live connections in total [10000]
	Heartbeat        time.Duration // keep-alive comment period [25s]
	PresenceInterval time.Duration // full presence refresh period [10s]
	SendQueue        int           // messages queued per connection [64]
	WriteTimeout     time.Duration // bound on one write to a client [10s]
	Retry            time.Duration // reconnect delay advertised to clients [2s]
}

func (c *HubConfig) defaults() {
	if c.Name == "" {
		c.Name = "frontend"
	}
	if c.MaxConnsPerUser <= 0 {
		c.MaxConnsPerUser = 8
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 10_000
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 25 * time.Second
	}
	if c.PresenceInterval <= 0 {
		c.PresenceInterval = 10 * time.Second
	}
	if c.SendQueue <= 0 {
		c.SendQueue = 64
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.Retry <= 0 {
		c.Retry = 2 * time.Second
	}
}

// Backlog returns the messages a new connection gets first: typically the
// current state and, when lastEventID is not empty, what the user missed
// since that event, read from the source of truth. It runs after the
// connection is registered, so nothing published meanwhile is lost; a
// message in the backlog that also arrives live is written once.
type Backlog func(ctx context.Context, userID int64, lastEventID string) ([]Message, error)

// Hub holds one frontend instance's live connections.
type Hub struct {
	cfg HubConfig
	id  string
	nc  *nats.Conn
	m   *Metrics
	log *slog.Logger

	mu     sync.Mutex
	users  map[int64]map[*conn]struct{}
	total  int
	closed bool

	ctx     context.Context
	cancel  context.CancelFunc
	subs    []*nats.Subscription
	loop    sync.WaitGroup
	streams sync.WaitGroup

	delivered, dropped, refused atomic.Int64
	slowDrops                   int64 // NATS slow-consumer drops counted so far; the presence loop only
}

// conn is one live connection.
type conn struct {
	user     int64
	ch       chan Message
	kill     chan struct{}
	killOnce sync.Once
}

func (c *conn) close() { c.killOnce.Do(func() { close(c.kill) }) }

// NewInstanceID returns an ID for the instance called name that is unique
// across processes and restarts and safe as a NATS subject token: the
// name, the host, the process ID and 48 random bits.
func NewInstanceID(name string) string {
	host, _ := os.Hostname()
	b := make([]byte, 6)
	rand.Read(b)
	return fmt.Sprintf("%s-%s-%d-%s", token(name), token(host), os.Getpid(), hex.EncodeToString(b))
}

// token keeps the characters of s that are safe in a subject token.
func token(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteRune(c)
		}
		if b.Len() >= 40 {
			break
		}
	}
	if b.Len() == 0 {
		return "x"
	}
	return b.String()
}

// NewHub returns a Hub for one instance; Start runs it.
func NewHub(cfg HubConfig, nc *nats.Conn, m *Metrics, logger *slog.Logger) *Hub {
	cfg.defaults()
	if m == nil {
		m = NewMetrics(nil)
	}
	return &Hub{cfg: cfg, id: NewInstanceID(cfg.Name), nc: nc, m: m, log: logger, users: map[int64]map[*conn]struct{}{}}
}

// ID returns the instance ID the hub is registered under.
func (h *Hub) ID() string { return h.id }

// Name returns the instance name.
func (h *Hub) Name() string { return h.cfg.Name }

// Start subscribes to the hub's subject and to presence sync requests and
// starts the presence refresh. The hub closes its connections when ctx
// ends or Stop is called.
func (h *Hub) Start(ctx context.Context) error {
	h.ctx, h.cancel = context.WithCancel(ctx)
	sub, err := h.nc.Subscribe(subjectPrefix+h.id, h.receive)
	if err != nil {
		return fmt.Errorf("realtime: subscribe: %w", err)
	}
	// A hub that falls behind its subject buffers at most this much; the
	// NATS client drops what exceeds it ("slow consumer"), and
	// countSlowDrops reports those drops. Live messages are hints: the
	// inbox keeps every notification.
	if err := sub.SetPendingLimits(pendingMsgs, pendingBytes); err != nil {
		sub.Unsubscribe()
		return fmt.Errorf("realtime: pending limits: %w", err)
	}
	h.subs = append(h.subs, sub)
	sync, err := h.nc.Subscribe(subjectSync, func(*nats.Msg) { h.refresh() })
	if err != nil {
		sub.Unsubscribe()
		return fmt.Errorf("realtime: subscribe: %w", err)
	}
	h.subs = append(h.subs, sync)
	// The subscriptions are in place at the server before anyone learns
	// this instance exists.
	if err := h.nc.Flush(); err != nil {
		h.unsubscribe()
		return fmt.Errorf("realtime: flush: %w", err)
	}
	h.m.connections.WithLabelValues(h.cfg.Name).Set(0)
	h.loop.Go(func() {
		t := time.NewTicker(h.cfg.PresenceInterval)
		defer t.Stop()
		for {
			select {
			case <-h.ctx.Done():
				h.shutdown()
				return
			case <-t.C:
				h.refresh()
				h.countSlowDrops(sub)
			}
		}
	})
	h.log.Info("realtime hub started", "instance", h.cfg.Name, "id", h.id)
	return nil
}

// Bounds of a hub's backlog of routed messages.
const (
	pendingMsgs  = 100_000
	pendingBytes = 64 << 20
)

// countSlowDrops adds the messages the NATS client dropped because the hub
// fell behind to the dropped counter (reason "slow_hub").
func (h *Hub) countSlowDrops(sub *nats.Subscription) {
	n, err := sub.Dropped()
	if err != nil {
		return
	}
	if d := int64(n) - h.slowDrops; d > 0 {
		h.slowDrops = int64(n)
		h.dropped.Add(d)
		h.m.dropped.WithLabelValues(h.cfg.Name, "slow_hub").Add(float64(d))
		h.log.Warn("realtime: hub fell behind; live messages dropped (the inbox has them)", "instance", h.cfg.Name, "dropped", d)
	}
}

// Stop closes every connection, withdraws the instance from the registries
// and waits for the streams to end (until ctx ends).
func (h *Hub) Stop(ctx context.Context) error {
	if h.cancel == nil {
		return nil
	}
	h.cancel()
	h.loop.Wait()
	done := make(chan struct{})
	go func() { h.streams.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("realtime: stop: %w", ctx.Err())
	}
}

// shutdown runs once when the hub's context ends.
func (h *Hub) shutdown() {
	h.unsubscribe()
	h.mu.Lock()
	h.closed = true
	for _, cs := range h.users {
		for c := range cs {
			c.close()
		}
	}
	h.mu.Unlock()
	h.publish(presence{Op: opGone})
	h.nc.Flush()
}

func (h *Hub) unsubscribe() {
	for _, s := range h.subs {
		s.Unsubscribe()
	}
	h.subs = nil
}

func (h *Hub) ttl() time.Duration { return 3 * h.cfg.PresenceInterval }

// publish sends a presence message about this instance.
func (h *Hub) publish(p presence) {
	p.Instance, p.Name, p.TTLMilli = h.id, h.cfg.Name, h.ttl().Milliseconds()
	b, _ := json.Marshal(p)
	if err := h.nc.Publish(subjectPresence, b); err != nil && h.ctx.Err() == nil {
		h.log.Warn("realtime: presence publish failed", "instance", h.cfg.Name, "err", err)
	}
}

// refresh republishes every user this instance holds, in chunks.
func (h *Hub) refresh() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	users := make([]int64, 0, len(h.users))
	for u := range h.users {
		users = append(users, u)
	}
	h.mu.Unlock()
	if len(users) == 0 {
		h.publish(presence{Op: opRefresh}) // keeps the instance itself listed
		return
	}
	for start := 0; start < len(users); start += presenceChunk {
		end := min(start+presenceChunk, len(users))
		h.publish(presence{Op: opRefresh, Users: users[start:end]})
	}
}

// receive handles a message routed to this instance.
func (h *Hub) receive(msg *nats.Msg) {
	var m Message
	if err := json.Unmarshal(msg.Data, &m); err != nil || m.Validate() != nil {
		h.log.Warn("realtime: malformed message dropped", "instance", h.cfg.Name)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	cs := h.users[m.UserID]
	if len(cs) == 0 {
		h.dropped.Add(1)
		h.m.dropped.WithLabelValues(h.cfg.Name, "no_connection").Inc()
		return
	}
	for c := range cs {
		select {
		case c.ch <- m:
		default:
			// The client does not keep up: drop the connection rather
			// than block the hub; it reconnects and resumes from its
			// Last-Event-ID.
			c.close()
			h.dropped.Add(1)
			h.m.dropped.WithLabelValues(h.cfg.Name, "slow_client").Inc()
		}
	}
}

// register adds a connection for user, within the limits.
func (h *Hub) register(user int64) (*conn, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.ctx == nil {
		return nil, errs.E(errs.Unavailable, "live updates are shutting down here; reconnect")
	}
	if h.total >= h.cfg.MaxConns {
		h.refused.Add(1)
		h.m.refused.WithLabelValues(h.cfg.Name, "total_limit").Inc()
		return nil, errs.E(errs.Unavailable, "this server holds its maximum of %d live connections; retry later", h.cfg.MaxConns)
	}
	cs := h.users[user]
	if len(cs) >= h.cfg.MaxConnsPerUser {
		h.refused.Add(1)
		h.m.refused.WithLabelValues(h.cfg.Name, "user_limit").Inc()
		return nil, errs.E(errs.TooMany, "at most %d live connections per user; close another tab", h.cfg.MaxConnsPerUser)
	}
	c := &conn{user: user, ch: make(chan Message, h.cfg.SendQueue), kill: make(chan struct{})}
	if cs == nil {
		cs = map[*conn]struct{}{}
		h.users[user] = cs
		h.publish(presence{Op: opAdd, Users: []int64{user}})
	}
	cs[c] = struct{}{}
	h.total++
	h.m.connections.WithLabelValues(h.cfg.Name).Set(float64(h.total))
	return c, nil
}

func (h *Hub) unregister(c *conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cs := h.users[c.user]
	if _, ok := cs[c]; !ok {
		return
	}
	delete(cs, c)
	h.total--
	h.m.connections.WithLabelValues(h.cfg.Name).Set(float64(h.total))
	if len(cs) == 0 {
		delete(h.users, c.user)
		if !h.closed {
			h.publish(presence{Op: opDel, Users: []int64{c.user}})
		}
	}
}

// Serve streams live messages for user to w as server-sent events until
// the client goes away, the hub stops, or the client is too slow. The
// first event is "hello" with the instance ID and the heartbeat period;
// then come the backlog's messages, then live ones, with a "ping" event
// after every heartbeat period. The resume point is the Last-Event-ID header,
// or the last_event_id query parameter (for clients that reconnect by
// hand). If the connection is refused (a limit, or the hub is stopping),
// Serve writes nothing and returns an error with a kind (errs.TooMany,
// errs.Unavailable) for the caller to answer with.
func (h *Hub) Serve(w http.ResponseWriter, r *http.Request, user int64, backlog Backlog) error {
	c, err := h.register(user)
	if err != nil {
		return err
	}
	h.streams.Add(1)
	defer h.streams.Done()
	defer h.unregister(c)

	rc := http.NewResponseController(w)
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream; charset=utf-8")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Accel-Buffering", "no") // tell nginx-like proxies not to buffer
	hdr.Set("X-Realtime-Instance", h.id)
	w.WriteHeader(http.StatusOK)

	write := func(b []byte) error {
		rc.SetWriteDeadline(time.Now().Add(h.cfg.WriteTimeout))
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	hello, _ := json.Marshal(map[string]any{"instance": h.id, "name": h.cfg.Name, "heartbeat_ms": h.cfg.Heartbeat.Milliseconds()})
	first := fmt.Appendf(nil, "retry: %d\n\n", h.cfg.Retry.Milliseconds())
	first = append(first, EncodeSSE(Message{Event: "hello", Data: hello})...)
	if err := write(first); err != nil {
		return nil
	}

	lastID := r.Header.Get("Last-Event-ID")
	if lastID == "" {
		lastID = r.URL.Query().Get("last_event_id")
	}
	if len(lastID) > maxIDLen {
		lastID = ""
	}
	sent := map[string]bool{}
	if backlog != nil {
		msgs, err := backlog(r.Context(), user, lastID)
		if err != nil && r.Context().Err() == nil {
			h.log.Warn("realtime: backlog failed", "instance", h.cfg.Name, "user", user, "err", err)
		}
		var buf []byte
		for _, m := range msgs {
			if m.UserID == 0 {
				m.UserID = user
			}
			if m.UserID != user || m.Validate() != nil {
				continue
			}
			buf = append(buf, EncodeSSE(m)...)
			if m.ID != "" {
				sent[m.ID] = true
			}
		}
		if len(buf) > 0 {
			if err := write(buf); err != nil {
				return nil
			}
			h.delivered.Add(int64(len(msgs)))
			h.m.delivered.WithLabelValues(h.cfg.Name).Add(float64(len(msgs)))
		}
	}

	beat := time.NewTicker(h.cfg.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-h.ctx.Done():
			return nil
		case <-c.kill:
			return nil
		case m := <-c.ch:
			if m.ID != "" && sent[m.ID] {
				continue
			}
			if err := write(EncodeSSE(m)); err != nil {
				return nil
			}
			h.delivered.Add(1)
			h.m.delivered.WithLabelValues(h.cfg.Name).Inc()
		case <-beat.C:
			// An event, not a comment, so that clients can notice a
			// connection that died silently when pings stop coming.
			if err := write([]byte("event: ping\ndata: {}\n\n")); err != nil {
				return nil
			}
		}
	}
}

// HubStats is a hub's state for the operator.
type HubStats struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Users       int    `json:"users"`
	Connections int    `json:"connections"`
	Delivered   int64  `json:"delivered"`
	Dropped     int64  `json:"dropped"`
	Refused     int64  `json:"refused"`
}

// Stats returns the hub's current state.
func (h *Hub) Stats() HubStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return HubStats{ID: h.id, Name: h.cfg.Name, Users: len(h.users), Connections: h.total,
		Delivered: h.delivered.Load(), Dropped: h.dropped.Load(), Refused: h.refused.Load()}
}
