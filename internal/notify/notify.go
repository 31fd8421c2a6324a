// Package notify is the notification service. It turns domain events into
// notifications — a new upload by someone you follow, your video ready or
// failed, a comment on your video, a new follower — filters them by each
// user's preferences per type and channel, de-duplicates them, stores them
// in the in-app inbox (the source of truth) and delivers them on three
// channels: live to the browser through the frontend that holds the user's
// connection (internal/realtime), email over SMTP (single or as hourly or
// daily digests), and Web Push (VAPID).
//
// The inbox row and its delivery rows (email, push, live hint) commit in
// the consumer's transaction together with the event's inbox entry
// (outbox.Subscribe), so an event is turned into notifications exactly
// once. Sending happens after the commit, from those rows: live hints are
// routed at most once (the inbox is what reconnecting clients resume
// from), emails and push messages are claimed before they are sent (see
// README.md for the exact guarantee).
package notify

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/blueprint-media/blueprint/internal/archive"
	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/idgen"
	"github.com/blueprint-media/blueprint/internal/media"
	"github.com/blueprint-media/blueprint/internal/outbox"
	"github.com/blueprint-media/blueprint/internal/queue"
	"github.com/blueprint-media/blueprint/internal/realtime"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// Notification types.
const (
	TypeNewUpload   = "new_upload"
	TypeVideoReady  = "video_ready"
	TypeVideoFailed = "video_failed"
	TypeComment     = "comment"
	TypeNewFollower = "new_follower"
)

// Channels.
const (
	ChannelWeb   = "web" // the in-app inbox, the bell and live updates
	ChannelEmail = "email"
	ChannelPush  = "push"
)

// Email modes.
const (
	DigestInstant = "instant"
	DigestHourly  = "hourly"
	DigestDaily   = "daily"
)

// Types returns the notification types, in the order the UI lists them.
func Types() []string {
	return []string{TypeNewUpload, TypeComment, TypeNewFollower, TypeVideoReady, TypeVideoFailed}
}

// Channels returns the channels.
func Channels() []string { return []string{ChannelWeb, ChannelEmail, ChannelPush} }

// TypeLabel returns a type's human name.
func TypeLabel(t string) string {
	switch t {
	case TypeNewUpload:
		return "New uploads by people you follow"
	case TypeComment:
		return "Comments on your videos"
	case TypeNewFollower:
		return "New followers"
	case TypeVideoReady:
		return "Your upload is ready"
	case TypeVideoFailed:
		return "Your upload failed"
	}
	return t
}

func knownType(t string) bool {
	for _, k := range Types() {
		if k == t {
			return true
		}
	}
	return false
}

// ConsumerName is the durable event consumer of the service.
const ConsumerName = "notify"

// EventKinds are the domain events the service consumes.
func EventKinds() []string {
	return []string{"video.ready", "video.failed", "comment.created", "user.followed", "user.unfollowed"}
}

// Config configures the service. Zero values take the defaults in brackets.
type Config struct {
	BaseURL      string        // absolute URL that links in emails and pushes start with
	SiteName     string        // ["Blueprint"]
	FanoutPage   int           // followers per fan-out transaction [500]
	MaxAttempts  int           // tries of an email or push message [8]
	DigestCheck  time.Duration // digest assembly period [1m]
	PollInterval time.Duration // fallback poll of the delivery loops [500ms]
}

func (c *Config) defaults() {
	if c.SiteName == "" {
		c.SiteName = "Blueprint"
	}
	if c.FanoutPage <= 0 {
		c.FanoutPage = 500
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 8
	}
	if c.DigestCheck <= 0 {
		c.DigestCheck = time.Minute
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 500 * time.Millisecond
	}
	c.BaseURL = strings.TrimSuffix(c.BaseURL, "/")
}

// VideoGetter reads media items (media.Service).
type VideoGetter interface {
	Get(ctx context.Context, id int64) (media.Video, error)
}

// ArchiveReader reads a page of a user's inbox over both tiers of the
// notifications table, paged as List pages (archive.Reader).
type ArchiveReader interface {
	Notifications(ctx context.Context, user, before int64, limit int) ([]archive.Notification, int64, error)
}

// Deps are the service's collaborators. Router, Mailer and Pusher may be
// nil: that channel is then off. Archive may be nil: the inbox then lists
// the table alone, and notifications moved to the cold tier by
// internal/archive are no longer listed.
type Deps struct {
	DB         *sqlstore.DB
	IDs        *idgen.Generator
	Media      VideoGetter
	Router     *realtime.Router
	Mailer     *Mailer
	Pusher     *Pusher
	Archive    ArchiveReader
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Service is the notification service.
type Service struct {
	cfg     Config
	db      *sqlstore.DB
	ids     *idgen.Generator
	media   VideoGetter
	router  *realtime.Router
	mailer  *Mailer
	pusher  *Pusher
	archive ArchiveReader
	log     *slog.Logger
	m       *metrics
	now     func() time.Time

	kickLive, kickFanout, kickEmail, kickPush chan struct{}

	mu  sync.Mutex
	sub *outbox.Subscription
}

// New returns a Service; Start subscribes it to the events and Run runs
// its delivery loops.
func New(cfg Config, d Deps) *Service {
	cfg.defaults()
	return &Service{
		cfg: cfg, db: d.DB, ids: d.IDs, media: d.Media, router: d.Router, mailer: d.Mailer, pusher: d.Pusher, archive: d.Archive,
		log: d.Logger, m: newMetrics(d.Registerer), now: time.Now,
		kickLive: make(chan struct{}, 1), kickFanout: make(chan struct{}, 1),
		kickEmail: make(chan struct{}, 1), kickPush: make(chan struct{}, 1),
	}
}

// EmailEnabled reports whether email is configured.
func (s *Service) EmailEnabled() bool { return s.mailer != nil }

// PushEnabled reports whether Web Push is configured.
func (s *Service) PushEnabled() bool { return s.pusher != nil }

// Pusher returns the Web Push sender (nil when push is off).
func (s *Service) Pusher() *Pusher { return s.pusher }

// Start subscribes the service to the events it turns into notifications
// (durable consumer "notify").
func (s *Service) Start(ctx context.Context, q *queue.Queue) error {
	sub, err := outbox.Subscribe(ctx, q, s.db, ConsumerName, EventKinds(), s.Handle, s.log)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.sub = sub
	s.mu.Unlock()
	return nil
}

// Stop stops consuming events.
func (s *Service) Stop(ctx context.Context) error {
	s.mu.Lock()
	sub := s.sub
	s.sub = nil
	s.mu.Unlock()
	if sub != nil {
		sub.Stop()
	}
	return nil
}

// Run runs the delivery loops — live hints, upload fan-out, email, push
// and digests — until ctx ends. Every process running the service runs
// them; rows are claimed atomically, so processes share the work.
func (s *Service) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { s.loop(ctx, "live", s.kickLive, s.cfg.PollInterval, s.waiting(qLiveWaiting), s.routeLive) })
	wg.Go(func() {
		s.loop(ctx, "fanout", s.kickFanout, s.cfg.PollInterval, s.waiting(qFanoutWaiting), s.fanoutOnce)
	})
	wg.Go(func() {
		s.loop(ctx, "digest", nil, s.cfg.DigestCheck, nil, func(ctx context.Context) (bool, error) {
			s.sweepStale(ctx)
			if s.mailer == nil {
				return false, nil
			}
			n, err := s.AssembleDigests(ctx)
			if n > 0 {
				kick(s.kickEmail)
			}
			return false, err
		})
	})
	if s.mailer != nil {
		wg.Go(func() {
			s.loop(ctx, "email", s.kickEmail, s.cfg.PollInterval, s.waiting(qEmailWaiting), s.sendEmailOnce)
		})
	}
	if s.pusher != nil {
		wg.Go(func() { s.loop(ctx, "push", s.kickPush, s.cfg.PollInterval, s.waiting(qPushWaiting), s.sendPushOnce) })
	}
	wg.Wait()
}

// Cheap checks, on a reader connection, for work a loop may find.
const (
	qLiveWaiting   = `SELECT EXISTS (SELECT 1 FROM notify_live)`
	qFanoutWaiting = `SELECT EXISTS (SELECT 1 FROM notify_fanout)`
	qEmailWaiting  = `SELECT EXISTS (SELECT 1 FROM notify_emails WHERE status = 'pending' AND next_at <= ?)`
	qPushWaiting   = `SELECT EXISTS (SELECT 1 FROM notify_deliveries WHERE channel = 'push' AND status = 'pending' AND next_at <= ?)`
)

// waiting returns a check that runs query (with the current Unix time
// when it has a parameter) and reports whether it found anything.
func (s *Service) waiting(query string) func(context.Context) bool {
	return func(ctx context.Context) bool {
		var args []any
		if strings.Contains(query, "?") {
			args = append(args, s.now().Unix())
		}
		var found bool
		if err := s.db.R.QueryRowContext(ctx, query, args...).Scan(&found); err != nil {
			return true // let the step itself report the problem
		}
		return found
	}
}

// loop calls step whenever kicked or every period, and again at once for
// as long as step reports more work. Errors back off. On a periodic wake
// the step runs only if hasWork (when given) finds some: the steps claim
// rows with writes, and a write takes SQLite's one write lock. A kick
// comes from a transaction that is about to commit; its step goes straight
// to the writer connection, which that transaction holds until it
// commits, so the step sees its rows.
func (s *Service) loop(ctx context.Context, name string, kicked <-chan struct{}, period time.Duration, hasWork func(context.Context) bool, step func(context.Context) (bool, error)) {
	t := time.NewTicker(period)
	defer t.Stop()
	backoff := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-kicked:
		case <-t.C:
			if hasWork != nil && !hasWork(ctx) {
				continue
			}
		}
		for ctx.Err() == nil {
			more, err := step(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				backoff = min(max(2*backoff, 100*time.Millisecond), 10*time.Second)
				s.log.Warn("notify: delivery loop failed; backing off", "loop", name, "err", err, "backoff", backoff)
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				break
			}
			backoff = 0
			if !more {
				break
			}
		}
	}
}

func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// ---- Rules ----

// Handle turns one event into notifications inside the consumer's
// transaction tx (outbox.Handler).
func (s *Service) Handle(ctx context.Context, tx *sql.Tx, e outbox.Event) error {
	var err error
	switch e.Kind {
	case "video.ready", "video.failed":
		err = s.onVideo(ctx, tx, e)
	case "comment.created":
		err = s.onComment(ctx, tx, e)
	case "user.followed":
		err = s.onFollow(ctx, tx, e)
		// The follower's open streams take the new creator's channel.
		s.resyncLive(ctx, e)
	case "user.unfollowed":
		s.resyncLive(ctx, e)
		return nil
	default:
		return nil
	}
	if err != nil {
		return fmt.Errorf("notify: %s %d: %w", e.Kind, e.ID, err)
	}
	// The loops wait for the database writer, which this transaction
	// holds until it commits, so they see its rows.
	kick(s.kickLive)
	kick(s.kickEmail)
	kick(s.kickPush)
	return nil
}

// body is the stored content of a notification.
type body struct {
	Title string `json:"title"`
	Text  string `json:"text"`
	URL   string `json:"url,omitempty"`
}

// draft is a notification to create.
type draft struct {
	user, actor, subject int64
	typ, dedup           string
	body                 body
	// liveByChannel: the live hint goes out as one broadcast for all
	// recipients (new uploads, see live.go), not as a notify_live row.
	liveByChannel bool
}

func (s *Service) onVideo(ctx context.Context, tx *sql.Tx, e outbox.Event) error {
	v, err := s.media.Get(ctx, e.SubjectID)
	if errs.KindOf(err) == errs.NotFound {
		return nil // deleted since
	}
	if err != nil {
		return err
	}
	what := "video"
	if v.Kind == "image" {
		what = "image"
	}
	url := "/watch/" + strconv.FormatInt(v.ID, 10)
	if e.Kind == "video.failed" {
		reason := v.Error
		if reason == "" {
			reason = "processing failed"
		}
		_, err := s.create(ctx, tx, draft{
			user: v.UserID, subject: v.ID, typ: TypeVideoFailed, dedup: "failed:" + strconv.FormatInt(v.ID, 10),
			body: body{Title: "Your upload failed", Text: fmt.Sprintf("“%s” could not be processed: %s", excerpt(v.Title, 100), excerpt(reason, 200)), URL: "/upload"},
		})
		return err
	}
	if _, err := s.create(ctx, tx, draft{
		user: v.UserID, subject: v.ID, typ: TypeVideoReady, dedup: "ready:" + strconv.FormatInt(v.ID, 10),
		body: body{Title: "Your " + what + " is ready", Text: fmt.Sprintf("“%s” is ready to watch.", excerpt(v.Title, 100)), URL: url},
	}); err != nil {
		return err
	}
	// Followers are notified by the fan-out loop, a page per transaction,
	// so one upload by a channel with many followers never makes one huge
	// transaction. The job is unique per video.
	b, _ := json.Marshal(body{Title: v.Username + " uploaded a new " + what, Text: fmt.Sprintf("%s published “%s”.", v.Username, excerpt(v.Title, 100)), URL: url})
	if _, err := tx.ExecContext(ctx, `INSERT INTO notify_fanout(type, actor_id, subject_id, body, cursor, created_at) VALUES (?, ?, ?, ?, 0, ?)
		ON CONFLICT(type, subject_id) DO NOTHING`, TypeNewUpload, v.UserID, v.ID, string(b), s.now().Unix()); err != nil {
		return err
	}
	kick(s.kickFanout)
	return nil
}

func (s *Service) onComment(ctx context.Context, tx *sql.Tx, e outbox.Event) error {
	var p struct {
		CommentID    string `json:"comment_id"`
		VideoID      string `json:"video_id"`
		UserID       string `json:"user_id"`
		VideoOwnerID string `json:"video_owner_id"`
		Body         string `json:"body"`
	}
	if err := json.Unmarshal(e.Payload, &p); err != nil {
		s.log.Warn("notify: malformed comment.created payload skipped", "event", e.ID, "err", err)
		return nil
	}
	comment, err1 := strconv.ParseInt(p.CommentID, 10, 64)
	video, err2 := strconv.ParseInt(p.VideoID, 10, 64)
	author, err3 := strconv.ParseInt(p.UserID, 10, 64)
	owner, err4 := strconv.ParseInt(p.VideoOwnerID, 10, 64)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		s.log.Warn("notify: malformed comment.created payload skipped", "event", e.ID, "err", err)
		return nil
	}
	if author == owner {
		return nil
	}
	name, err := username(ctx, tx, author)
	if err != nil {
		return err
	}
	title := "your video"
	if v, err := s.media.Get(ctx, video); err == nil {
		title = "“" + excerpt(v.Title, 100) + "”"
	}
	_, err = s.create(ctx, tx, draft{
		user: owner, actor: author, subject: video, typ: TypeComment, dedup: "comment:" + strconv.FormatInt(comment, 10),
		body: body{Title: name + " commented on " + title, Text: excerpt(p.Body, 280), URL: "/watch/" + strconv.FormatInt(video, 10)},
	})
	return err
}

func (s *Service) onFollow(ctx context.Context, tx *sql.Tx, e outbox.Event) error {
	var p struct {
		FollowerID string `json:"follower_id"`
		FolloweeID string `json:"followee_id"`
	}
	if err := json.Unmarshal(e.Payload, &p); err != nil {
		s.log.Warn("notify: malformed user.followed payload skipped", "event", e.ID, "err", err)
		return nil
	}
	follower, err1 := strconv.ParseInt(p.FollowerID, 10, 64)
	followee := e.SubjectID
	if p.FolloweeID != "" {
		var err2 error
		followee, err2 = strconv.ParseInt(p.FolloweeID, 10, 64)
		err1 = errors.Join(err1, err2)
	}
	if err1 != nil || follower == followee {
		return nil
	}
	name, err := username(ctx, tx, follower)
	if err != nil {
		return err
	}
	// One "X followed you" per follower per day, however often they
	// unfollow and follow again.
	day := e.CreatedAt.UTC().Format("2006-01-02")
	_, err = s.create(ctx, tx, draft{
		user: followee, actor: follower, subject: follower, typ: TypeNewFollower,
		dedup: "follow:" + strconv.FormatInt(follower, 10) + ":" + day,
		body:  body{Title: name + " followed you", Text: name + " now follows your uploads."},
	})
	return err
}

func username(ctx context.Context, tx *sql.Tx, user int64) (string, error) {
	var name string
	err := tx.QueryRowContext(ctx, `SELECT username FROM users WHERE id = ?`, user).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return "Someone", nil
	}
	return name, err
}

// excerpt shortens s to at most n characters, on a rune boundary.
func excerpt(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return strings.TrimSpace(string(r[:n-1])) + "…"
}

// create applies the recipient's preferences and writes the notification
// with its delivery rows in tx. It reports whether a notification was
// created (false when muted or a duplicate).
func (s *Service) create(ctx context.Context, tx *sql.Tx, d draft) (bool, error) {
	prefs, err := loadPrefs(ctx, tx, d.user)
	if err != nil {
		return false, err
	}
	web := prefs.enabled(d.typ, ChannelWeb)
	email := s.mailer != nil && prefs.enabled(d.typ, ChannelEmail)
	push := false
	if s.pusher != nil && prefs.enabled(d.typ, ChannelPush) {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM notify_push_subscriptions WHERE user_id = ?`, d.user).Scan(&n); err != nil {
			return false, err
		}
		push = n > 0
	}
	if !web && !email && !push {
		s.m.decisions.WithLabelValues(d.typ, "muted").Inc()
		return false, nil
	}
	id, err := s.ids.Next(idgen.Shard(d.user))
	if err != nil {
		return false, err
	}
	now := s.now().Unix()
	b, _ := json.Marshal(d.body)
	res, err := tx.ExecContext(ctx, `INSERT INTO notifications(id, user_id, type, actor_id, subject_id, dedup_key, body, in_app, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(user_id, dedup_key) DO NOTHING`,
		id, d.user, d.typ, d.actor, d.subject, d.dedup, string(b), web, now)
	if err != nil {
		return false, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		s.m.decisions.WithLabelValues(d.typ, "deduplicated").Inc()
		return false, nil
	}
	if web && !d.liveByChannel {
		if _, err := tx.ExecContext(ctx, `INSERT INTO notify_live(notification_id, user_id) VALUES (?, ?)`, id, d.user); err != nil {
			return false, err
		}
	}
	if email {
		if prefs.digest == DigestInstant {
			res, err := tx.ExecContext(ctx, `INSERT INTO notify_emails(user_id, kind, status, next_at, created_at, updated_at) VALUES (?, 'single', 'pending', ?, ?, ?)`,
				d.user, now, now, now)
			if err != nil {
				return false, err
			}
			emailID, _ := res.LastInsertId()
			if _, err := tx.ExecContext(ctx, `INSERT INTO notify_deliveries(notification_id, user_id, channel, status, email_id, next_at, created_at, updated_at)
				VALUES (?, ?, 'email', 'queued', ?, ?, ?, ?)`, id, d.user, emailID, now, now, now); err != nil {
				return false, err
			}
		} else if _, err := tx.ExecContext(ctx, `INSERT INTO notify_deliveries(notification_id, user_id, channel, status, next_at, created_at, updated_at)
			VALUES (?, ?, 'email', 'held', ?, ?, ?)`, id, d.user, now, now, now); err != nil {
			return false, err
		}
	}
	if push {
		if _, err := tx.ExecContext(ctx, `INSERT INTO notify_deliveries(notification_id, user_id, channel, status, next_at, created_at, updated_at)
			VALUES (?, ?, 'push', 'pending', ?, ?, ?)`, id, d.user, now, now, now); err != nil {
			return false, err
		}
	}
	s.m.decisions.WithLabelValues(d.typ, "created").Inc()
	return true, nil
}

// ---- Fan-out ----

// fanoutOnce notifies one page of followers of the oldest fan-out job and
// reports whether more work is left.
func (s *Service) fanoutOnce(ctx context.Context) (bool, error) {
	more := false
	created := 0
	// Set when this step finished a job that created notifications: its
	// live hint is one broadcast, sent after the commit.
	var finished *struct {
		actor, subject int64
		body           body
	}
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var id, actor, subject, cursor int64
		var typ, rawBody string
		err := tx.QueryRowContext(ctx, `SELECT id, type, actor_id, subject_id, body, cursor FROM notify_fanout ORDER BY id LIMIT 1`).
			Scan(&id, &typ, &actor, &subject, &rawBody, &cursor)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		var job fanoutJob
		json.Unmarshal([]byte(rawBody), &job)
		b := job.body
		rows, err := tx.QueryContext(ctx, `SELECT follower_id FROM follows WHERE followee_id = ? AND follower_id > ? ORDER BY follower_id LIMIT ?`,
			actor, cursor, s.cfg.FanoutPage)
		if err != nil {
			return err
		}
		var followers []int64
		for rows.Next() {
			var f int64
			if err := rows.Scan(&f); err != nil {
				rows.Close()
				return err
			}
			followers = append(followers, f)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, f := range followers {
			if f == actor {
				continue
			}
			ok, err := s.create(ctx, tx, draft{user: f, actor: actor, subject: subject, typ: typ,
				dedup: uploadKey(subject), body: b, liveByChannel: typ == TypeNewUpload})
			if err != nil {
				return err
			}
			if ok {
				created++
			}
		}
		createdAny := job.Created || created > 0
		if len(followers) < s.cfg.FanoutPage {
			_, err = tx.ExecContext(ctx, `DELETE FROM notify_fanout WHERE id = ?`, id)
			more = true // look for the next job
			if err == nil && createdAny && typ == TypeNewUpload {
				finished = &struct {
					actor, subject int64
					body           body
				}{actor, subject, b}
			}
			return err
		}
		if createdAny && !job.Created {
			job.Created = true
			jb, _ := json.Marshal(job)
			_, err = tx.ExecContext(ctx, `UPDATE notify_fanout SET cursor = ?, body = ? WHERE id = ?`, followers[len(followers)-1], string(jb), id)
		} else {
			_, err = tx.ExecContext(ctx, `UPDATE notify_fanout SET cursor = ? WHERE id = ?`, followers[len(followers)-1], id)
		}
		more = true
		return err
	})
	if err != nil {
		return false, err
	}
	if finished != nil {
		s.broadcastUpload(ctx, finished.actor, finished.subject, finished.body)
	}
	if created > 0 {
		s.m.fanout.Add(float64(created))
		kick(s.kickLive)
		kick(s.kickEmail)
		kick(s.kickPush)
	}
	return more, nil
}

// ---- Live ----

const liveBatch = 256

// routeLive routes the waiting live hints to the frontends holding their
// users and reports whether more may be waiting.
func (s *Service) routeLive(ctx context.Context) (bool, error) {
	rows, err := s.db.W.QueryContext(ctx, `DELETE FROM notify_live WHERE id IN (SELECT id FROM notify_live ORDER BY id LIMIT ?)
		RETURNING notification_id, user_id`, liveBatch)
	if err != nil {
		return false, fmt.Errorf("notify: live: %w", err)
	}
	type hint struct{ id, user int64 }
	var hints []hint
	for rows.Next() {
		var h hint
		if err := rows.Scan(&h.id, &h.user); err != nil {
			rows.Close()
			return false, fmt.Errorf("notify: live: %w", err)
		}
		hints = append(hints, h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("notify: live: %w", err)
	}
	if s.router == nil {
		return len(hints) == liveBatch, nil
	}
	for _, h := range hints {
		n, err := s.Get(ctx, h.user, h.id)
		if err != nil {
			continue // deleted meanwhile
		}
		unread, err := s.Unread(ctx, h.user)
		if err != nil {
			return false, err
		}
		if _, err := s.router.Send(ctx, h.user, liveMessage(n, unread)); err != nil {
			s.log.Warn("notify: live hint not routed", "user", h.user, "err", err)
		}
	}
	return len(hints) == liveBatch, nil
}

// liveMessage is the server-sent event of a new notification.
func liveMessage(n Notification, unread int) realtime.Message {
	b, _ := json.Marshal(struct {
		Notification Notification `json:"notification"`
		Unread       int          `json:"unread"`
	}{n, unread})
	return realtime.Message{Event: "notification", ID: strconv.FormatInt(n.ID, 10), Data: b}
}

// unreadMessage is the server-sent event of a changed unread count.
func unreadMessage(unread int) realtime.Message {
	b, _ := json.Marshal(map[string]int{"unread": unread})
	return realtime.Message{Event: "unread", Data: b}
}

// backlogLimit bounds the notifications replayed to a reconnecting client.
const backlogLimit = 50

// Backlog is the realtime.Backlog of the notification stream. It first
// subscribes the stream to the channels of the creators the user follows
// (live new uploads, see live.go) and sets its unread filter; then it
// returns the unread count and the in-app notifications newer than
// lastEventID (at most 50, oldest first).
func (s *Service) Backlog(ctx context.Context, user int64, lastEventID string) ([]realtime.Message, error) {
	s.setupLive(ctx, user)
	unread, err := s.Unread(ctx, user)
	if err != nil {
		return nil, err
	}
	out := []realtime.Message{unreadMessage(unread)}
	after, err := strconv.ParseInt(strings.TrimSpace(lastEventID), 10, 64)
	if err != nil || after <= 0 {
		return out, nil
	}
	rows, err := s.db.R.QueryContext(ctx, `SELECT `+columns+` FROM notifications WHERE user_id = ? AND in_app = 1 AND id > ? ORDER BY id LIMIT ?`,
		user, after, backlogLimit)
	if err != nil {
		return out, fmt.Errorf("notify: backlog: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		n, err := scan(rows)
		if err != nil {
			return out, fmt.Errorf("notify: backlog: %w", err)
		}
		m := liveMessage(n, unread)
		if n.Type == TypeNewUpload {
			m.Key = uploadKey(n.SubjectID) // the upload's broadcast carries the same key
		}
		out = append(out, m)
	}
	return out, rows.Err()
}
