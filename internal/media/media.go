// Package media is the media service: the catalogue of uploaded videos and
// images and their processing state. A media item is created when its
// upload finishes, starts as "processing", and ends "ready" or "failed"
// exactly once; each transition writes an event row in the same
// transaction. The processing job is published to the queue after the row
// commits and recorded as enqueued; Reconcile re-publishes any job whose
// publish did not happen (the queue de-duplicates by message ID).
package media

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

	"github.com/blueprint-media/blueprint/internal/cache/tier"
	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/queue"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// Statuses of a media item.
const (
	StatusProcessing = "processing"
	StatusReady      = "ready"
	StatusFailed     = "failed"
)

// JobKind is the queue kind of processing jobs.
const JobKind = "process"

// Job is the payload of a processing job.
type Job struct {
	VideoID int64 `json:"video_id,string"`
}

// Rendition is one output of processing: an HLS variant or an image size.
type Rendition struct {
	Name      string `json:"name"`
	Width     int    `json:"width"`
	Height    int    `json:"height"`
	Bandwidth int    `json:"bandwidth,omitempty"`
	Key       string `json:"key"`
	URL       string `json:"url"`
}

// Video is a media item (a video or an image) as the API shows it.
type Video struct {
	ID           int64       `json:"id,string"`
	UserID       int64       `json:"user_id,string"`
	Username     string      `json:"username"`
	Kind         string      `json:"kind,omitempty"`
	Title        string      `json:"title"`
	Description  string      `json:"description"`
	Status       string      `json:"status"`
	Error        string      `json:"error,omitempty"`
	Progress     float64     `json:"progress"`
	Duration     float64     `json:"duration,omitempty"`
	Width        int         `json:"width,omitempty"`
	Height       int         `json:"height,omitempty"`
	HLSURL       string      `json:"hls_url,omitempty"`
	ThumbnailURL string      `json:"thumbnail_url,omitempty"`
	Renditions   []Rendition `json:"renditions,omitempty"`
	CreatedAt    time.Time   `json:"created_at"`
	ReadyAt      *time.Time  `json:"ready_at,omitempty"`
	Views        int64       `json:"views"`
	Likes        int64       `json:"likes"`
	Comments     int64       `json:"comments"`
	MasterKey    string      `json:"-"`
	SourceKey    string      `json:"-"`
	ThumbKey     string      `json:"-"`
}

// Service implements the media catalogue.
type Service struct {
	db      *sqlstore.DB
	q       *queue.Queue // nil in processes that only read
	baseURL string       // public base URL of objects on the edge, e.g. http://localhost:8081/media/
	logger  *slog.Logger
	now     func() time.Time
	cache   *tier.Tier[Video] // nil: every Get reads the database
	views   *tier.Counter     // nil: views are not counted
}

// CountViewsWith makes AddView count through c (a write-back counter
// flushed with FlushViews).
func (s *Service) CountViewsWith(c *tier.Counter) { s.views = c }

// AddViews counts n views of an item. It costs no database write: the
// counter writes views back in batches. The analytics service calls it
// with the views it counted (one per viewing session).
func (s *Service) AddViews(ctx context.Context, id, n int64) {
	if s.views != nil {
		s.views.Add(ctx, strconv.FormatInt(id, 10), n)
	}
}

// FlushViews adds counted views to the items in one transaction: the
// counter's Flush.
func (s *Service) FlushViews(ctx context.Context, deltas map[string]int64) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		for key, n := range deltas {
			id, err := strconv.ParseInt(key, 10, 64)
			if err != nil {
				continue
			}
			if _, err := tx.ExecContext(ctx, `UPDATE videos SET views = views + ?, last_viewed_at = ? WHERE id = ?`, n, s.now().Unix(), id); err != nil {
				return fmt.Errorf("media: views: %w", err)
			}
		}
		return nil
	})
}

// ViewsFlushed drops the cached copies of items whose views were written.
func (s *Service) ViewsFlushed(ctx context.Context, keys []string) {
	for _, k := range keys {
		if id, err := strconv.ParseInt(k, 10, 64); err == nil {
			s.Invalidate(ctx, id)
		}
	}
}

// CacheWith routes Get through t (cache-aside over L1 and L2, loaded with
// Load); every change of an item invalidates it there, in every process.
func (s *Service) CacheWith(t *tier.Tier[Video]) { s.cache = t }

// Load reads an item from the database: the loader of the cache.
func (s *Service) Load(ctx context.Context, key string) (Video, error) {
	id, err := strconv.ParseInt(key, 10, 64)
	if err != nil {
		return Video{}, tier.ErrNotFound
	}
	v, err := s.get(ctx, id)
	if errs.KindOf(err) == errs.NotFound {
		return v, tier.ErrNotFound
	}
	return v, err
}

// Invalidate drops an item from the cache after a change made outside
// this service (likes, comments).
func (s *Service) Invalidate(ctx context.Context, id int64) {
	if s.cache == nil {
		return
	}
	if err := s.cache.Delete(ctx, strconv.FormatInt(id, 10)); err != nil {
		s.logger.Warn("media: cache invalidation failed; the entry expires with its TTL", "video", id, "err", err)
	}
}

// New returns a Service. mediaBaseURL is where the edge serves object keys.
func New(db *sqlstore.DB, q *queue.Queue, mediaBaseURL string, logger *slog.Logger) *Service {
	if !strings.HasSuffix(mediaBaseURL, "/") {
		mediaBaseURL += "/"
	}
	return &Service{db: db, q: q, baseURL: mediaBaseURL, logger: logger, now: time.Now}
}

// NewItem describes a finished upload that becomes a media item.
type NewItem struct {
	ID          int64
	UserID      int64
	Title       string
	Description string
	SourceKey   string
	SourceSize  int64
}

// Create records a new media item in state processing (idempotently: a
// second call for the same ID changes nothing), running also — when not nil
// — in the same transaction, and then enqueues its job. An error means the
// item was not recorded. A failed publish is only logged: the item is
// recorded as not yet enqueued and Reconcile publishes it.
func (s *Service) Create(ctx context.Context, it NewItem, also func(*sql.Tx) error) error {
	now := s.now().Unix()
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO videos(id, user_id, title, description, status, source_key, source_size, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, it.ID, it.UserID, it.Title, it.Description, StatusProcessing, it.SourceKey, it.SourceSize, now, now)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			if err := insertEvent(ctx, tx, "video.uploaded", it.ID, now); err != nil {
				return err
			}
		}
		if also != nil {
			return also(tx)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("media: create: %w", err)
	}
	s.Invalidate(ctx, it.ID) // a cached "not found"
	if err := s.enqueue(ctx, it.ID); err != nil {
		s.logger.Warn("media: publish failed; the reconciler will retry", "video", it.ID, "err", err)
	}
	return nil
}

func (s *Service) enqueue(ctx context.Context, id int64) error {
	if s.q == nil {
		return errors.New("media: no queue in this process")
	}
	if err := s.q.Publish(ctx, JobKind, "process-"+strconv.FormatInt(id, 10), Job{VideoID: id}); err != nil {
		return err
	}
	_, err := s.db.W.ExecContext(ctx, `UPDATE videos SET enqueued_at = ? WHERE id = ? AND enqueued_at IS NULL`, s.now().Unix(), id)
	return err
}

// Reconcile publishes the jobs of processing items whose publish never
// completed (for example, the broker was down at upload time).
func (s *Service) Reconcile(ctx context.Context) (int, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT id FROM videos WHERE status = ? AND enqueued_at IS NULL ORDER BY id LIMIT 100`, StatusProcessing)
	if err != nil {
		return 0, fmt.Errorf("media: reconcile: %w", err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, fmt.Errorf("media: reconcile: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("media: reconcile: %w", err)
	}
	n := 0
	for _, id := range ids {
		if err := s.enqueue(ctx, id); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

const videoColumns = `v.id, v.user_id, u.username, v.kind, v.title, v.description, v.status, v.error, v.progress, v.duration, v.width, v.height,
	v.master_key, v.thumbnail_key, v.source_key, v.variants, v.created_at, v.ready_at, v.views, v.likes, v.comments`

func (s *Service) scan(row interface{ Scan(...any) error }) (Video, error) {
	var v Video
	var variants string
	var created int64
	var ready sql.NullInt64
	err := row.Scan(&v.ID, &v.UserID, &v.Username, &v.Kind, &v.Title, &v.Description, &v.Status, &v.Error, &v.Progress, &v.Duration,
		&v.Width, &v.Height, &v.MasterKey, &v.ThumbKey, &v.SourceKey, &variants, &created, &ready, &v.Views, &v.Likes, &v.Comments)
	if err != nil {
		return v, err
	}
	v.CreatedAt = time.Unix(created, 0).UTC()
	if ready.Valid {
		t := time.Unix(ready.Int64, 0).UTC()
		v.ReadyAt = &t
	}
	if err := json.Unmarshal([]byte(variants), &v.Renditions); err != nil {
		return v, fmt.Errorf("media: video %d: bad renditions: %w", v.ID, err)
	}
	if v.Status == StatusReady {
		if v.MasterKey != "" {
			v.HLSURL = s.URL(v.MasterKey)
		}
		if v.ThumbKey != "" {
			v.ThumbnailURL = s.URL(v.ThumbKey)
		}
		for i := range v.Renditions {
			v.Renditions[i].URL = s.URL(v.Renditions[i].Key)
		}
	} else {
		v.Renditions = nil
	}
	return v, nil
}

// URL returns the public edge URL of an object key.
func (s *Service) URL(key string) string { return s.baseURL + key }

// Get returns one media item.
func (s *Service) Get(ctx context.Context, id int64) (Video, error) {
	if s.cache == nil {
		return s.get(ctx, id)
	}
	v, err := s.cache.Get(ctx, strconv.FormatInt(id, 10))
	if errors.Is(err, tier.ErrNotFound) {
		return Video{}, errs.E(errs.NotFound, "no video with id %d", id)
	}
	return v, err
}

func (s *Service) get(ctx context.Context, id int64) (Video, error) {
	row := s.db.Read(ctx).QueryRowContext(ctx, `SELECT `+videoColumns+` FROM videos v JOIN users u ON u.id = v.user_id WHERE v.id = ?`, id)
	v, err := s.scan(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Video{}, errs.E(errs.NotFound, "no video with id %d", id)
	}
	if err != nil {
		return Video{}, fmt.Errorf("media: get: %w", err)
	}
	return v, nil
}

// ListOptions selects a page of media items, newest first.
type ListOptions struct {
	Before int64  // cursor: only items with a smaller ID; 0 = from the newest
	Limit  int    // 1..100, default 20
	Status string // "" = any
	UserID int64  // 0 = any user
}

// List returns a page of media items, newest first, and the cursor of the
// next page (0 when there is none).
func (s *Service) List(ctx context.Context, o ListOptions) ([]Video, int64, error) {
	if o.Limit <= 0 {
		o.Limit = 20
	}
	if o.Limit > 100 {
		o.Limit = 100
	}
	q := `SELECT ` + videoColumns + ` FROM videos v JOIN users u ON u.id = v.user_id WHERE 1=1`
	var args []any
	if o.Before > 0 {
		q += ` AND v.id < ?`
		args = append(args, o.Before)
	}
	if o.Status != "" {
		q += ` AND v.status = ?`
		args = append(args, o.Status)
	}
	if o.UserID != 0 {
		q += ` AND v.user_id = ?`
		args = append(args, o.UserID)
	}
	q += ` ORDER BY v.id DESC LIMIT ?`
	args = append(args, o.Limit+1)
	rows, err := s.db.Read(ctx).QueryContext(ctx, q, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("media: list: %w", err)
	}
	defer rows.Close()
	var out []Video
	for rows.Next() {
		v, err := s.scan(rows)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, v)
	}
	var next int64
	if len(out) > o.Limit {
		out = out[:o.Limit]
		next = out[len(out)-1].ID
	}
	return out, next, rows.Err()
}

// SetProgress records processing progress (0..1) of a processing item.
func (s *Service) SetProgress(ctx context.Context, id int64, fraction float64) error {
	_, err := s.db.W.ExecContext(ctx, `UPDATE videos SET progress = ?, updated_at = ? WHERE id = ? AND status = ?`,
		min(max(fraction, 0), 1), s.now().Unix(), id, StatusProcessing)
	s.Invalidate(ctx, id)
	return err
}

// StartAttempt counts a processing attempt.
func (s *Service) StartAttempt(ctx context.Context, id int64) error {
	_, err := s.db.W.ExecContext(ctx, `UPDATE videos SET attempts = attempts + 1, updated_at = ? WHERE id = ?`, s.now().Unix(), id)
	return err
}

// Result is what processing produced.
type Result struct {
	Kind       string
	Duration   float64
	Width      int
	Height     int
	MasterKey  string
	ThumbKey   string
	Renditions []Rendition
}

// Fence, when not nil, runs first in the transaction of a state change
// and aborts it with its error — the worker passes a fencing-token check
// (lock.FencedUpdate) so a worker whose lock expired cannot write.
type Fence func(*sql.Tx) error

// MarkReady moves a processing item to ready. It reports whether this call
// made the transition (false: the item was no longer processing).
func (s *Service) MarkReady(ctx context.Context, id int64, r Result, fence Fence) (bool, error) {
	variants, err := json.Marshal(r.Renditions)
	if err != nil {
		return false, err
	}
	return s.transition(ctx, id, fence, "video.ready", `status = ?, kind = ?, duration = ?, width = ?, height = ?, master_key = ?, thumbnail_key = ?, variants = ?, progress = 1, error = '', ready_at = ?`,
		StatusReady, r.Kind, r.Duration, r.Width, r.Height, r.MasterKey, r.ThumbKey, string(variants), s.now().Unix())
}

// MarkFailed moves a processing item to failed with a reason shown to users.
func (s *Service) MarkFailed(ctx context.Context, id int64, reason string, fence Fence) (bool, error) {
	return s.transition(ctx, id, fence, "video.failed", `status = ?, error = ?`, StatusFailed, reason)
}

func (s *Service) transition(ctx context.Context, id int64, fence Fence, event, set string, args ...any) (bool, error) {
	done := false
	now := s.now().Unix()
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		if fence != nil {
			if err := fence(tx); err != nil {
				return err
			}
		}
		res, err := tx.ExecContext(ctx, `UPDATE videos SET `+set+`, updated_at = ? WHERE id = ? AND status = ?`,
			append(args, now, id, StatusProcessing)...)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			done = true
			return insertEvent(ctx, tx, event, id, now)
		}
		return nil
	})
	s.Invalidate(ctx, id)
	if err != nil {
		return false, fmt.Errorf("media: %s: %w", event, err)
	}
	return done, nil
}

func insertEvent(ctx context.Context, tx *sql.Tx, kind string, subject, now int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO events(kind, subject_id, created_at) VALUES (?, ?, ?)`, kind, subject, now)
	return err
}
