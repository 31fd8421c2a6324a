package notify

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"net"
	netmail "net/mail"
	"net/url"
	"strconv"
	"strings"
	texttemplate "text/template"
	"time"

	mail "github.com/wneessen/go-mail"
)

//go:embed templates/*.tmpl
var templateFS embed.FS

// SMTPConfig configures the SMTP connection.
type SMTPConfig struct {
	Host     string
	Port     int
	From     string // "Name <address>" or an address
	User     string // empty: no authentication
	Password string
	TLS      string        // starttls (required), tls (implicit), opportunistic, none
	Timeout  time.Duration // per SMTP operation [30s]
}

// Mailer sends email over SMTP (github.com/wneessen/go-mail).
type Mailer struct {
	cfg    SMTPConfig
	from   *netmail.Address
	client *mail.Client
	html   *htmltemplate.Template
	text   *texttemplate.Template
}

// NewMailer returns a Mailer for cfg. It does not connect: each email is
// one SMTP conversation.
func NewMailer(cfg SMTPConfig) (*Mailer, error) {
	if cfg.Host == "" {
		return nil, errors.New("notify: smtp host is empty")
	}
	from, err := netmail.ParseAddress(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("notify: smtp from %q: %w", cfg.From, err)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	opts := []mail.Option{mail.WithPort(cfg.Port), mail.WithTimeout(cfg.Timeout)}
	switch cfg.TLS {
	case "tls":
		opts = append(opts, mail.WithSSL())
	case "opportunistic":
		opts = append(opts, mail.WithTLSPolicy(mail.TLSOpportunistic))
	case "none":
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	case "", "starttls":
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	default:
		return nil, fmt.Errorf("notify: smtp tls mode %q", cfg.TLS)
	}
	if cfg.User != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover), mail.WithUsername(cfg.User), mail.WithPassword(cfg.Password))
	}
	client, err := mail.NewClient(cfg.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("notify: smtp client: %w", err)
	}
	html, err := htmltemplate.ParseFS(templateFS, "templates/email.html.tmpl")
	if err != nil {
		return nil, fmt.Errorf("notify: email template: %w", err)
	}
	text, err := texttemplate.ParseFS(templateFS, "templates/email.txt.tmpl")
	if err != nil {
		return nil, fmt.Errorf("notify: email template: %w", err)
	}
	return &Mailer{cfg: cfg, from: from, client: client, html: html, text: text}, nil
}

// Describe returns where the mailer sends, without secrets.
func (m *Mailer) Describe() string {
	auth := "no authentication"
	if m.cfg.User != "" {
		auth = "as " + m.cfg.User
	}
	tlsMode := m.cfg.TLS
	if tlsMode == "" {
		tlsMode = "starttls"
	}
	return fmt.Sprintf("smtp %s (%s, %s)", net.JoinHostPort(m.cfg.Host, strconv.Itoa(m.cfg.Port)), tlsMode, auth)
}

// emailData is what the email templates render.
type emailData struct {
	Subject  string
	Site     string
	Username string
	Digest   bool
	Window   string
	Items    []emailItem
	More     int
	InboxURL string
	PrefsURL string
}

type emailItem struct {
	Title, Text, URL string
}

// Email is one message to send.
type Email struct {
	To        *netmail.Address
	Subject   string
	MessageID string // without angle brackets
	Data      emailData
	UnsubURL  string
}

// compose builds the MIME message: multipart/alternative with the text
// and the HTML body.
func (m *Mailer) compose(e Email) (*mail.Msg, error) {
	msg := mail.NewMsg(mail.WithNoDefaultUserAgent())
	msg.FromMailAddress(m.from)
	msg.ToMailAddress(e.To)
	msg.Subject(e.Subject)
	msg.SetMessageIDWithValue(e.MessageID)
	msg.SetDate()
	msg.SetGenHeader("Auto-Submitted", "auto-generated") // RFC 3834: no auto-replies
	if e.UnsubURL != "" {
		msg.SetGenHeader("List-Unsubscribe", "<"+e.UnsubURL+">")
	}
	e.Data.Subject = e.Subject
	if err := msg.SetBodyTextTemplate(m.text, e.Data); err != nil {
		return nil, fmt.Errorf("notify: text body: %w", err)
	}
	if err := msg.AddAlternativeHTMLTemplate(m.html, e.Data); err != nil {
		return nil, fmt.Errorf("notify: html body: %w", err)
	}
	return msg, nil
}

// outcome is what became of one send attempt.
type outcome string

const (
	outcomeSent    outcome = "sent"
	outcomeRetry   outcome = "retry"   // certainly not accepted; try again later
	outcomeFailed  outcome = "failed"  // refused for good
	outcomeUnknown outcome = "unknown" // maybe accepted: never sent again
)

// send runs one SMTP conversation for msg.
func (m *Mailer) send(ctx context.Context, msg *mail.Msg) (outcome, error) {
	err := m.client.DialAndSendWithContext(ctx, msg)
	return classify(err, msg), err
}

// classify decides from a go-mail error whether the server may have
// accepted the message. Only an answer to the end of DATA accepts it: any
// failure before that is certainly not a delivery (retry, or fail on a
// permanent 5xx), and a failure to read that answer is ambiguous.
func classify(err error, msg *mail.Msg) outcome {
	if err == nil || (msg != nil && msg.IsDelivered()) {
		return outcomeSent
	}
	var se *mail.SendError
	if !errors.As(err, &se) {
		return outcomeRetry // dial, TLS or authentication failed: nothing was sent
	}
	code := se.ErrorCode()
	switch se.Reason {
	case mail.ErrGetSender, mail.ErrGetRcpts, mail.ErrNoUnencoded:
		return outcomeFailed
	case mail.ErrSMTPDataClose:
		switch {
		case code >= 500:
			return outcomeFailed
		case code >= 400:
			return outcomeRetry
		}
		return outcomeUnknown
	case mail.ErrAmbiguous:
		return outcomeUnknown
	}
	if code >= 500 {
		return outcomeFailed
	}
	return outcomeRetry
}

// ---- The email loop ----

// emailBackoff is the wait before attempt n+1 of an email or push message.
func emailBackoff(n int) time.Duration {
	d := 30 * time.Second << min(max(n-1, 0), 7)
	return min(d, time.Hour)
}

// errNothingToSend means an email row has no recipient or no content left.
var errNothingToSend = errors.New("notify: nothing to send")

// maxDigestItems bounds the notifications listed in one email.
const maxDigestItems = 50

// sendEmailOnce claims one due email, sends it and records the outcome.
// It reports whether there may be more.
func (s *Service) sendEmailOnce(ctx context.Context) (bool, error) {
	now := s.now().Unix()
	var id, user int64
	var kind string
	var attempts int
	// Mark before send: the row is 'sending' before the SMTP conversation
	// starts, so a crash mid-send leaves a row nobody sends again.
	err := s.db.W.QueryRowContext(ctx, `UPDATE notify_emails SET status = 'sending', attempts = attempts + 1, updated_at = ?
		WHERE id = (SELECT id FROM notify_emails WHERE status = 'pending' AND next_at <= ? ORDER BY id LIMIT 1)
		RETURNING id, user_id, kind, attempts`, now, now).Scan(&id, &user, &kind, &attempts)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("notify: claim email: %w", err)
	}
	e, err := s.composeEmail(ctx, id, user, kind)
	if errors.Is(err, errNothingToSend) {
		return true, s.finishEmail(ctx, id, "failed", "", err.Error(), 0)
	}
	if err != nil {
		// Our own fault (database): put it back for later.
		return true, s.finishEmail(ctx, id, "pending", "", err.Error(), now+int64(emailBackoff(attempts).Seconds()))
	}
	msg, err := s.mailer.compose(e)
	if err != nil {
		return true, s.finishEmail(ctx, id, "failed", "", err.Error(), 0)
	}
	sendCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	out, sendErr := s.mailer.send(sendCtx, msg)
	cancel()
	s.m.email.WithLabelValues(string(out)).Inc()
	errText := ""
	if sendErr != nil {
		errText = sendErr.Error()
	}
	switch out {
	case outcomeSent:
		return true, s.finishEmail(ctx, id, "sent", e.MessageID, "", 0)
	case outcomeRetry:
		if attempts < s.cfg.MaxAttempts {
			s.log.Warn("notify: email not sent; will retry", "email", id, "attempt", attempts, "err", errText)
			return true, s.finishEmail(ctx, id, "pending", "", errText, now+int64(emailBackoff(attempts).Seconds()))
		}
		s.log.Warn("notify: email given up", "email", id, "attempts", attempts, "err", errText)
		return true, s.finishEmail(ctx, id, "failed", "", errText, 0)
	case outcomeUnknown:
		s.log.Warn("notify: email may or may not have been accepted; not retried", "email", id, "err", errText)
		return true, s.finishEmail(ctx, id, "unknown", e.MessageID, errText, 0)
	default:
		s.log.Warn("notify: email refused", "email", id, "err", errText)
		return true, s.finishEmail(ctx, id, "failed", "", errText, 0)
	}
}

func (s *Service) finishEmail(ctx context.Context, id int64, status, messageID, lastErr string, nextAt int64) error {
	now := s.now().Unix()
	var sentAt any
	if status == "sent" {
		sentAt = now
	}
	if nextAt == 0 {
		nextAt = now
	}
	// A fresh context: the outcome of a conversation that happened must be
	// recorded even when the service is stopping.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, err := s.db.W.ExecContext(ctx, `UPDATE notify_emails SET status = ?, message_id = ?, last_error = ?, next_at = ?, sent_at = ?, updated_at = ? WHERE id = ?`,
		status, messageID, excerpt(lastErr, 500), nextAt, sentAt, now, id)
	if err != nil {
		return fmt.Errorf("notify: record email %d: %w", id, err)
	}
	return nil
}

// link makes a site path absolute.
func (s *Service) link(path string) string {
	if path == "" || !strings.HasPrefix(path, "/") {
		return path
	}
	return s.cfg.BaseURL + path
}

// composeEmail reads an email row's recipient and notifications.
func (s *Service) composeEmail(ctx context.Context, id, user int64, kind string) (Email, error) {
	var name, addr string
	err := s.db.R.QueryRowContext(ctx, `SELECT username, email FROM users WHERE id = ?`, user).Scan(&name, &addr)
	if errors.Is(err, sql.ErrNoRows) {
		return Email{}, fmt.Errorf("%w: user %d is gone", errNothingToSend, user)
	}
	if err != nil {
		return Email{}, err
	}
	to, err := netmail.ParseAddress(addr)
	if err != nil {
		return Email{}, fmt.Errorf("%w: address %q: %v", errNothingToSend, addr, err)
	}
	to.Name = name
	rows, err := s.db.R.QueryContext(ctx, `SELECT n.id, n.type, n.actor_id, n.subject_id, n.body, n.created_at, n.read_at
		FROM notify_deliveries d JOIN notifications n ON n.id = d.notification_id
		WHERE d.email_id = ? ORDER BY n.id`, id)
	if err != nil {
		return Email{}, err
	}
	defer rows.Close()
	var items []emailItem
	total := 0
	for rows.Next() {
		n, err := scan(rows)
		if err != nil {
			return Email{}, err
		}
		total++
		if len(items) < maxDigestItems {
			items = append(items, emailItem{Title: n.Title, Text: n.Text, URL: s.link(n.URL)})
		}
	}
	if err := rows.Err(); err != nil {
		return Email{}, err
	}
	if total == 0 {
		return Email{}, fmt.Errorf("%w: email %d lists no notifications", errNothingToSend, id)
	}
	data := emailData{
		Site: s.cfg.SiteName, Username: name, Items: items, More: total - len(items),
		InboxURL: s.link("/notifications"), PrefsURL: s.link("/notifications#preferences"),
	}
	subject := items[0].Title
	if kind == "digest" {
		data.Digest = true
		data.Window = "while"
		switch p, _ := loadPrefs(ctx, s.db.R, user); p.digest {
		case DigestHourly:
			data.Window = "hour"
		case DigestDaily:
			data.Window = "day"
		}
		subject = fmt.Sprintf("%d new notification%s on %s", total, plural(total), s.cfg.SiteName)
	}
	host := "blueprint.invalid"
	if u, err := url.Parse(s.cfg.BaseURL); err == nil && u.Hostname() != "" {
		host = u.Hostname()
	}
	return Email{
		To: to, Subject: subject, Data: data, UnsubURL: data.PrefsURL,
		MessageID: fmt.Sprintf("notify-%d-%d@%s", id, user, host),
	}, nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// ---- Digests ----

// digestWindow is the least time between two digests of a mode.
func digestWindow(mode string) time.Duration {
	switch mode {
	case DigestHourly:
		return time.Hour
	case DigestDaily:
		return 24 * time.Hour
	}
	return 0
}

// AssembleDigests turns held email deliveries into digest emails for the
// users whose window has passed — measured from their oldest held
// notification and from their last digest, so a user gets at most one
// digest per window — and returns how many digests it queued.
// Notifications read in the app meanwhile are left out.
func (s *Service) AssembleDigests(ctx context.Context) (int, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT d.user_id, MIN(d.created_at) FROM notify_deliveries d
		WHERE d.channel = 'email' AND d.status = 'held' GROUP BY d.user_id`)
	if err != nil {
		return 0, fmt.Errorf("notify: digests: %w", err)
	}
	type held struct{ user, oldest int64 }
	var users []held
	for rows.Next() {
		var h held
		if err := rows.Scan(&h.user, &h.oldest); err != nil {
			rows.Close()
			return 0, fmt.Errorf("notify: digests: %w", err)
		}
		users = append(users, h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("notify: digests: %w", err)
	}
	queued := 0
	for _, h := range users {
		ok, err := s.assembleDigest(ctx, h.user, h.oldest)
		if err != nil {
			return queued, err
		}
		if ok {
			queued++
		}
	}
	return queued, nil
}

func (s *Service) assembleDigest(ctx context.Context, user, oldest int64) (bool, error) {
	queued := false
	now := s.now()
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		p, err := loadPrefs(ctx, tx, user)
		if err != nil {
			return err
		}
		var last int64
		if err := tx.QueryRowContext(ctx, `SELECT last_digest_at FROM notify_settings WHERE user_id = ?`, user).Scan(&last); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		w := digestWindow(p.digest)
		if now.Sub(time.Unix(oldest, 0)) < w || now.Sub(time.Unix(last, 0)) < w {
			return nil
		}
		// Read in the app: no email needed any more.
		if _, err := tx.ExecContext(ctx, `UPDATE notify_deliveries SET status = 'skipped', updated_at = ?
			WHERE user_id = ? AND channel = 'email' AND status = 'held'
			AND notification_id IN (SELECT id FROM notifications WHERE user_id = ? AND read_at IS NOT NULL)`, now.Unix(), user, user); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM notify_deliveries WHERE user_id = ? AND channel = 'email' AND status = 'held'`, user).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		kind := "digest"
		if n == 1 && p.digest == DigestInstant {
			kind = "single"
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO notify_emails(user_id, kind, status, next_at, created_at, updated_at) VALUES (?, ?, 'pending', ?, ?, ?)`,
			user, kind, now.Unix(), now.Unix(), now.Unix())
		if err != nil {
			return err
		}
		emailID, _ := res.LastInsertId()
		if _, err := tx.ExecContext(ctx, `UPDATE notify_deliveries SET status = 'queued', email_id = ?, updated_at = ?
			WHERE user_id = ? AND channel = 'email' AND status = 'held'`, emailID, now.Unix(), user); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO notify_settings(user_id, last_digest_at) VALUES (?, ?)
			ON CONFLICT(user_id) DO UPDATE SET last_digest_at = excluded.last_digest_at`, user, now.Unix()); err != nil {
			return err
		}
		queued = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("notify: digest for %d: %w", user, err)
	}
	return queued, nil
}

// staleSending is how long a row may stay 'sending' before it is taken for
// a send interrupted by a crash.
const staleSending = 10 * time.Minute

// sweepStale marks emails and pushes whose sender died mid-send 'unknown':
// they may have gone out, so they are not sent again.
func (s *Service) sweepStale(ctx context.Context) {
	cutoff := s.now().Add(-staleSending).Unix()
	now := s.now().Unix()
	for _, q := range []string{
		`UPDATE notify_emails SET status = 'unknown', last_error = 'interrupted while sending', updated_at = ? WHERE status = 'sending' AND updated_at < ?`,
		`UPDATE notify_deliveries SET status = 'unknown', last_error = 'interrupted while sending', updated_at = ? WHERE channel = 'push' AND status = 'sending' AND updated_at < ?`,
	} {
		if _, err := s.db.W.ExecContext(ctx, q, now, cutoff); err != nil && ctx.Err() == nil {
			s.log.Warn("notify: sweep of interrupted sends failed", "err", err)
		}
	}
}
