package search

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/blueprint-media/blueprint/internal/outbox"
	"github.com/blueprint-media/blueprint/internal/queue"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// Consumer is the durable event consumer name of the indexer.
const Consumer = "search"

// EventKinds are the events the indexer consumes.
var EventKinds = []string{"user.created", "video.ready", "video.failed", "video.liked"}

// reindexBatch is how many documents Reindex writes per Upsert.
const reindexBatch = 500

// Indexer keeps an Index up to date with the SQL store. It consumes the
// domain events (user.created: a creator document; video.ready: the video,
// which only now becomes searchable; video.failed: removed; video.liked:
// the video's and its creator's like counters) and builds every document
// from the current rows, not from the event, so the order in which events
// arrive does not matter. Like counters live in the SQL table
// search_popularity and change in the transaction of the event's inbox
// row; the index gets their value. So every index write is idempotent, and
// a crash between the index write and the SQL commit only causes the same
// write again on redelivery.
type Indexer struct {
	idx    Index
	db     *sqlstore.DB
	q      *queue.Queue
	logger *slog.Logger

	applied  *prometheus.CounterVec
	lag      prometheus.Histogram
	rebuilt  prometheus.Counter
	docs     prometheus.GaugeFunc
	register sync.Once

	mu          sync.Mutex
	bg          sync.WaitGroup // admin-started rebuilds
	runCtx      context.Context
	sub         *outbox.Subscription
	dispatched  bool // events come through the dispatcher (Handler), not a subscription of its own
	cancel      context.CancelFunc
	done        chan struct{}
	reindexing  bool
	lastReindex *ReindexReport
	lastEventID int64
	lastLag     time.Duration
	lastApplied time.Time
	lastErr     string
}

// ReindexReport describes a finished rebuild.
type ReindexReport struct {
	Videos   int           `json:"videos"`
	Creators int           `json:"creators"`
	Took     time.Duration `json:"took_ns"`
	At       time.Time     `json:"at"`
}

// NewIndexer returns an indexer that writes to idx from the tables of db
// and the event stream of q. reg may be nil.
func NewIndexer(idx Index, db *sqlstore.DB, q *queue.Queue, logger *slog.Logger, reg prometheus.Registerer) *Indexer {
	ix := &Indexer{
		idx: idx, db: db, q: q, logger: logger,
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "search", Name: "events_applied_total",
			Help: "Events applied to the search index, by kind.",
		}, []string{"kind"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "blueprint", Subsystem: "search", Name: "index_lag_seconds",
			Help:    "Time from an event's creation (whole seconds) to its application to the search index.",
			Buckets: []float64{0.25, 0.5, 1, 2, 5, 10, 30, 60, 300},
		}),
		rebuilt: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "search", Name: "reindexed_documents_total",
			Help: "Documents written by rebuilds of the search index from the tables.",
		}),
	}
	ix.docs = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "blueprint", Subsystem: "search", Name: "documents",
		Help: "Documents in the search index.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		n, _ := idx.Count(ctx)
		return float64(n)
	})
	if reg != nil {
		reg.MustRegister(ix.applied, ix.lag, ix.rebuilt, ix.docs)
	}
	return ix
}

// Handler returns the event handler for the dispatcher's "search" route;
// after a call, Start no longer subscribes by itself.
func (ix *Indexer) Handler() outbox.Handler {
	ix.mu.Lock()
	ix.dispatched = true
	ix.mu.Unlock()
	return ix.apply
}

// Start rebuilds the index from the tables when it needs it (empty while
// there are users or videos, or a previous rebuild was cut short), then
// subscribes to the events. Both happen in the background; Start returns
// once it has checked the index. Stop ends them.
func (ix *Indexer) Start(ctx context.Context) error {
	need, err := ix.NeedsReindex(ctx)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	ix.mu.Lock()
	ix.runCtx, ix.cancel, ix.done = runCtx, cancel, make(chan struct{})
	ix.mu.Unlock()
	go func() {
		defer close(ix.done)
		if need {
			ix.logger.Info("search index is empty or incomplete: rebuilding it from the tables")
			for {
				rep, err := ix.Reindex(runCtx)
				if err == nil {
					ix.logger.Info("search index rebuilt", "videos", rep.Videos, "creators", rep.Creators, "took", rep.Took)
					break
				}
				if runCtx.Err() != nil {
					return
				}
				ix.logger.Warn("search reindex failed; retrying", "err", err)
				if !sleep(runCtx, 5*time.Second) {
					return
				}
			}
		}
		ix.mu.Lock()
		dispatched := ix.dispatched
		ix.mu.Unlock()
		for !dispatched {
			sub, err := outbox.Subscribe(runCtx, ix.q, ix.db, Consumer, EventKinds, ix.apply, ix.logger)
			if err == nil {
				ix.mu.Lock()
				ix.sub = sub
				ix.mu.Unlock()
				return
			}
			if runCtx.Err() != nil {
				return
			}
			ix.setErr(err)
			ix.logger.Warn("search indexer waits for the event stream", "err", err)
			if !sleep(runCtx, time.Second) {
				return
			}
		}
	}()
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// Stop stops the indexer and waits for the event in hand.
func (ix *Indexer) Stop(ctx context.Context) error {
	ix.mu.Lock()
	cancel, done := ix.cancel, ix.done
	ix.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	finished := make(chan struct{})
	go func() {
		<-done
		ix.bg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-ctx.Done():
		return ctx.Err()
	}
	ix.mu.Lock()
	sub := ix.sub
	ix.sub = nil
	ix.mu.Unlock()
	if sub != nil {
		sub.Stop()
	}
	return nil
}

// Running reports whether the indexer consumes events.
func (ix *Indexer) Running() bool {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.sub != nil || ix.dispatched && ix.cancel != nil
}

func (ix *Indexer) setErr(err error) {
	ix.mu.Lock()
	ix.lastErr = err.Error()
	ix.mu.Unlock()
}

// apply is the event handler: it runs inside the transaction of the
// event's inbox row.
func (ix *Indexer) apply(ctx context.Context, tx *sql.Tx, e outbox.Event) error {
	err := ix.applyEvent(ctx, tx, e)
	if err != nil {
		ix.setErr(fmt.Errorf("event %d (%s): %w", e.ID, e.Kind, err))
		return err
	}
	lag := max(time.Since(e.CreatedAt), 0)
	ix.applied.WithLabelValues(e.Kind).Inc()
	ix.lag.Observe(lag.Seconds())
	ix.mu.Lock()
	ix.lastEventID, ix.lastLag, ix.lastApplied, ix.lastErr = e.ID, lag, time.Now(), ""
	ix.mu.Unlock()
	return nil
}

func (ix *Indexer) applyEvent(ctx context.Context, tx *sql.Tx, e outbox.Event) error {
	switch e.Kind {
	case "user.created":
		return ix.syncCreator(ctx, tx, e.SubjectID)
	case "video.ready":
		return ix.syncVideo(ctx, tx, e.SubjectID)
	case "video.failed":
		return ix.idx.Delete(ctx, Video, e.SubjectID)
	case "video.liked":
		var p struct {
			Owner string `json:"video_owner_id"`
		}
		if err := json.Unmarshal(e.Payload, &p); err != nil {
			// Retrying cannot fix a payload; count the like on the video.
			ix.logger.Warn("search: video.liked with a bad payload", "event", e.ID, "err", err)
		}
		if err := bump(ctx, tx, Video, e.SubjectID); err != nil {
			return err
		}
		if err := ix.syncVideo(ctx, tx, e.SubjectID); err != nil {
			return err
		}
		owner, _ := strconv.ParseInt(p.Owner, 10, 64)
		if owner <= 0 {
			return nil
		}
		if err := bump(ctx, tx, Creator, owner); err != nil {
			return err
		}
		return ix.syncCreator(ctx, tx, owner)
	}
	return nil
}

func bump(ctx context.Context, tx *sql.Tx, t DocType, id int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO search_popularity(kind, id, likes) VALUES (?, ?, 1)
		ON CONFLICT(kind, id) DO UPDATE SET likes = likes + 1`, string(t), id)
	if err != nil {
		return fmt.Errorf("search: popularity: %w", err)
	}
	return nil
}

// querier is a transaction or a pool.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

const videoSelect = `SELECT v.id, v.user_id, u.username, v.title, v.description, v.thumbnail_key,
	COALESCE(v.ready_at, v.created_at), COALESCE(p.likes, 0)
	FROM videos v JOIN users u ON u.id = v.user_id
	LEFT JOIN search_popularity p ON p.kind = 'video' AND p.id = v.id
	WHERE v.status = 'ready'`

const creatorSelect = `SELECT u.id, u.username, u.created_at, COALESCE(p.likes, 0)
	FROM users u LEFT JOIN search_popularity p ON p.kind = 'creator' AND p.id = u.id`

func videoDocs(ctx context.Context, q querier, where string, args ...any) ([]Doc, error) {
	rows, err := q.QueryContext(ctx, videoSelect+" "+where, args...)
	if err != nil {
		return nil, fmt.Errorf("search: read videos: %w", err)
	}
	defer rows.Close()
	var out []Doc
	for rows.Next() {
		d := Doc{Type: Video}
		var published int64
		if err := rows.Scan(&d.ID, &d.CreatorID, &d.Creator, &d.Title, &d.Description, &d.Thumbnail, &published, &d.Popularity); err != nil {
			return nil, fmt.Errorf("search: read videos: %w", err)
		}
		d.CreatedAt = time.Unix(published, 0).UTC()
		d.Tags = Tags(d.Title + "\n" + d.Description)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search: read videos: %w", err)
	}
	return out, nil
}

func creatorDocs(ctx context.Context, q querier, where string, args ...any) ([]Doc, error) {
	rows, err := q.QueryContext(ctx, creatorSelect+" "+where, args...)
	if err != nil {
		return nil, fmt.Errorf("search: read users: %w", err)
	}
	defer rows.Close()
	var out []Doc
	for rows.Next() {
		d := Doc{Type: Creator}
		var created int64
		if err := rows.Scan(&d.ID, &d.Title, &created, &d.Popularity); err != nil {
			return nil, fmt.Errorf("search: read users: %w", err)
		}
		d.Creator, d.CreatorID, d.CreatedAt = d.Title, d.ID, time.Unix(created, 0).UTC()
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search: read users: %w", err)
	}
	return out, nil
}

// syncVideo writes the video's document, or deletes it when the video is
// not (or no longer) ready.
func (ix *Indexer) syncVideo(ctx context.Context, tx *sql.Tx, id int64) error {
	docs, err := videoDocs(ctx, tx, "AND v.id = ?", id)
	if err != nil {
		return err
	}
	if len(docs) == 0 {
		return ix.idx.Delete(ctx, Video, id)
	}
	return ix.idx.Upsert(ctx, docs...)
}

func (ix *Indexer) syncCreator(ctx context.Context, tx *sql.Tx, id int64) error {
	docs, err := creatorDocs(ctx, tx, "WHERE u.id = ?", id)
	if err != nil {
		return err
	}
	if len(docs) == 0 {
		return ix.idx.Delete(ctx, Creator, id)
	}
	return ix.idx.Upsert(ctx, docs...)
}

// NeedsReindex reports whether the index should be rebuilt: it is empty
// while the tables have users or ready videos, or a rebuild did not
// finish.
func (ix *Indexer) NeedsReindex(ctx context.Context) (bool, error) {
	var started int
	if err := ix.db.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM search_state WHERE key = 'reindex_started'`).Scan(&started); err != nil {
		return false, fmt.Errorf("search: state: %w", err)
	}
	if started > 0 {
		return true, nil
	}
	n, err := ix.idx.Count(ctx)
	if err != nil {
		return false, err
	}
	if n > 0 {
		return false, nil
	}
	var some int
	err = ix.db.R.QueryRowContext(ctx, `SELECT EXISTS(SELECT 1 FROM users) OR EXISTS(SELECT 1 FROM videos WHERE status = 'ready')`).Scan(&some)
	if err != nil {
		return false, fmt.Errorf("search: reindex check: %w", err)
	}
	return some == 1, nil
}

// Reindex writes every creator and every ready video from the tables into
// the index, in batches. It only adds and replaces documents. While it
// runs, a marker row in search_state makes the next start run it again
// should the process stop first.
func (ix *Indexer) Reindex(ctx context.Context) (ReindexReport, error) {
	ix.mu.Lock()
	if ix.reindexing {
		ix.mu.Unlock()
		return ReindexReport{}, errors.New("search: a reindex is already running")
	}
	ix.reindexing = true
	ix.mu.Unlock()
	defer func() {
		ix.mu.Lock()
		ix.reindexing = false
		ix.mu.Unlock()
	}()
	start := time.Now()
	if _, err := ix.db.W.ExecContext(ctx, `INSERT INTO search_state(key, value) VALUES ('reindex_started', ?)
		ON CONFLICT(key) DO UPDATE SET value = excluded.value`, start.UTC().Format(time.RFC3339)); err != nil {
		return ReindexReport{}, fmt.Errorf("search: state: %w", err)
	}
	rep := ReindexReport{}
	for _, part := range []struct {
		read func(after int64) ([]Doc, error)
		n    *int
	}{
		{func(after int64) ([]Doc, error) {
			return creatorDocs(ctx, ix.db.R, "WHERE u.id > ? ORDER BY u.id LIMIT ?", after, reindexBatch)
		}, &rep.Creators},
		{func(after int64) ([]Doc, error) {
			return videoDocs(ctx, ix.db.R, "AND v.id > ? ORDER BY v.id LIMIT ?", after, reindexBatch)
		}, &rep.Videos},
	} {
		var after int64
		for {
			docs, err := part.read(after)
			if err != nil {
				return rep, err
			}
			if len(docs) == 0 {
				break
			}
			if err := ix.idx.Upsert(ctx, docs...); err != nil {
				return rep, err
			}
			*part.n += len(docs)
			ix.rebuilt.Add(float64(len(docs)))
			after = docs[len(docs)-1].ID
		}
	}
	if _, err := ix.db.W.ExecContext(ctx, `DELETE FROM search_state WHERE key = 'reindex_started'`); err != nil {
		return rep, fmt.Errorf("search: state: %w", err)
	}
	rep.Took, rep.At = time.Since(start), time.Now().UTC()
	ix.mu.Lock()
	ix.lastReindex = &rep
	ix.mu.Unlock()
	return rep, nil
}

// Status is the indexer's state for operators.
type Status struct {
	Driver      string         `json:"driver"`
	Documents   int64          `json:"documents"`
	Subscribed  bool           `json:"subscribed"`
	Reindexing  bool           `json:"reindexing"`
	LastReindex *ReindexReport `json:"last_reindex,omitempty"`
	// PendingEvents are events of the stream this consumer has not yet
	// acknowledged (nil when the broker could not be asked).
	PendingEvents *uint64 `json:"pending_events"`
	LastEventID   int64   `json:"last_event_id,string"`
	// LastEventLagSeconds is the time from the last applied event's
	// creation (recorded in whole seconds) to its application.
	LastEventLagSeconds float64    `json:"last_event_lag_seconds"`
	LastAppliedAt       *time.Time `json:"last_applied_at,omitempty"`
	LastError           string     `json:"last_error,omitempty"`
}

// Status reports the indexer's state.
func (ix *Indexer) Status(ctx context.Context) Status {
	ix.mu.Lock()
	s := Status{
		Driver: ix.idx.Driver(), Subscribed: ix.sub != nil || ix.dispatched && ix.cancel != nil, Reindexing: ix.reindexing, LastReindex: ix.lastReindex,
		LastEventID: ix.lastEventID, LastEventLagSeconds: ix.lastLag.Seconds(), LastError: ix.lastErr,
	}
	if !ix.lastApplied.IsZero() {
		t := ix.lastApplied.UTC()
		s.LastAppliedAt = &t
	}
	ix.mu.Unlock()
	if n, err := ix.idx.Count(ctx); err == nil {
		s.Documents = n
	} else {
		s.LastError = err.Error()
	}
	if ix.q != nil {
		if cons, err := ix.q.JetStream().Consumer(ctx, outbox.StreamName, Consumer); err == nil {
			if info, err := cons.Info(ctx); err == nil {
				p := info.NumPending + uint64(info.NumAckPending)
				s.PendingEvents = &p
			}
		}
	}
	return s
}
