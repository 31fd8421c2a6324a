package notify

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/blueprint-media/blueprint/internal/archive"
	"github.com/blueprint-media/blueprint/internal/errs"
)

// Notification is one entry of a user's inbox, as the API shows it.
type Notification struct {
	ID        int64      `json:"id,string"`
	Type      string     `json:"type"`
	ActorID   int64      `json:"actor_id,string,omitempty"`
	SubjectID int64      `json:"subject_id,string,omitempty"`
	Title     string     `json:"title"`
	Text      string     `json:"text"`
	URL       string     `json:"url,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	ReadAt    *time.Time `json:"read_at,omitempty"`
	// Archived is set on a notification listed from the cold tier (the
	// file of an archived partition, internal/archive): it is frozen as it
	// was archived, no longer counts as unread and cannot be marked read.
	Archived bool `json:"archived,omitempty"`
}

// Read reports whether the notification is read: marked read, or
// archived (an archived notification never counts as unread).
func (n Notification) Read() bool { return n.ReadAt != nil || n.Archived }

const columns = `id, type, actor_id, subject_id, body, created_at, read_at`

func scan(row interface{ Scan(...any) error }) (Notification, error) {
	var n Notification
	var raw string
	var created int64
	var read sql.NullInt64
	if err := row.Scan(&n.ID, &n.Type, &n.ActorID, &n.SubjectID, &raw, &created, &read); err != nil {
		return n, err
	}
	var b body
	json.Unmarshal([]byte(raw), &b)
	n.Title, n.Text, n.URL = b.Title, b.Text, b.URL
	n.CreatedAt = time.Unix(created, 0).UTC()
	if read.Valid {
		t := time.Unix(read.Int64, 0).UTC()
		n.ReadAt = &t
	}
	return n, nil
}

// Get returns one of user's notifications.
func (s *Service) Get(ctx context.Context, user, id int64) (Notification, error) {
	n, err := scan(s.db.R.QueryRowContext(ctx, `SELECT `+columns+` FROM notifications WHERE id = ? AND user_id = ?`, id, user))
	if errors.Is(err, sql.ErrNoRows) {
		return n, errs.E(errs.NotFound, "no notification %d", id)
	}
	if err != nil {
		return n, fmt.Errorf("notify: get: %w", err)
	}
	return n, nil
}

// ListOptions selects a page of the inbox, newest first.
type ListOptions struct {
	Before     int64 // only notifications with a smaller ID; 0 = from the newest
	Limit      int   // 1..100 [20]
	UnreadOnly bool
}

// List returns a page of user's in-app notifications, newest first, and
// the cursor of the next page (0 at the end).
//
// With an archive reader (Deps.Archive) the full listing spans both tiers
// of the table and pages exactly as it did before the old partitions were
// archived: the same notifications, cursors and values, the archived ones
// with Archived set. The unread-only listing reads the table alone: an
// archived notification is never unread (see Notification.Read), so the
// unread view stays what Unread counts and MarkRead can clear.
func (s *Service) List(ctx context.Context, user int64, o ListOptions) ([]Notification, int64, error) {
	if o.Limit <= 0 {
		o.Limit = 20
	}
	if o.Limit > 100 {
		return nil, 0, errs.E(errs.Invalid, "limit must be 1..100")
	}
	if s.archive != nil && !o.UnreadOnly {
		return s.listTiers(ctx, user, o)
	}
	q := `SELECT ` + columns + ` FROM notifications WHERE user_id = ? AND in_app = 1`
	args := []any{user}
	if o.Before > 0 {
		q += ` AND id < ?`
		args = append(args, o.Before)
	}
	if o.UnreadOnly {
		q += ` AND read_at IS NULL`
	}
	q += ` ORDER BY id DESC LIMIT ?`
	args = append(args, o.Limit+1)
	rows, err := s.db.R.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("notify: list: %w", err)
	}
	defer rows.Close()
	out := []Notification{}
	for rows.Next() {
		n, err := scan(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("notify: list: %w", err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("notify: list: %w", err)
	}
	var next int64
	if len(out) > o.Limit {
		out = out[:o.Limit]
		next = out[len(out)-1].ID
	}
	return out, next, nil
}

// The app passes an *archive.Reader as Deps.Archive.
var _ ArchiveReader = (*archive.Reader)(nil)

// listTiers is List over both tiers, through the archive reader.
func (s *Service) listTiers(ctx context.Context, user int64, o ListOptions) ([]Notification, int64, error) {
	rows, next, err := s.archive.Notifications(ctx, user, o.Before, o.Limit)
	if err != nil {
		return nil, 0, fmt.Errorf("notify: list: %w", err)
	}
	out := make([]Notification, 0, len(rows))
	for _, r := range rows {
		out = append(out, fromArchive(r))
	}
	return out, next, nil
}

// fromArchive converts a row read by the archive reader as scan converts
// a row of the table.
func fromArchive(r archive.Notification) Notification {
	n := Notification{ID: r.ID, Type: r.Type, ActorID: r.ActorID, SubjectID: r.SubjectID,
		CreatedAt: time.Unix(r.CreatedAt, 0).UTC(), Archived: r.Archived}
	var b body
	json.Unmarshal([]byte(r.Body), &b)
	n.Title, n.Text, n.URL = b.Title, b.Text, b.URL
	if r.ReadAt != nil {
		t := time.Unix(*r.ReadAt, 0).UTC()
		n.ReadAt = &t
	}
	return n
}

// Unread returns the number of user's unread in-app notifications.
func (s *Service) Unread(ctx context.Context, user int64) (int, error) {
	var n int
	if err := s.db.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM notifications WHERE user_id = ? AND read_at IS NULL AND in_app = 1`, user).Scan(&n); err != nil {
		return 0, fmt.Errorf("notify: unread: %w", err)
	}
	return n, nil
}

// MaxMarkRead bounds the IDs of one mark-read request.
const MaxMarkRead = 500

// MarkRead marks the given notifications of user read (all of them when
// all is set) and returns the new unread count, which is also pushed live
// to the user's other tabs. Unknown IDs are ignored.
func (s *Service) MarkRead(ctx context.Context, user int64, ids []int64, all bool) (int, error) {
	if len(ids) > MaxMarkRead {
		return 0, errs.E(errs.Invalid, "at most %d ids per request", MaxMarkRead)
	}
	now := s.now().Unix()
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		if all {
			_, err := tx.ExecContext(ctx, `UPDATE notifications SET read_at = ? WHERE user_id = ? AND read_at IS NULL`, now, user)
			return err
		}
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, `UPDATE notifications SET read_at = ? WHERE id = ? AND user_id = ? AND read_at IS NULL`, now, id, user); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("notify: mark read: %w", err)
	}
	unread, err := s.Unread(ctx, user)
	if err != nil {
		return 0, err
	}
	if s.router != nil {
		s.router.Send(ctx, user, unreadMessage(unread))
	}
	return unread, nil
}

// ---- Preferences ----

// Preferences are a user's notification choices.
type Preferences struct {
	// EmailDigest is instant (one email per notification), hourly or
	// daily (one digest per window at most).
	EmailDigest string `json:"email_digest"`
	// Types maps each type to its channels' switches.
	Types map[string]map[string]bool `json:"types"`
}

// prefs is what create needs.
type prefs struct {
	off    map[[2]string]bool // (type, channel) → turned off
	digest string
}

func (p prefs) enabled(typ, channel string) bool { return !p.off[[2]string{typ, channel}] }

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func loadPrefs(ctx context.Context, q querier, user int64) (prefs, error) {
	p := prefs{off: map[[2]string]bool{}, digest: DigestInstant}
	rows, err := q.QueryContext(ctx, `SELECT type, channel FROM notify_preferences WHERE user_id = ? AND enabled = 0`, user)
	if err != nil {
		return p, err
	}
	defer rows.Close()
	for rows.Next() {
		var t, c string
		if err := rows.Scan(&t, &c); err != nil {
			return p, err
		}
		p.off[[2]string{t, c}] = true
	}
	if err := rows.Err(); err != nil {
		return p, err
	}
	err = q.QueryRowContext(ctx, `SELECT email_digest FROM notify_settings WHERE user_id = ?`, user).Scan(&p.digest)
	if errors.Is(err, sql.ErrNoRows) {
		err = nil
	}
	return p, err
}

// Preferences returns user's choices, with every type and channel filled
// in.
func (s *Service) Preferences(ctx context.Context, user int64) (Preferences, error) {
	p, err := loadPrefs(ctx, s.db.R, user)
	if err != nil {
		return Preferences{}, fmt.Errorf("notify: preferences: %w", err)
	}
	out := Preferences{EmailDigest: p.digest, Types: map[string]map[string]bool{}}
	for _, t := range Types() {
		out.Types[t] = map[string]bool{}
		for _, c := range Channels() {
			out.Types[t][c] = p.enabled(t, c)
		}
	}
	return out, nil
}

// SetPreferences changes user's choices: the email mode when set, and the
// switches present in p.Types (others keep their value).
func (s *Service) SetPreferences(ctx context.Context, user int64, p Preferences) error {
	if err := p.validate(); err != nil {
		return err
	}
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		if p.EmailDigest != "" {
			if _, err := tx.ExecContext(ctx, `INSERT INTO notify_settings(user_id, email_digest) VALUES (?, ?)
				ON CONFLICT(user_id) DO UPDATE SET email_digest = excluded.email_digest`, user, p.EmailDigest); err != nil {
				return err
			}
		}
		for t, chans := range p.Types {
			for c, on := range chans {
				if _, err := tx.ExecContext(ctx, `INSERT INTO notify_preferences(user_id, type, channel, enabled) VALUES (?, ?, ?, ?)
					ON CONFLICT(user_id, type, channel) DO UPDATE SET enabled = excluded.enabled`, user, t, c, on); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("notify: set preferences: %w", err)
	}
	if _, ok := p.Types[TypeNewUpload][ChannelWeb]; ok && s.router != nil {
		// The user's open streams take or drop the channels of the
		// creators they follow.
		s.router.Resync(ctx, user)
	}
	return nil
}

func (p Preferences) validate() error {
	switch p.EmailDigest {
	case "", DigestInstant, DigestHourly, DigestDaily:
	default:
		return errs.E(errs.Invalid, "email_digest must be instant, hourly or daily, not %q", excerpt(p.EmailDigest, 40))
	}
	for t, chans := range p.Types {
		if !knownType(t) {
			return errs.E(errs.Invalid, "unknown notification type %q (known: %s)", excerpt(t, 40), strings.Join(Types(), ", "))
		}
		for c := range chans {
			if c != ChannelWeb && c != ChannelEmail && c != ChannelPush {
				return errs.E(errs.Invalid, "unknown channel %q (known: web, email, push)", excerpt(c, 40))
			}
		}
	}
	return nil
}

// ParsePreferences decodes a preferences document from an untrusted body
// and validates it.
func ParsePreferences(b []byte) (Preferences, error) {
	var p Preferences
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return p, errs.E(errs.Invalid, "preferences are not valid JSON: %v", err)
	}
	if dec.More() {
		return p, errs.E(errs.Invalid, "preferences have data after the JSON value")
	}
	return p, p.validate()
}

// parseIDs reads decimal notification IDs.
func parseIDs(in []string) ([]int64, error) {
	if len(in) > MaxMarkRead {
		return nil, errs.E(errs.Invalid, "at most %d ids per request", MaxMarkRead)
	}
	out := make([]int64, 0, len(in))
	for _, s := range in {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil || id <= 0 {
			return nil, errs.E(errs.Invalid, "bad notification id %q", excerpt(s, 30))
		}
		out = append(out, id)
	}
	return out, nil
}

// Stats are the service's delivery counts for the operator.
type Stats struct {
	Notifications int64            `json:"notifications"`
	Unread        int64            `json:"unread"`
	LiveWaiting   int64            `json:"live_waiting"`
	FanoutJobs    int64            `json:"fanout_jobs"`
	Emails        map[string]int64 `json:"emails"`      // by status
	EmailItems    map[string]int64 `json:"email_items"` // deliveries by status (held = waiting for a digest)
	Pushes        map[string]int64 `json:"pushes"`      // by status
	Subscriptions int64            `json:"push_subscriptions"`
}

// Stats counts notifications and deliveries by state.
func (s *Service) Stats(ctx context.Context) (Stats, error) {
	st := Stats{Emails: map[string]int64{}, EmailItems: map[string]int64{}, Pushes: map[string]int64{}}
	for q, dst := range map[string]*int64{
		`SELECT COUNT(*) FROM notifications`:                                      &st.Notifications,
		`SELECT COUNT(*) FROM notifications WHERE read_at IS NULL AND in_app = 1`: &st.Unread,
		`SELECT COUNT(*) FROM notify_live`:                                        &st.LiveWaiting,
		`SELECT COUNT(*) FROM notify_fanout`:                                      &st.FanoutJobs,
		`SELECT COUNT(*) FROM notify_push_subscriptions`:                          &st.Subscriptions,
	} {
		if err := s.db.R.QueryRowContext(ctx, q).Scan(dst); err != nil {
			return st, fmt.Errorf("notify: stats: %w", err)
		}
	}
	for q, dst := range map[string]map[string]int64{
		`SELECT status, COUNT(*) FROM notify_emails GROUP BY status`:                             st.Emails,
		`SELECT status, COUNT(*) FROM notify_deliveries WHERE channel = 'email' GROUP BY status`: st.EmailItems,
		`SELECT status, COUNT(*) FROM notify_deliveries WHERE channel = 'push' GROUP BY status`:  st.Pushes,
	} {
		rows, err := s.db.R.QueryContext(ctx, q)
		if err != nil {
			return st, fmt.Errorf("notify: stats: %w", err)
		}
		for rows.Next() {
			var k string
			var n int64
			if err := rows.Scan(&k, &n); err != nil {
				rows.Close()
				return st, fmt.Errorf("notify: stats: %w", err)
			}
			dst[k] = n
		}
		rows.Close()
	}
	return st, nil
}
