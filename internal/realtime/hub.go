package realtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

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
	MaxChannels      int           // channels one connection can be subscribed to [4096]
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
	if c.MaxChannels <= 0 {
		c.MaxChannels = 4096
	}
}

// Backlog returns the messages a new connection gets first: typically the
// current state and, when lastEventID is not empty, what the user missed
// since that event, read from the source of truth. It runs after the
// connection is registered, so nothing published meanwhile is lost; a
// message in the backlog that also arrives live is written once (same ID
// or same Key). SessionFrom(ctx) gives the connection, to subscribe it to
// channels and to set its Filter, before the backlog is written.
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
	chans  map[string]*hubChannel
	total  int
	closed bool

	mDelivered prometheus.Counter

	ctx     context.Context
	cancel  context.CancelFunc
	subs    []*nats.Subscription
	loop    sync.WaitGroup
	streams sync.WaitGroup

	delivered, dropped, refused atomic.Int64
	slowDrops                   int64 // NATS slow-consumer drops counted so far; the presence loop only
}

// hubChannel is a channel with local subscribers: the hub holds one NATS
// subscription to its subject for all of them.
type hubChannel struct {
	sub     *nats.Subscription
	conns   map[*conn]struct{}
	dropped int // slow-consumer drops already counted
}

// delivery is one message queued on connections. A broadcast makes one
// delivery, encoded once, and queues the same pointer on every local
// subscriber.
type delivery struct {
	msg   Message
	frame []byte // the encoded event; shared, never modified
	ctl   string // ctlResync: recompute the connection's channels
}

// conn is one live connection. Its queue is a slice under a mutex and a
// wake-up channel with room for one signal: the hub appends and signals
// only when the queue was empty, and the connection's goroutine takes the
// whole queue at once and writes it with one flush, so a burst costs one
// wake-up and one write system call per connection, not one per message.
type conn struct {
	user     int64
	kill     chan struct{}
	killOnce sync.Once
	wake     chan struct{}
	limit    int

	qmu sync.Mutex
	q   []*delivery

	chans map[string]struct{} // subscribed channels; under Hub.mu

	// Used by the connection's goroutine only.
	source ChannelSource
	filter Filter
}

func (c *conn) close() { c.killOnce.Do(func() { close(c.kill) }) }

// push queues d and reports false when the queue is full.
func (c *conn) push(d *delivery) bool {
	c.qmu.Lock()
	if len(c.q) >= c.limit {
		c.qmu.Unlock()
		return false
	}
	c.q = append(c.q, d)
	first := len(c.q) == 1
	c.qmu.Unlock()
	if first {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// take returns the queued deliveries and leaves spare (emptied) as the
// new queue, so two slices alternate without allocating.
func (c *conn) take(spare []*delivery) []*delivery {
	clear(spare)
	c.qmu.Lock()
	q := c.q
	c.q = spare[:0]
	c.qmu.Unlock()
	return q
}

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
	return &Hub{cfg: cfg, id: NewInstanceID(cfg.Name), nc: nc, m: m, log: logger,
		users: map[int64]map[*conn]struct{}{}, chans: map[string]*hubChannel{},
		mDelivered: m.delivered.WithLabelValues(cfg.Name)}
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
	h.m.channels.WithLabelValues(h.cfg.Name).Set(0)
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
// fell behind — on its own subject or on a channel's — to the dropped
// counter (reason "slow_hub").
func (h *Hub) countSlowDrops(sub *nats.Subscription) {
	var d int64
	if n, err := sub.Dropped(); err == nil && int64(n) > h.slowDrops {
		d += int64(n) - h.slowDrops
		h.slowDrops = int64(n)
	}
	h.mu.Lock()
	for _, hc := range h.chans {
		d += int64(hc.countDrops())
	}
	h.mu.Unlock()
	if d > 0 {
		h.dropped.Add(d)
		h.m.dropped.WithLabelValues(h.cfg.Name, "slow_hub").Add(float64(d))
		h.log.Warn("realtime: hub fell behind; live messages dropped (the inbox has them)", "instance", h.cfg.Name, "dropped", d)
	}
}

// countDrops returns the channel subscription's drops not counted yet.
func (hc *hubChannel) countDrops() int {
	n, err := hc.sub.Dropped()
	if err != nil || n <= hc.dropped {
		return 0
	}
	d := n - hc.dropped
	hc.dropped = n
	return d
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
	for name, hc := range h.chans {
		hc.sub.Unsubscribe()
		for c := range hc.conns {
			delete(c.chans, name)
		}
		delete(h.chans, name)
	}
	h.m.channels.WithLabelValues(h.cfg.Name).Set(0)
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

// receive handles a message routed to this instance: a message for one
// user, or a control request about one user's connections.
func (h *Hub) receive(msg *nats.Msg) {
	var e envelope
	if err := json.Unmarshal(msg.Data, &e); err != nil {
		h.log.Warn("realtime: malformed message dropped", "instance", h.cfg.Name)
		return
	}
	var d *delivery
	if e.Ctl == ctlResync {
		if e.UserID <= 0 {
			return
		}
		d = &delivery{ctl: ctlResync}
	} else {
		if e.Ctl != "" || e.Message.Validate() != nil {
			h.log.Warn("realtime: malformed message dropped", "instance", h.cfg.Name)
			return
		}
		e.Channel = ""
		d = &delivery{msg: e.Message, frame: EncodeSSE(e.Message)}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	cs := h.users[e.UserID]
	if len(cs) == 0 {
		if d.ctl == "" {
			h.dropped.Add(1)
			h.m.dropped.WithLabelValues(h.cfg.Name, "no_connection").Inc()
		}
		return
	}
	for c := range cs {
		h.enqueueLocked(c, d)
	}
}

// receiveChannel handles a message broadcast to a channel this hub has
// subscribers of: it is decoded and encoded once, and the same delivery
// is queued on every subscriber.
func (h *Hub) receiveChannel(msg *nats.Msg) {
	var m Message
	if err := json.Unmarshal(msg.Data, &m); err != nil || m.validateEvent() != nil || ValidChannel(m.Channel) != nil ||
		msg.Subject != subjectChannel+m.Channel {
		h.log.Warn("realtime: malformed broadcast dropped", "instance", h.cfg.Name, "subject", msg.Subject)
		return
	}
	m.UserID = 0
	d := &delivery{msg: m, frame: EncodeSSE(m)}
	h.mu.Lock()
	defer h.mu.Unlock()
	hc := h.chans[m.Channel]
	if hc == nil {
		return // the last subscriber left meanwhile
	}
	for c := range hc.conns {
		h.enqueueLocked(c, d)
	}
}

// enqueueLocked queues d on c; a client that does not keep up is
// disconnected rather than waited for (it reconnects and resumes from its
// Last-Event-ID).
func (h *Hub) enqueueLocked(c *conn, d *delivery) {
	if c.push(d) {
		return
	}
	c.close()
	h.dropped.Add(1)
	h.m.dropped.WithLabelValues(h.cfg.Name, "slow_client").Inc()
}

// setChannels subscribes c to exactly the valid names among names (at
// most MaxChannels); it returns an error naming what it refused. When it
// subscribed the hub to a new subject it waits until the broker has the
// subscription, so a broadcast published after setChannels returns
// reaches c.
func (h *Hub) setChannels(c *conn, names []string) error {
	want := make(map[string]struct{}, len(names))
	var bad []error
	for _, n := range names {
		if err := ValidChannel(n); err != nil {
			bad = append(bad, err)
			continue
		}
		if len(want) >= h.cfg.MaxChannels {
			bad = append(bad, fmt.Errorf("realtime: more than %d channels for one connection; the rest are not subscribed", h.cfg.MaxChannels))
			break
		}
		want[n] = struct{}{}
	}
	h.mu.Lock()
	if h.closed || c.chans == nil {
		h.mu.Unlock()
		return errors.Join(bad...)
	}
	for n := range c.chans {
		if _, ok := want[n]; !ok {
			h.leaveLocked(c, n)
		}
	}
	subscribed := false
	for n := range want {
		if _, ok := c.chans[n]; ok {
			continue
		}
		fresh, err := h.joinLocked(c, n)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		subscribed = subscribed || fresh
	}
	h.m.channels.WithLabelValues(h.cfg.Name).Set(float64(len(h.chans)))
	h.mu.Unlock()
	if subscribed {
		if err := h.nc.FlushTimeout(5 * time.Second); err != nil {
			bad = append(bad, fmt.Errorf("realtime: flush: %w", err))
		}
	}
	return errors.Join(bad...)
}

// joinLocked adds c to channel name, subscribing the hub to its subject
// when c is the first local subscriber; it reports whether it subscribed.
func (h *Hub) joinLocked(c *conn, name string) (bool, error) {
	hc := h.chans[name]
	fresh := false
	if hc == nil {
		sub, err := h.nc.Subscribe(subjectChannel+name, h.receiveChannel)
		if err != nil {
			return false, fmt.Errorf("realtime: subscribe %s: %w", name, err)
		}
		if err := sub.SetPendingLimits(pendingMsgs, pendingBytes); err != nil {
			sub.Unsubscribe()
			return false, fmt.Errorf("realtime: pending limits: %w", err)
		}
		hc = &hubChannel{sub: sub, conns: map[*conn]struct{}{}}
		h.chans[name] = hc
		fresh = true
	}
	hc.conns[c] = struct{}{}
	c.chans[name] = struct{}{}
	return fresh, nil
}

// leaveLocked removes c from channel name, unsubscribing the hub from its
// subject when c was the last local subscriber.
func (h *Hub) leaveLocked(c *conn, name string) {
	delete(c.chans, name)
	hc := h.chans[name]
	if hc == nil {
		return
	}
	delete(hc.conns, c)
	if len(hc.conns) == 0 {
		if d := hc.countDrops(); d > 0 {
			h.dropped.Add(int64(d))
			h.m.dropped.WithLabelValues(h.cfg.Name, "slow_hub").Add(float64(d))
		}
		hc.sub.Unsubscribe()
		delete(h.chans, name)
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
	c := &conn{user: user, kill: make(chan struct{}), wake: make(chan struct{}, 1), limit: h.cfg.SendQueue,
		chans: map[string]struct{}{}}
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
	for n := range c.chans {
		h.leaveLocked(c, n)
	}
	c.chans = nil
	h.m.channels.WithLabelValues(h.cfg.Name).Set(float64(len(h.chans)))
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

	// Every write has a deadline between WriteTimeout/2 and WriteTimeout
	// away; it is moved only when less than half is left, not on every
	// write (setting it costs a timer update).
	var deadline time.Time
	arm := func() {
		if now := time.Now(); deadline.Sub(now) < h.cfg.WriteTimeout/2 {
			deadline = now.Add(h.cfg.WriteTimeout)
			rc.SetWriteDeadline(deadline)
		}
	}
	write := func(b []byte) error {
		arm()
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
	// sent holds the IDs and keys written on this connection that a live
	// message may repeat (allocated when first needed).
	var sent map[string]bool
	mark := func(m *Message) {
		if m.ID == "" && m.Key == "" {
			return
		}
		if sent == nil || len(sent) >= maxSent {
			sent = map[string]bool{}
		}
		if m.ID != "" {
			sent[m.ID] = true
		}
		if m.Key != "" {
			sent[m.Key] = true
		}
	}
	if backlog != nil {
		ctx := context.WithValue(r.Context(), sessionKey{}, &Session{h: h, c: c, user: user})
		msgs, err := backlog(ctx, user, lastID)
		if err != nil && r.Context().Err() == nil {
			h.log.Warn("realtime: backlog failed", "instance", h.cfg.Name, "user", user, "err", err)
		}
		var buf []byte
		n := 0
		for _, m := range msgs {
			if m.UserID == 0 {
				m.UserID = user
			}
			if m.UserID != user || m.Validate() != nil {
				continue
			}
			frame := EncodeSSE(m)
			if c.filter != nil {
				if frame = c.filter(m, frame); frame == nil {
					continue
				}
			}
			buf = append(buf, frame...)
			mark(&m)
			n++
		}
		if len(buf) > 0 {
			// Counted before the write returns, so a client that read
			// the events finds them counted.
			h.delivered.Add(int64(n))
			h.mDelivered.Add(float64(n))
			if err := write(buf); err != nil {
				return nil
			}
		}
	}

	// The end of the request or of the hub closes kill, so the loop
	// waits on three channels, not five: every wake-up pays for each.
	stopReq := context.AfterFunc(r.Context(), c.close)
	defer stopReq()
	stopHub := context.AfterFunc(h.ctx, c.close)
	defer stopHub()
	beat := time.NewTicker(h.cfg.Heartbeat)
	defer beat.Stop()
	var batch []*delivery
	for {
		select {
		case <-c.kill:
			return nil
		case <-c.wake:
			batch = c.take(batch)
			n := 0
			arm()
			for _, d := range batch {
				if d.ctl == ctlResync {
					h.resync(r.Context(), c)
					continue
				}
				m := &d.msg
				if sent != nil && (m.ID != "" && sent[m.ID] || m.Key != "" && sent[m.Key]) {
					continue
				}
				frame := d.frame
				if c.filter != nil {
					if frame = c.filter(d.msg, frame); frame == nil {
						continue
					}
				}
				if _, err := w.Write(frame); err != nil {
					return nil
				}
				if m.Key != "" {
					mark(m)
				}
				n++
			}
			if n > 0 {
				h.delivered.Add(int64(n))
				h.mDelivered.Add(float64(n))
				if err := rc.Flush(); err != nil {
					return nil
				}
			}
		case <-beat.C:
			// An event, not a comment, so that clients can notice a
			// connection that died silently when pings stop coming.
			if err := write([]byte("event: ping\ndata: {}\n\n")); err != nil {
				return nil
			}
		}
	}
}

// maxSent bounds the IDs and keys a connection remembers for
// de-duplication; beyond it the memory starts over.
const maxSent = 4096

// resync asks the connection's channel source again and subscribes the
// connection to what it returns.
func (h *Hub) resync(ctx context.Context, c *conn) {
	if c.source == nil {
		return
	}
	names, err := c.source(ctx, c.user)
	if err == nil {
		err = h.setChannels(c, names)
	}
	if err != nil && ctx.Err() == nil {
		h.log.Warn("realtime: channels not (all) resubscribed", "instance", h.cfg.Name, "user", c.user, "err", err)
	}
}

// HubStats is a hub's state for the operator.
type HubStats struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Users       int    `json:"users"`
	Connections int    `json:"connections"`
	Channels    int    `json:"channels"`
	Delivered   int64  `json:"delivered"`
	Dropped     int64  `json:"dropped"`
	Refused     int64  `json:"refused"`
}

// Stats returns the hub's current state.
func (h *Hub) Stats() HubStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return HubStats{ID: h.id, Name: h.cfg.Name, Users: len(h.users), Connections: h.total, Channels: len(h.chans),
		Delivered: h.delivered.Load(), Dropped: h.dropped.Load(), Refused: h.refused.Load()}
}
