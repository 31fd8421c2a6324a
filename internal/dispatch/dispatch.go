// Package dispatch is Blueprint's dispatcher: it routes domain events from
// the event stream to the services that subscribe to them, through
// separate work queues per priority lane, with per-route capacity, retries
// with backoff, a dead-letter queue with replay, and backlog figures for
// backpressure.
//
// The path of an event:
//
//	outbox relay ─▶ EVENTS stream ─▶ pump ─▶ DISPATCH stream, subject
//	dispatch.<lane>.<route> (one copy per matching route, message ID
//	"<route>/evt-<id>") ─▶ route consumer ─▶ lane queue ─▶ worker ─▶
//	handler (in a transaction with the route's inbox row)
//
// The route table is static (the same in every process), so a pump in any
// process copies every event to every route, whichever process runs the
// route's handler. The DISPATCH stream has work-queue retention: a copy
// leaves it when its route acknowledges it. Workers take from lane p0
// (user-facing) before p1 before p2 (bulk), so under overload bulk work
// waits and user-facing work does not; each route holds at most Capacity
// events in flight.
//
// A handler error is retried after the route's backoff; after MaxDeliver
// failed deliveries the event goes to the DLQ stream with the error, and
// the operator replays it from the admin page once the cause is fixed.
// Handlers run through outbox.Apply, so a redelivery or a replay of an
// event the route already applied changes nothing.
package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/blueprint-media/blueprint/internal/outbox"
	"github.com/blueprint-media/blueprint/internal/queue"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// Lane is a priority class; lower is served first.
type Lane int

// Lanes.
const (
	P0 Lane = iota // user-facing: notifications, live messages
	P1             // normal: feeds, search indexing
	P2             // bulk: analytics, digests, exports
	numLanes
)

func (l Lane) String() string { return "p" + strconv.Itoa(int(l)) }

// Streams and subjects.
const (
	Stream     = "DISPATCH"
	DLQStream  = "DLQ"
	pumpName   = "dispatcher"
	laneSubj   = "dispatch."
	dlqSubj    = "dlq."
	hdrRoute   = "Blueprint-Route"
	hdrError   = "Blueprint-Error"
	hdrTries   = "Blueprint-Deliveries"
	hdrFailed  = "Blueprint-Failed-At"
	dedupeSpan = 10 * time.Minute
	// RetainCopies bounds how long an event copy waits for its route: a
	// route whose service runs in no process does not grow the stream
	// for ever.
	RetainCopies = 7 * 24 * time.Hour
)

// Route sends events of some kinds to one service.
type Route struct {
	Name       string          // also the inbox consumer name
	Kinds      []string        // event kinds; empty means all
	Lane       Lane            // priority lane
	Capacity   int             // events in flight at once (default 8)
	MaxDeliver int             // failed deliveries before the DLQ (default 5)
	Backoff    []time.Duration // delay before retry n (the last repeats; default 1s, 5s, 30s)
}

func (r Route) matches(kind string) bool { return len(r.Kinds) == 0 || slices.Contains(r.Kinds, kind) }

func (r Route) subject() string { return laneSubj + r.Lane.String() + "." + r.Name }

// Config configures a Dispatcher.
type Config struct {
	Routes  []Route
	Workers int           // handler goroutines shared by all lanes (default 4)
	AckWait time.Duration // how long a delivery may take before it is redelivered (default 60s)
}

// Dispatcher routes events to handlers.
type Dispatcher struct {
	q      *queue.Queue
	db     *sqlstore.DB
	cfg    Config
	logger *slog.Logger

	handlers map[string]outbox.Handler
	routes   map[string]Route

	lanes  [numLanes]chan delivery
	cancel context.CancelFunc
	wg     sync.WaitGroup

	dlq jetstream.Stream
	st  jetstream.Stream

	mu      sync.Mutex
	backlog map[string]uint64 // per route: waiting + in flight, refreshed every second

	handled  *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
	dead     *prometheus.CounterVec
	laneWait *prometheus.HistogramVec
}

type delivery struct {
	route    Route
	msg      jetstream.Msg
	release  func()
	received time.Time
}

// New validates the route table and returns a Dispatcher.
func New(q *queue.Queue, db *sqlstore.DB, cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Dispatcher, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = time.Minute
	}
	d := &Dispatcher{q: q, db: db, cfg: cfg, logger: logger, handlers: map[string]outbox.Handler{}, routes: map[string]Route{}, backlog: map[string]uint64{}}
	for i, r := range cfg.Routes {
		if r.Name == "" || strings.ContainsAny(r.Name, ". *>") {
			return nil, fmt.Errorf("dispatch: route %d: bad name %q", i, r.Name)
		}
		if _, dup := d.routes[r.Name]; dup {
			return nil, fmt.Errorf("dispatch: route %q twice", r.Name)
		}
		if r.Lane < P0 || r.Lane >= numLanes {
			return nil, fmt.Errorf("dispatch: route %q: lane %d out of range", r.Name, r.Lane)
		}
		if r.Capacity <= 0 {
			r.Capacity = 8
		}
		if r.MaxDeliver <= 0 {
			r.MaxDeliver = 5
		}
		if len(r.Backoff) == 0 {
			r.Backoff = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second}
		}
		d.routes[r.Name] = r
		cfg.Routes[i] = r
	}
	for i := range d.lanes {
		d.lanes[i] = make(chan delivery)
	}
	d.handled = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "blueprint", Subsystem: "dispatch", Name: "handled_total", Help: "Event deliveries handled, by route and result (ok, retry, dead).",
	}, []string{"route", "result"})
	d.seconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "blueprint", Subsystem: "dispatch", Name: "handle_seconds", Help: "Handler run time, by route.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9),
	}, []string{"route"})
	d.dead = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "blueprint", Subsystem: "dispatch", Name: "dead_letters_total", Help: "Events moved to the dead-letter queue, by route.",
	}, []string{"route"})
	d.laneWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "blueprint", Subsystem: "dispatch", Name: "lane_wait_seconds", Help: "Time a fetched event waited for a worker, by lane.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	}, []string{"lane"})
	if reg != nil {
		backlog := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "blueprint", Subsystem: "dispatch", Name: "backlog", Help: "Events waiting or in flight on all routes.",
		}, func() float64 {
			var n uint64
			for l := range numLanes {
				n += d.Backlog(l)
			}
			return float64(n)
		})
		for _, c := range []prometheus.Collector{d.handled, d.seconds, d.dead, d.laneWait, backlog} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("dispatch: metrics: %w", err)
			}
		}
	}
	return d, nil
}

// Routes returns the route table.
func (d *Dispatcher) Routes() []Route { return slices.Clone(d.cfg.Routes) }

// Handle registers the handler of a route; this process then consumes the
// route. Call it before Start.
func (d *Dispatcher) Handle(route string, h outbox.Handler) error {
	if _, ok := d.routes[route]; !ok {
		return fmt.Errorf("dispatch: no route %q in the table", route)
	}
	d.handlers[route] = h
	return nil
}

// EnsureStreams creates or updates the dispatcher's streams.
func (d *Dispatcher) EnsureStreams(ctx context.Context) error {
	if _, err := outbox.EnsureStream(ctx, d.q); err != nil {
		return err
	}
	js := d.q.JetStream()
	st, err := queue.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name: Stream, Subjects: []string{laneSubj + ">"}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, Duplicates: dedupeSpan, MaxAge: RetainCopies,
	})
	if err != nil {
		return fmt.Errorf("dispatch: stream %s: %w", Stream, err)
	}
	dlq, err := queue.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name: DLQStream, Subjects: []string{dlqSubj + ">"}, Retention: jetstream.LimitsPolicy,
		Storage: jetstream.FileStorage, MaxAge: 30 * 24 * time.Hour, Duplicates: dedupeSpan,
	})
	if err != nil {
		return fmt.Errorf("dispatch: stream %s: %w", DLQStream, err)
	}
	d.st, d.dlq = st, dlq
	return nil
}

// Start runs the pump, the consumers of the routes with handlers here and
// the workers.
func (d *Dispatcher) Start(ctx context.Context) error {
	if err := d.EnsureStreams(ctx); err != nil {
		return err
	}
	js := d.q.JetStream()
	pump, err := js.CreateOrUpdateConsumer(ctx, outbox.StreamName, jetstream.ConsumerConfig{
		Durable: pumpName, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxAckPending: 1024,
	})
	if err != nil {
		return fmt.Errorf("dispatch: pump consumer: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	type running struct {
		r    Route
		cons jetstream.Consumer
	}
	var consumers []running
	for _, r := range d.cfg.Routes {
		if d.handlers[r.Name] == nil {
			continue
		}
		cons, err := js.CreateOrUpdateConsumer(ctx, Stream, jetstream.ConsumerConfig{
			Durable: "route-" + r.Name, FilterSubject: r.subject(), AckPolicy: jetstream.AckExplicitPolicy,
			AckWait: d.cfg.AckWait, MaxAckPending: 4 * r.Capacity, MaxDeliver: -1,
		})
		if err != nil {
			cancel()
			return fmt.Errorf("dispatch: route %s: %w", r.Name, err)
		}
		consumers = append(consumers, running{r, cons})
	}
	d.wg.Go(func() { d.pump(runCtx, pump) })
	for _, c := range consumers {
		d.wg.Go(func() { d.fetch(runCtx, c.r, c.cons) })
	}
	for range d.cfg.Workers {
		d.wg.Go(func() { d.work(runCtx) })
	}
	d.wg.Go(func() { d.watchBacklog(runCtx) })
	return nil
}

// Stop stops fetching, lets the workers finish the events in hand and
// returns; unacknowledged events are redelivered later.
func (d *Dispatcher) Stop(ctx context.Context) error {
	if d.cancel == nil {
		return nil
	}
	d.cancel()
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("dispatch: stop: %w", ctx.Err())
	}
}

func quiet(err error) bool {
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, context.Canceled)
}

// pump copies each event on the event stream to the lane subject of every
// route that wants it, then acknowledges it.
func (d *Dispatcher) pump(ctx context.Context, cons jetstream.Consumer) {
	js := d.q.JetStream()
	for ctx.Err() == nil {
		batch, err := cons.Fetch(64, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if !quiet(err) && ctx.Err() == nil {
				d.logger.Warn("dispatch: pump fetch", "err", err)
				time.Sleep(250 * time.Millisecond)
			}
			continue
		}
		for msg := range batch.Messages() {
			var e outbox.Event
			if err := json.Unmarshal(msg.Data(), &e); err != nil || e.ID == 0 {
				d.logger.Error("dispatch: malformed event on the stream; moved to the DLQ", "subject", msg.Subject())
				d.toDLQ(ctx, "pump", msg.Data(), "malformed event", 1)
				msg.Term()
				continue
			}
			ok := true
			for _, r := range d.cfg.Routes {
				if !r.matches(e.Kind) {
					continue
				}
				if _, err := js.Publish(ctx, r.subject(), msg.Data(), jetstream.WithMsgID(r.Name+"/"+outbox.MsgID(e.ID))); err != nil {
					d.logger.Warn("dispatch: pump publish; will retry", "route", r.Name, "event", e.ID, "err", err)
					ok = false
					break
				}
			}
			if !ok {
				msg.NakWithDelay(time.Second)
				continue
			}
			ackCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			msg.DoubleAck(ackCtx)
			cancel()
		}
	}
}

// fetch pulls a route's events while it has capacity and queues them on
// the route's lane.
func (d *Dispatcher) fetch(ctx context.Context, r Route, cons jetstream.Consumer) {
	slots := make(chan struct{}, r.Capacity)
	for ctx.Err() == nil {
		free := r.Capacity - len(slots)
		if free == 0 {
			select { // wait for a slot
			case slots <- struct{}{}:
				<-slots
			case <-ctx.Done():
				return
			}
			continue
		}
		batch, err := cons.Fetch(free, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if !quiet(err) && ctx.Err() == nil {
				d.logger.Warn("dispatch: fetch", "route", r.Name, "err", err)
				time.Sleep(250 * time.Millisecond)
			}
			continue
		}
		for msg := range batch.Messages() {
			slots <- struct{}{}
			dl := delivery{route: r, msg: msg, release: func() { <-slots }, received: time.Now()}
			select {
			case d.lanes[r.Lane] <- dl:
			case <-ctx.Done():
				dl.release()
				msg.Nak() // hand it back now rather than after AckWait
			}
		}
	}
}

// work runs handlers, always taking from the highest-priority lane that
// has an event waiting.
func (d *Dispatcher) work(ctx context.Context) {
	for {
		var dl delivery
		select {
		case dl = <-d.lanes[P0]:
		default:
			select {
			case dl = <-d.lanes[P0]:
			case dl = <-d.lanes[P1]:
			default:
				select {
				case dl = <-d.lanes[P0]:
				case dl = <-d.lanes[P1]:
				case dl = <-d.lanes[P2]:
				case <-ctx.Done():
					return
				}
			}
		}
		d.laneWait.WithLabelValues(dl.route.Lane.String()).Observe(time.Since(dl.received).Seconds())
		d.handle(dl)
		dl.release()
	}
}

// handle applies one delivery: ack on success; on failure retry after the
// backoff, or move it to the DLQ after MaxDeliver failures.
func (d *Dispatcher) handle(dl delivery) {
	r, msg := dl.route, dl.msg
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.AckWait)
	defer cancel()
	meta, _ := msg.Metadata()
	tries := 1
	if meta != nil {
		tries = int(meta.NumDelivered)
	}
	var e outbox.Event
	err := json.Unmarshal(msg.Data(), &e)
	if err == nil && e.ID == 0 {
		err = errors.New("event without an id")
	}
	if err != nil {
		d.deadLetter(ctx, r, msg, "malformed event: "+err.Error(), tries)
		return
	}
	start := time.Now()
	err = d.run(ctx, r, e)
	d.seconds.WithLabelValues(r.Name).Observe(time.Since(start).Seconds())
	if err == nil {
		msg.DoubleAck(ctx)
		d.handled.WithLabelValues(r.Name, "ok").Inc()
		return
	}
	if tries >= r.MaxDeliver {
		d.logger.Error("dispatch: event failed its last delivery; moved to the DLQ", "route", r.Name, "event", e.ID, "kind", e.Kind, "deliveries", tries, "err", err)
		d.deadLetter(ctx, r, msg, err.Error(), tries)
		return
	}
	delay := r.Backoff[min(tries-1, len(r.Backoff)-1)]
	d.logger.Warn("dispatch: event failed; will retry", "route", r.Name, "event", e.ID, "kind", e.Kind, "deliveries", tries, "retry_in", delay, "err", err)
	msg.NakWithDelay(delay)
	d.handled.WithLabelValues(r.Name, "retry").Inc()
}

// run applies e with the route's handler in a transaction with its inbox
// row; a panic is an error like any other.
func (d *Dispatcher) run(ctx context.Context, r Route, e outbox.Event) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return outbox.Apply(ctx, d.db, r.Name, e, d.handlers[r.Name])
}

func (d *Dispatcher) deadLetter(ctx context.Context, r Route, msg jetstream.Msg, reason string, tries int) {
	if err := d.toDLQ(ctx, r.Name, msg.Data(), reason, tries); err != nil {
		d.logger.Error("dispatch: DLQ publish failed; will retry", "route", r.Name, "err", err)
		msg.NakWithDelay(5 * time.Second)
		return
	}
	msg.Term()
	d.dead.WithLabelValues(r.Name).Inc()
	d.handled.WithLabelValues(r.Name, "dead").Inc()
}

func (d *Dispatcher) toDLQ(ctx context.Context, route string, data []byte, reason string, tries int) error {
	m := nats.NewMsg(dlqSubj + route)
	m.Data = data
	if len(reason) > 1000 {
		reason = reason[:1000]
	}
	m.Header.Set(hdrRoute, route)
	m.Header.Set(hdrError, reason)
	m.Header.Set(hdrTries, strconv.Itoa(tries))
	m.Header.Set(hdrFailed, time.Now().UTC().Format(time.RFC3339))
	_, err := d.q.JetStream().PublishMsg(ctx, m)
	return err
}

// DeadLetter is one event in the dead-letter queue.
type DeadLetter struct {
	Seq        uint64       `json:"seq"`
	Route      string       `json:"route"`
	Error      string       `json:"error"`
	Deliveries int          `json:"deliveries"`
	FailedAt   string       `json:"failed_at"`
	Event      outbox.Event `json:"event"`
	Raw        string       `json:"raw,omitempty"` // when the event does not parse
}

// DeadLetters returns up to limit dead letters, oldest first.
func (d *Dispatcher) DeadLetters(ctx context.Context, limit int) ([]DeadLetter, error) {
	info, err := d.dlq.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("dispatch: dlq: %w", err)
	}
	out := []DeadLetter{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && len(out) < limit && info.State.Msgs > 0; seq++ {
		m, err := d.dlq.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted: replayed
		}
		if err != nil {
			return nil, fmt.Errorf("dispatch: dlq %d: %w", seq, err)
		}
		dl := DeadLetter{Seq: seq, Route: m.Header.Get(hdrRoute), Error: m.Header.Get(hdrError), FailedAt: m.Header.Get(hdrFailed)}
		dl.Deliveries, _ = strconv.Atoi(m.Header.Get(hdrTries))
		if json.Unmarshal(m.Data, &dl.Event) != nil {
			dl.Raw = string(m.Data)
		}
		out = append(out, dl)
	}
	return out, nil
}

// Replay puts the dead letter seq back on its route's lane and removes it
// from the DLQ. The route's inbox keeps a replay of an event it applied
// from applying twice.
func (d *Dispatcher) Replay(ctx context.Context, seq uint64) error {
	m, err := d.dlq.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("dispatch: no dead letter %d: %w", seq, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("dispatch: dlq %d: %w", seq, err)
	}
	r, ok := d.routes[m.Header.Get(hdrRoute)]
	if !ok {
		return fmt.Errorf("dispatch: dead letter %d: route %q is not in the table and cannot be replayed", seq, m.Header.Get(hdrRoute))
	}
	if _, err := d.q.JetStream().Publish(ctx, r.subject(), m.Data, jetstream.WithMsgID("replay-"+strconv.FormatUint(seq, 10))); err != nil {
		return fmt.Errorf("dispatch: replay %d: %w", seq, err)
	}
	if err := d.dlq.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("dispatch: replay %d: %w", seq, err)
	}
	d.logger.Info("dispatch: dead letter replayed", "seq", seq, "route", r.Name)
	return nil
}

// ErrNotFound is returned for a dead letter that does not exist.
var ErrNotFound = errors.New("not found")

// Backlog returns the events waiting or in flight on the lane's routes, as
// of the last refresh (every second).
func (d *Dispatcher) Backlog(l Lane) uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var n uint64
	for name, b := range d.backlog {
		if d.routes[name].Lane == l {
			n += b
		}
	}
	return n
}

// RouteStatus is a route's state for the admin page.
type RouteStatus struct {
	Route
	Backlog uint64 `json:"backlog"`
	Local   bool   `json:"local"` // this process runs its handler
}

// Status returns the routes with their backlogs.
func (d *Dispatcher) Status() []RouteStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]RouteStatus, 0, len(d.cfg.Routes))
	for _, r := range d.cfg.Routes {
		out = append(out, RouteStatus{Route: r, Backlog: d.backlog[r.Name], Local: d.handlers[r.Name] != nil})
	}
	return out
}

func (d *Dispatcher) watchBacklog(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		d.refreshBacklog(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (d *Dispatcher) refreshBacklog(ctx context.Context) {
	js := d.q.JetStream()
	for _, r := range d.cfg.Routes {
		c, err := js.Consumer(ctx, Stream, "route-"+r.Name)
		if err != nil {
			continue // nobody consumes it yet; its copies wait in the stream
		}
		info, err := c.Info(ctx)
		if err != nil {
			continue
		}
		d.mu.Lock()
		d.backlog[r.Name] = info.NumPending + uint64(info.NumAckPending)
		d.mu.Unlock()
	}
}
