// Package analytics is Blueprint's analytics service. Players and pages
// send batches of events (view start, progress heartbeats, quality
// switches, stalls, page views) to POST /api/v1/analytics/events; the
// ingest validates them and answers 202 only after the batch is stored
// in the file-backed ANALYTICS JetStream stream (PubAck), de-duplicated
// by the client's batch ID. One rollup consumer (the leader of
// "singleton/analytics") applies the stream to per-video, per-creator and
// platform rollups in SQL, in batched transactions that also move its
// stream watermark, so a redelivered batch is never counted twice. The
// exporter then writes the rolled-up raw events to Parquet files in object
// storage (analytics/raw/YYYY-MM-DD/part-<seq>.parquet) and trims the
// stream behind them.
//
// A view is a view session: the server issues a signed session token per
// page load (POST /api/v1/analytics/sessions) bound to a signed viewer
// cookie; a viewer's view of a video counts once per view window, so a
// reload does not count again. Unique viewers are HyperLogLog sketches
// (axiomhq/hyperloglog, precision 14) per video, creator and platform day;
// the retention curve is exact: the furthest second each counted view
// reached, from the position heartbeats.
package analytics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/blueprint-media/blueprint/internal/blob"
	"github.com/blueprint-media/blueprint/internal/queue"
	"github.com/blueprint-media/blueprint/internal/ratelimit"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// Stream layout.
const (
	StreamName = "ANALYTICS"
	subject    = "analytics.events"
	// RollupConsumer is the durable consumer that feeds the rollups.
	RollupConsumer = "analytics-rollup"
	exportName     = "analytics-export"
	// RawPrefix is where the exporter writes Parquet files.
	RawPrefix = "analytics/raw/"
)

// Config configures the service. Zero values take the defaults of
// config.Analytics.
type Config struct {
	MaxBatchEvents   int
	MaxBatchBytes    int64
	HeartbeatSeconds int
	ViewWindow       time.Duration
	SessionTTL       time.Duration
	SessionRate      float64
	SessionBurst     int
	BotUserAgents    []string
	DuplicateWindow  time.Duration
	StreamMaxAge     time.Duration
	FetchBatch       int
	ExportInterval   time.Duration
	ExportMaxEvents  int
	MaxPosition      time.Duration
	SecureCookie     bool // mark the viewer cookie Secure (public URL is https)
	// OnViews, when set, is called after each rollup commit with the new
	// views per video (what the watch pages show, through the media
	// service's write-back view counter). Called at least once per
	// committed batch; a crash right after the commit can lose a call.
	OnViews func(ctx context.Context, views map[int64]int64)
}

func (c *Config) defaults() {
	set := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	set(&c.MaxBatchEvents, 500)
	set(&c.HeartbeatSeconds, 10)
	set(&c.SessionBurst, 30)
	set(&c.FetchBatch, 1000)
	set(&c.ExportMaxEvents, 1_000_000)
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = 256 << 10
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = 6 * time.Hour
	}
	if c.SessionRate <= 0 {
		c.SessionRate = 0.5
	}
	if c.DuplicateWindow <= 0 {
		c.DuplicateWindow = 10 * time.Minute
	}
	if c.StreamMaxAge <= 0 {
		c.StreamMaxAge = 7 * 24 * time.Hour
	}
	if c.ExportInterval <= 0 {
		c.ExportInterval = time.Minute
	}
	if c.MaxPosition <= 0 {
		c.MaxPosition = 6 * time.Hour
	}
	for i, ua := range c.BotUserAgents {
		c.BotUserAgents[i] = strings.ToLower(ua)
	}
}

// VideoInfo is what analytics needs to know about a video.
type VideoInfo struct {
	CreatorID int64
	Title     string
	Duration  float64 // seconds; 0 when unknown
	Ready     bool    // playable by anybody
}

// Lookup returns a video's info, or an error of kind errs.NotFound.
type Lookup func(ctx context.Context, id int64) (VideoInfo, error)

// Service is the analytics service.
type Service struct {
	cfg    Config
	db     *sqlstore.DB
	js     jetstream.JetStream
	blobs  blob.Store
	lookup Lookup
	sign   signer
	logger *slog.Logger
	m      *metrics
	limit  *ratelimit.Limiter

	mu     sync.Mutex
	stream jetstream.Stream
	now    func() time.Time

	// bufs holds *[]byte buffers for request bodies and encoded records
	// between ingest requests, so a batch costs no buffer growth.
	bufs sync.Pool
}

// buffer returns an empty buffer from s.bufs; give it back with putBuffer.
func (s *Service) buffer() *[]byte {
	if b, ok := s.bufs.Get().(*[]byte); ok {
		*b = (*b)[:0]
		return b
	}
	b := make([]byte, 0, 16<<10)
	return &b
}

// putBuffer returns b to s.bufs unless it grew past a typical batch.
func (s *Service) putBuffer(b *[]byte) {
	if cap(*b) <= 1<<20 {
		s.bufs.Put(b)
	}
}

// New returns a Service. secret signs viewer cookies and session tokens;
// reg may be nil.
func New(cfg Config, db *sqlstore.DB, js jetstream.JetStream, blobs blob.Store, lookup Lookup, secret []byte,
	logger *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	cfg.defaults()
	if len(secret) < 16 {
		return nil, errors.New("analytics: secret shorter than 16 bytes")
	}
	lim, err := ratelimit.New(ratelimit.Config{Rate: cfg.SessionRate, Burst: cfg.SessionBurst})
	if err != nil {
		return nil, fmt.Errorf("analytics: session rate: %w", err)
	}
	s := &Service{
		cfg: cfg, db: db, js: js, blobs: blobs, lookup: lookup, sign: newSigner(secret),
		logger: logger, m: newMetrics(), limit: lim, now: time.Now,
	}
	if reg != nil {
		if err := s.m.register(reg); err != nil {
			return nil, fmt.Errorf("analytics: metrics: %w", err)
		}
	}
	return s, nil
}

// Start makes sure the ANALYTICS stream exists.
func (s *Service) Start(ctx context.Context) error {
	_, err := s.ensureStream(ctx)
	return err
}

// Stop releases nothing today; the background loops end with their
// contexts.
func (s *Service) Stop(context.Context) error { return nil }

func (s *Service) ensureStream(ctx context.Context) (jetstream.Stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stream != nil {
		return s.stream, nil
	}
	st, err := queue.EnsureStream(ctx, s.js, jetstream.StreamConfig{
		Name:       StreamName,
		Subjects:   []string{subject},
		Retention:  jetstream.LimitsPolicy,
		Storage:    jetstream.FileStorage,
		Duplicates: s.cfg.DuplicateWindow,
		MaxAge:     s.cfg.StreamMaxAge,
		MaxMsgSize: int32(min(s.cfg.MaxBatchBytes*2+4096, 8<<20)),
	})
	if err != nil {
		return nil, fmt.Errorf("analytics: stream %s: %w", StreamName, err)
	}
	s.stream = st
	return st, nil
}

func (s *Service) isBot(ua string) bool {
	if strings.TrimSpace(ua) == "" {
		return true
	}
	ua = strings.ToLower(ua)
	for _, b := range s.cfg.BotUserAgents {
		if strings.Contains(ua, b) {
			return true
		}
	}
	return false
}

type metrics struct {
	ingestEvents   *prometheus.CounterVec
	ingestRejected *prometheus.CounterVec
	ingestDuration prometheus.Histogram
	sessions       *prometheus.CounterVec
	rollupEvents   *prometheus.CounterVec
	rollupLag      prometheus.Histogram
	rollupTx       prometheus.Histogram
	rollupSeq      prometheus.Gauge
	exportFiles    prometheus.Counter
	exportEvents   prometheus.Counter
}

func newMetrics() *metrics {
	const ns, sub = "blueprint", "analytics"
	return &metrics{
		ingestEvents: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "ingest_events_total",
			Help: "Events received by the ingest, by result (accepted, duplicate batch, bot)."}, []string{"result"}),
		ingestRejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "ingest_rejected_batches_total",
			Help: "Event batches refused, by reason."}, []string{"reason"}),
		ingestDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "ingest_ack_seconds",
			Help:    "Time from receiving an event batch to acknowledging it (after the stream's PubAck).",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 5}}),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "sessions_total",
			Help: "View session requests, by result (issued, bot, limited)."}, []string{"result"}),
		rollupEvents: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "rollup_events_total",
			Help: "Events applied to the rollups, by result (applied, replayed: an old per-session sequence number)."}, []string{"result"}),
		rollupLag: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "rollup_lag_seconds",
			Help:    "Time from a batch's ingest to the commit of the rollup transaction that applied it.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 5, 10, 30, 60}}),
		rollupTx: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "rollup_transaction_seconds",
			Help:    "Duration of one rollup transaction.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2, 5}}),
		rollupSeq: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "rollup_watermark",
			Help: "Last ANALYTICS stream sequence applied to the rollups."}),
		exportFiles: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "export_files_total",
			Help: "Parquet files of raw events written to object storage."}),
		exportEvents: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "export_events_total",
			Help: "Raw events written to Parquet files."}),
	}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.ingestEvents, m.ingestRejected, m.ingestDuration, m.sessions,
		m.rollupEvents, m.rollupLag, m.rollupTx, m.rollupSeq, m.exportFiles, m.exportEvents} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
