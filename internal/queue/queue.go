// Package queue is Blueprint's job queue: a NATS JetStream work-queue stream.
// In all-in-one mode the broker role runs nats-server inside the process
// (Broker); in scale-out the same code talks to a NATS cluster.
//
// Delivery is at least once. A job stays on the stream until its handler
// returns nil and the ack is confirmed by the server; a handler that dies
// (process killed) is redelivered after AckWait, and a running handler keeps
// its lease with Delivery.InProgress. Publishing carries a message ID, so a
// job published twice within the stream's duplicate window is stored once.
// The SQL store stays the source of truth for job state: producers record
// what they published, and consumers make their effects idempotent.
package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stream and subject names.
const (
	StreamName    = "MEDIA_JOBS"
	subjectPrefix = "media.job."
)

// ErrPermanent marks a handler error that retrying cannot fix: the job is
// terminated instead of redelivered.
var ErrPermanent = errors.New("queue: permanent failure")

// BrokerConfig configures the embedded broker.
type BrokerConfig struct {
	StoreDir string // JetStream file store
	Addr     string // host:port to accept other processes on; "" = in-process only
}

// Broker is an embedded NATS JetStream server.
type Broker struct {
	cfg    BrokerConfig
	logger *slog.Logger
	srv    *server.Server
}

// NewBroker returns a Broker; Start runs it.
func NewBroker(cfg BrokerConfig, logger *slog.Logger) *Broker {
	return &Broker{cfg: cfg, logger: logger}
}

// Start starts the server and returns once it accepts connections.
func (b *Broker) Start(ctx context.Context) error {
	opts := &server.Options{
		ServerName: "blueprint",
		JetStream:  true,
		StoreDir:   b.cfg.StoreDir,
		SyncAlways: true, // acknowledged means on disk (see Jepsen's NATS 2.12 analysis)
		NoSigs:     true,
		NoLog:      true,
	}
	if b.cfg.Addr == "" {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(b.cfg.Addr)
		if err != nil {
			return fmt.Errorf("queue: broker addr: %w", err)
		}
		opts.Host = host
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return fmt.Errorf("queue: broker port: %w", err)
		}
		if opts.Port == 0 {
			opts.Port = server.RANDOM_PORT
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("queue: broker: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return errors.New("queue: broker did not become ready in 30s")
	}
	b.srv = srv
	b.logger.Info("broker started", "store", b.cfg.StoreDir, "url", b.ClientURL())
	return nil
}

// Stop shuts the server down.
func (b *Broker) Stop(ctx context.Context) error {
	if b.srv == nil {
		return nil
	}
	b.srv.Shutdown()
	b.srv.WaitForShutdown()
	return nil
}

// ClientURL returns the URL other processes connect to, or "" when the
// broker accepts in-process connections only.
func (b *Broker) ClientURL() string {
	if b.srv == nil || b.cfg.Addr == "" {
		return ""
	}
	return b.srv.ClientURL()
}

// Queue is a connection to the job stream.
type Queue struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	logger *slog.Logger
}

// Connect connects to the broker at url, or in-process to local when url is
// empty, and makes sure the job stream exists.
func Connect(ctx context.Context, url string, local *Broker, logger *slog.Logger) (*Queue, error) {
	opts := []nats.Option{
		nats.Name("blueprint"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("queue disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { logger.Info("queue reconnected") }),
	}
	if url == "" {
		if local == nil || local.srv == nil {
			return nil, errors.New("queue: no broker: set queue.url or run the broker role")
		}
		opts = append(opts, nats.InProcessServer(local.srv))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("queue: connect %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("queue: %w", err)
	}
	stream, err := EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:       StreamName,
		Subjects:   []string{subjectPrefix + ">"},
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		Duplicates: 2 * time.Minute,
	})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("queue: stream %s: %w", StreamName, err)
	}
	return &Queue{nc: nc, js: js, stream: stream, logger: logger}, nil
}

// EnsureStream creates the stream, or updates it when its configuration
// differs in subjects, retention, storage, de-duplication window, age
// limit or largest message. A stream that is already as wanted is left alone: an update
// beside a consumer being created races inside nats-server 2.15
// (fileStore.UpdateConfig against ConsumerStore, seen by the race
// detector), and every process ensures the streams it uses at start.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	if st, err := js.Stream(ctx, cfg.Name); err == nil {
		have := st.CachedInfo().Config
		if slices.Equal(have.Subjects, cfg.Subjects) && have.Retention == cfg.Retention && have.Storage == cfg.Storage &&
			have.Duplicates == cfg.Duplicates && have.MaxAge == cfg.MaxAge &&
			(have.MaxMsgSize == cfg.MaxMsgSize || cfg.MaxMsgSize == 0 && have.MaxMsgSize < 0) {
			return st, nil
		}
	}
	return js.CreateOrUpdateStream(ctx, cfg)
}

// JetStream returns the JetStream context of the connection, for packages
// that keep streams of their own (the outbox's event stream).
func (q *Queue) JetStream() jetstream.JetStream { return q.js }

// Conn returns the NATS connection, for core (non-persistent) publish and
// subscribe: real-time messages routed to the frontend holding a user's
// live connection.
func (q *Queue) Conn() *nats.Conn { return q.nc }

// Close closes the connection.
func (q *Queue) Close() { q.nc.Close() }

// Publish puts a job of the given kind on the queue. msgID de-duplicates
// repeated publishes of the same job.
func (q *Queue) Publish(ctx context.Context, kind, msgID string, payload any) error {
	data, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	if _, err := q.js.Publish(ctx, subjectPrefix+kind, data, jetstream.WithMsgID(msgID)); err != nil {
		return fmt.Errorf("queue: publish %s: %w", kind, err)
	}
	return nil
}

// Depth returns the number of jobs waiting or in flight.
func (q *Queue) Depth(ctx context.Context) (uint64, error) {
	info, err := q.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("queue: %w", err)
	}
	return info.State.Msgs, nil
}

// Delivery is one delivery of a job to a handler.
type Delivery struct {
	msg          jetstream.Msg
	NumDelivered uint64 // 1 on the first delivery
}

// Data returns the job payload.
func (d *Delivery) Data() []byte { return d.msg.Data() }

// Decode unmarshals the job payload into v.
func (d *Delivery) Decode(v any) error { return json.Unmarshal(d.msg.Data(), v) }

// InProgress renews the job's lease; long handlers call it periodically.
func (d *Delivery) InProgress() error { return d.msg.InProgress() }

// ConsumeConfig configures a consumer.
type ConsumeConfig struct {
	Name        string        // durable consumer name, e.g. "transcode"
	Kind        string        // job kind to receive
	AckWait     time.Duration // lease length
	MaxDeliver  int           // deliveries before the job is dropped from the consumer; -1 = no limit
	Concurrency int           // handlers running at once
}

// Handler processes one delivery. nil acks it; an error wrapping
// ErrPermanent terminates it; any other error redelivers it after a backoff.
type Handler func(ctx context.Context, d *Delivery) error

// Consumer runs handlers for one consumer until stopped.
type Consumer struct {
	stop    context.CancelFunc // stops fetching
	abandon context.CancelFunc // cancels running handlers
	wg      sync.WaitGroup
}

// Consume starts cc.Concurrency fetch loops that run h for each job.
func (q *Queue) Consume(ctx context.Context, cc ConsumeConfig, h Handler) (*Consumer, error) {
	cons, err := q.js.CreateOrUpdateConsumer(ctx, StreamName, jetstream.ConsumerConfig{
		Durable:       cc.Name,
		FilterSubject: subjectPrefix + cc.Kind,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cc.AckWait,
		MaxDeliver:    cc.MaxDeliver,
		MaxAckPending: max(cc.Concurrency, 1) * 4,
	})
	if err != nil {
		return nil, fmt.Errorf("queue: consumer %s: %w", cc.Name, err)
	}
	fetchCtx, stop := context.WithCancel(context.Background())
	runCtx, abandon := context.WithCancel(context.Background())
	c := &Consumer{stop: stop, abandon: abandon}
	for range max(cc.Concurrency, 1) {
		c.wg.Go(func() {
			for fetchCtx.Err() == nil {
				msg, err := cons.Next(jetstream.FetchMaxWait(time.Second))
				if err != nil {
					if !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) && fetchCtx.Err() == nil {
						q.logger.Warn("queue fetch failed", "consumer", cc.Name, "err", err)
						select {
						case <-fetchCtx.Done():
						case <-time.After(500 * time.Millisecond):
						}
					}
					continue
				}
				q.handle(runCtx, cc, msg, h)
			}
		})
	}
	return c, nil
}

func (q *Queue) handle(ctx context.Context, cc ConsumeConfig, msg jetstream.Msg, h Handler) {
	d := &Delivery{msg: msg, NumDelivered: 1}
	if md, err := msg.Metadata(); err == nil {
		d.NumDelivered = md.NumDelivered
	}
	err := h(ctx, d)
	switch {
	case err == nil:
		// DoubleAck waits for the server's confirmation, so a job is never
		// reported done while its ack could still be lost.
		ackCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := msg.DoubleAck(ackCtx); err != nil {
			q.logger.Warn("queue ack failed; the job will be redelivered", "consumer", cc.Name, "err", err)
		}
	case errors.Is(err, ErrPermanent):
		msg.TermWithReason(err.Error())
	case ctx.Err() != nil:
		msg.Nak() // shutting down: let another worker take it now
	default:
		delay := time.Duration(d.NumDelivered) * 2 * time.Second
		q.logger.Warn("job failed; will retry", "consumer", cc.Name, "delivery", d.NumDelivered, "retry_in", delay, "err", err)
		msg.NakWithDelay(delay)
	}
}

// Stop stops fetching, waits for running handlers until ctx ends, then
// cancels them (their jobs are redelivered).
func (c *Consumer) Stop(ctx context.Context) error {
	c.stop()
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		c.abandon()
		<-done
		return fmt.Errorf("queue: consumer stopped before its handlers finished: %w", ctx.Err())
	}
}
