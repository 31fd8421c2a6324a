// Package outbox moves domain events from the SQL store to the event
// stream without losing or doubling any: the transactional outbox and its
// idempotent inbox.
//
// A service writes an event row in the same transaction as the change that
// caused it (media does, for video.uploaded/ready/failed). The Relay reads
// unpublished rows in ID order, publishes each to the EVENTS stream with
// the message ID "evt-<id>", then marks them published. A relay that dies
// between the publish and the mark publishes again after restart; the
// stream drops the copy inside its de-duplication window, and Subscribe's
// inbox (processed_events) makes a consumer skip any copy that gets
// through, because the consumer's own changes and its inbox row commit in
// one transaction. So: nothing acknowledged is lost, nothing is applied
// twice.
package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/blueprint-media/blueprint/internal/queue"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// Stream layout.
const (
	StreamName    = "EVENTS"
	subjectPrefix = "events."
	// DedupWindow is how long the stream remembers message IDs.
	DedupWindow = 10 * time.Minute
	// StreamMaxAge is how long the stream keeps an event; nothing older
	// can be delivered (or redelivered) to a consumer.
	StreamMaxAge = 7 * 24 * time.Hour
	// InboxRetention is how long the inbox remembers that a consumer
	// applied an event: twice StreamMaxAge, so that no copy still in the
	// stream can find its row gone (PruneInbox).
	InboxRetention = 2 * StreamMaxAge
)

// Event is one domain event as published.
type Event struct {
	ID        int64           `json:"id,string"`
	Kind      string          `json:"kind"`
	SubjectID int64           `json:"subject_id,string"`
	Payload   json.RawMessage `json:"payload"`
	CreatedAt time.Time       `json:"created_at"`
}

// EnsureStream creates or updates the event stream.
func EnsureStream(ctx context.Context, q *queue.Queue) (jetstream.Stream, error) {
	st, err := queue.EnsureStream(ctx, q.JetStream(), jetstream.StreamConfig{
		Name:       StreamName,
		Subjects:   []string{subjectPrefix + ">"},
		Retention:  jetstream.LimitsPolicy,
		Storage:    jetstream.FileStorage,
		Duplicates: DedupWindow,
		MaxAge:     StreamMaxAge,
	})
	if err != nil {
		return nil, fmt.Errorf("outbox: stream: %w", err)
	}
	return st, nil
}

// Relay publishes unpublished events.
type Relay struct {
	db     *sqlstore.DB
	q      *queue.Queue
	logger *slog.Logger
	batch  int

	published prometheus.Counter
	lag       prometheus.Gauge

	// afterPublish, when set (tests), runs between the publish of an event
	// and the mark; an error aborts the batch like a crash would.
	afterPublish func(id int64) error
}

// NewRelay returns a Relay; reg may be nil.
func NewRelay(db *sqlstore.DB, q *queue.Queue, logger *slog.Logger, reg prometheus.Registerer) *Relay {
	r := &Relay{
		db: db, q: q, logger: logger, batch: 256,
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "outbox", Name: "published_total", Help: "Events published by the outbox relay.",
		}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "blueprint", Subsystem: "outbox", Name: "lag_seconds", Help: "Age of the oldest event not yet published.",
		}),
	}
	if reg != nil {
		reg.MustRegister(r.published, r.lag)
	}
	return r
}

// Run relays until ctx ends. It keeps trying to create the event stream
// while the broker is unavailable.
func (r *Relay) Run(ctx context.Context) {
	for {
		_, err := EnsureStream(ctx, r.q)
		if err == nil {
			break
		}
		r.logger.Warn("outbox relay waits for the event stream", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	for {
		n, err := r.RelayOnce(ctx)
		if err != nil && ctx.Err() == nil {
			r.logger.Warn("outbox relay", "err", err)
		}
		wait := 50 * time.Millisecond
		if n == 0 || err != nil {
			wait = 250 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// RelayOnce publishes one batch of unpublished events and returns how many
// it published and marked.
func (r *Relay) RelayOnce(ctx context.Context) (int, error) {
	rows, err := r.db.R.QueryContext(ctx, `SELECT id, kind, subject_id, payload, created_at FROM events
		WHERE published_at IS NULL ORDER BY id LIMIT ?`, r.batch)
	if err != nil {
		return 0, fmt.Errorf("outbox: read: %w", err)
	}
	var evs []Event
	for rows.Next() {
		var e Event
		var payload string
		var created int64
		if err := rows.Scan(&e.ID, &e.Kind, &e.SubjectID, &payload, &created); err != nil {
			rows.Close()
			return 0, fmt.Errorf("outbox: read: %w", err)
		}
		e.Payload, e.CreatedAt = json.RawMessage(payload), time.Unix(created, 0).UTC()
		evs = append(evs, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("outbox: read: %w", err)
	}
	if len(evs) == 0 {
		r.lag.Set(0)
		return 0, nil
	}
	r.lag.Set(time.Since(evs[0].CreatedAt).Seconds())
	var done []string
	var firstErr error
	for _, e := range evs {
		data, _ := json.Marshal(e)
		_, err := r.q.JetStream().Publish(ctx, subjectPrefix+e.Kind, data, jetstream.WithMsgID(MsgID(e.ID)))
		if err == nil && r.afterPublish != nil {
			err = r.afterPublish(e.ID)
		}
		if err != nil {
			firstErr = fmt.Errorf("outbox: publish %d: %w", e.ID, err)
			break // keep the order: later events wait for this one
		}
		done = append(done, strconv.FormatInt(e.ID, 10))
	}
	if len(done) > 0 {
		_, err := r.db.W.ExecContext(ctx, `UPDATE events SET published_at = ? WHERE id IN (`+strings.Join(done, ",")+`)`, time.Now().Unix())
		if err != nil {
			return 0, errors.Join(firstErr, fmt.Errorf("outbox: mark: %w", err))
		}
		r.published.Add(float64(len(done)))
	}
	return len(done), firstErr
}

// Insert writes an event in tx, the transaction of the change that caused
// it; the relay publishes it after the commit. payload is marshalled to
// JSON (nil means {}).
func Insert(ctx context.Context, tx *sql.Tx, kind string, subject int64, payload any) error {
	data := []byte("{}")
	if payload != nil {
		b, err := json.Marshal(payload)
		if err != nil {
			return fmt.Errorf("outbox: %s payload: %w", kind, err)
		}
		data = b
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO events(kind, subject_id, payload, created_at) VALUES (?, ?, ?, ?)`,
		kind, subject, string(data), time.Now().Unix()); err != nil {
		return fmt.Errorf("outbox: insert %s: %w", kind, err)
	}
	return nil
}

// MsgID is the broker message ID of an event.
func MsgID(id int64) string { return "evt-" + strconv.FormatInt(id, 10) }

// Handler applies one event inside tx; returning an error rolls tx back
// and the event is redelivered.
type Handler func(ctx context.Context, tx *sql.Tx, e Event) error

// Subscription is a running consumer.
type Subscription struct {
	stop context.CancelFunc
	done chan struct{}
}

// Subscribe runs handler for every event of the given kinds (all when
// empty) under the durable consumer name. Each event is applied at most
// once per consumer: its inbox row and the handler's changes commit
// together.
func Subscribe(ctx context.Context, q *queue.Queue, db *sqlstore.DB, consumer string, kinds []string, h Handler, logger *slog.Logger) (*Subscription, error) {
	if _, err := EnsureStream(ctx, q); err != nil {
		return nil, err
	}
	cc := jetstream.ConsumerConfig{Durable: consumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxAckPending: 256}
	for _, k := range kinds {
		cc.FilterSubjects = append(cc.FilterSubjects, subjectPrefix+k)
	}
	cons, err := q.JetStream().CreateOrUpdateConsumer(ctx, StreamName, cc)
	if err != nil {
		return nil, fmt.Errorf("outbox: consumer %s: %w", consumer, err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	s := &Subscription{stop: stop, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for runCtx.Err() == nil {
			msg, err := cons.Next(jetstream.FetchMaxWait(time.Second))
			if err != nil {
				if !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) && runCtx.Err() == nil {
					logger.Warn("outbox fetch", "consumer", consumer, "err", err)
					time.Sleep(250 * time.Millisecond)
				}
				continue
			}
			var e Event
			if err := json.Unmarshal(msg.Data(), &e); err != nil || e.ID == 0 {
				logger.Error("outbox: malformed event dropped", "consumer", consumer, "data", string(msg.Data()))
				msg.Term()
				continue
			}
			if err := Apply(runCtx, db, consumer, e, h); err != nil {
				logger.Warn("outbox: event failed; will retry", "consumer", consumer, "event", e.ID, "err", err)
				msg.NakWithDelay(time.Second)
				continue
			}
			ackCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			msg.DoubleAck(ackCtx)
			cancel()
		}
	}()
	return s, nil
}

// Apply runs h for e in a transaction that also records e in consumer's
// inbox (processed_events); an event the consumer applied before is
// skipped. It is how every consumer applies an event exactly once.
func Apply(ctx context.Context, db *sqlstore.DB, consumer string, e Event, h Handler) error {
	hooks := &afterCommit{}
	ctx = context.WithValue(ctx, afterCommitKey{}, hooks)
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO processed_events(consumer, event_id, processed_at) VALUES (?, ?, ?)`,
			consumer, e.ID, time.Now().Unix())
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // applied before: a redelivery or a duplicate publish
		}
		return h(ctx, tx, e)
	})
	if err == nil {
		for _, fn := range hooks.fns {
			fn()
		}
	}
	return err
}

type afterCommitKey struct{}

type afterCommit struct{ fns []func() }

// AfterCommit runs fn once the transaction of the event a Handler is
// applying has committed (not at all if it rolls back): for effects that
// must not be seen before the handler's changes, such as dropping a cached
// copy of a row the handler updated. Outside a Handler it runs fn at once.
func AfterCommit(ctx context.Context, fn func()) {
	if hooks, ok := ctx.Value(afterCommitKey{}).(*afterCommit); ok {
		hooks.fns = append(hooks.fns, fn)
		return
	}
	fn()
}

// PruneInbox deletes the inbox rows of events applied before before, in
// transactions of at most batch rows (≤ 0: 5000), and returns how many it
// deleted. Run it with before = now − InboxRetention: an event leaves the
// stream StreamMaxAge after it was published, which is before it was
// applied, so no delivery can come for a row that old, and the inbox stays
// as large as two weeks of events instead of growing forever.
func PruneInbox(ctx context.Context, db *sqlstore.DB, before time.Time, batch int) (int64, error) {
	if batch <= 0 {
		batch = 5000
	}
	var total int64
	for {
		res, err := db.W.ExecContext(ctx, `DELETE FROM processed_events WHERE (consumer, event_id) IN
			(SELECT consumer, event_id FROM processed_events WHERE processed_at < ? LIMIT ?)`, before.Unix(), batch)
		if err != nil {
			return total, fmt.Errorf("outbox: prune inbox: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
		if n < int64(batch) {
			return total, nil
		}
	}
}

// Stop stops the subscription and waits for the event in hand.
func (s *Subscription) Stop() {
	s.stop()
	<-s.done
}
