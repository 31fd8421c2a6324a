package notify

import (
	"context"
	"crypto/ecdh"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	webpush "github.com/SherClockHolmes/webpush-go"

	"github.com/blueprint-media/blueprint/internal/errs"
)

// PushConfig configures Web Push.
type PushConfig struct {
	// Subject is the contact in the VAPID token: mailto:... or https://...
	Subject                 string
	PublicKey, PrivateKey   string // VAPID key pair, base64url
	AllowPrivateEndpoints   bool   // tests: push services on loopback
	MaxSubscriptionsPerUser int    // [10]
	TTL                     time.Duration
	// Client sends the requests (tests: one trusting the test server's
	// certificate). Nil means a client whose dialer refuses non-public
	// addresses unless AllowPrivateEndpoints is set.
	Client *http.Client
}

// Pusher sends Web Push messages (RFC 8030) encrypted for the browser
// (RFC 8291, aes128gcm) and signed with the VAPID key (RFC 8292), using
// github.com/SherClockHolmes/webpush-go.
type Pusher struct {
	cfg    PushConfig
	client *http.Client
}

// NewPusher returns a Pusher.
func NewPusher(cfg PushConfig) (*Pusher, error) {
	if cfg.PublicKey == "" || cfg.PrivateKey == "" {
		return nil, errors.New("notify: push: VAPID keys missing")
	}
	if _, err := decodeKey(cfg.PublicKey, 65); err != nil {
		return nil, fmt.Errorf("notify: push: VAPID public key: %w", err)
	}
	if _, err := decodeKey(cfg.PrivateKey, 32); err != nil {
		return nil, fmt.Errorf("notify: push: VAPID private key: %w", err)
	}
	if cfg.MaxSubscriptionsPerUser <= 0 {
		cfg.MaxSubscriptionsPerUser = 10
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 24 * time.Hour
	}
	if cfg.Subject == "" {
		cfg.Subject = "mailto:admin@localhost"
	}
	client := cfg.Client
	if client == nil {
		dialer := &net.Dialer{Timeout: 10 * time.Second}
		if !cfg.AllowPrivateEndpoints {
			dialer.Control = refusePrivate
		}
		client = &http.Client{
			Timeout:   30 * time.Second,
			Transport: &http.Transport{Proxy: nil, DialContext: dialer.DialContext, TLSHandshakeTimeout: 10 * time.Second, MaxIdleConnsPerHost: 4},
			// A push service answers; it never redirects us elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return &Pusher{cfg: cfg, client: client}, nil
}

// PublicKey returns the VAPID public key browsers subscribe with.
func (p *Pusher) PublicKey() string { return p.cfg.PublicKey }

// refusePrivate is a dialer Control function: it runs after name
// resolution, on the address actually dialled, so a push endpoint cannot
// make the server call into its own network (request forgery), not even
// through DNS tricks.
func refusePrivate(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if ip == nil || !publicIP(ip) {
		return fmt.Errorf("notify: push endpoint address %s is not public", host)
	}
	return nil
}

func publicIP(ip net.IP) bool {
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified() || ip.IsLinkLocalUnicast() ||
		ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() || ip.IsMulticast() {
		return false
	}
	if v4 := ip.To4(); v4 != nil {
		// Carrier-grade NAT, "this network", benchmarking, reserved.
		if v4[0] == 100 && v4[1]&0xc0 == 64 || v4[0] == 0 || v4[0] == 198 && v4[1]&0xfe == 18 || v4[0] >= 240 {
			return false
		}
	}
	return true
}

// send delivers one encrypted message and returns the push service's
// status code.
func (p *Pusher) send(ctx context.Context, sub Subscription, payload []byte) (int, error) {
	resp, err := webpush.SendNotificationWithContext(ctx, payload, &webpush.Subscription{
		Endpoint: sub.Endpoint, Keys: webpush.Keys{P256dh: sub.Keys.P256dh, Auth: sub.Keys.Auth},
	}, &webpush.Options{
		HTTPClient:      p.client,
		Subscriber:      strings.TrimPrefix(p.cfg.Subject, "mailto:"),
		TTL:             int(p.cfg.TTL.Seconds()),
		Urgency:         webpush.UrgencyNormal,
		VAPIDPublicKey:  p.cfg.PublicKey,
		VAPIDPrivateKey: p.cfg.PrivateKey,
	})
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// ---- VAPID keys ----

// LoadVAPIDKeys returns the VAPID key pair kept in dir/vapid.json,
// generating it on first use (file mode 0600). Processes sharing the data
// directory share the keys, so every process signs for the same
// subscriptions.
func LoadVAPIDKeys(dir string) (public, private string, err error) {
	path := filepath.Join(dir, "vapid.json")
	type keys struct {
		Public  string `json:"public_key"`
		Private string `json:"private_key"`
	}
	read := func() (string, string, error) {
		var k keys
		for range 50 { // another process may be writing it right now
			b, err := os.ReadFile(path)
			if err != nil {
				return "", "", fmt.Errorf("notify: vapid keys: %w", err)
			}
			if json.Unmarshal(b, &k) == nil && k.Public != "" && k.Private != "" {
				return k.Public, k.Private, nil
			}
			time.Sleep(20 * time.Millisecond)
		}
		return "", "", fmt.Errorf("notify: vapid keys: %s is damaged; delete it to generate new keys (existing push subscriptions stop working)", path)
	}
	if _, err := os.Stat(path); err == nil {
		return read()
	}
	priv, pub, err := webpush.GenerateVAPIDKeys()
	if err != nil {
		return "", "", fmt.Errorf("notify: vapid keys: %w", err)
	}
	b, _ := json.Marshal(keys{Public: pub, Private: priv})
	tmp, err := os.CreateTemp(dir, ".vapid-*")
	if err != nil {
		return "", "", fmt.Errorf("notify: vapid keys: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", "", fmt.Errorf("notify: vapid keys: %w", err)
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	tmp.Close()
	if err != nil {
		return "", "", fmt.Errorf("notify: vapid keys: %w", err)
	}
	// Link, not rename: if another process created the file first, ours
	// loses and both use theirs.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return read()
		}
		return "", "", fmt.Errorf("notify: vapid keys: %w", err)
	}
	return pub, priv, nil
}

// ---- Subscriptions ----

// Subscription is a browser's PushSubscription (its toJSON() form).
type Subscription struct {
	Endpoint string `json:"endpoint"`
	Keys     struct {
		P256dh string `json:"p256dh"`
		Auth   string `json:"auth"`
	} `json:"keys"`
	ExpirationTime *float64 `json:"expirationTime,omitempty"`
}

// maxEndpointLen bounds a push endpoint URL.
const maxEndpointLen = 2048

// decodeKey decodes a base64 key in any of the four alphabets browsers
// and libraries use, and checks its length.
func decodeKey(s string, want int) ([]byte, error) {
	if len(s) > 200 {
		return nil, errors.New("too long")
	}
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.StdEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != want {
				return nil, fmt.Errorf("%d bytes, want %d", len(b), want)
			}
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}

// ParseSubscription decodes and checks a subscription sent by a browser:
// an https endpoint (not on a private address unless allowed), a P-256
// public key on the curve and a 16-byte auth secret.
func ParseSubscription(b []byte, allowPrivate bool) (Subscription, error) {
	var s Subscription
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&s); err != nil {
		return s, errs.E(errs.Invalid, "subscription is not valid JSON: %v", err)
	}
	if s.Endpoint == "" || len(s.Endpoint) > maxEndpointLen {
		return s, errs.E(errs.Invalid, "endpoint must be a URL of at most %d characters", maxEndpointLen)
	}
	u, err := url.Parse(s.Endpoint)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return s, errs.E(errs.Invalid, "endpoint must be an https URL without credentials")
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil && !allowPrivate && !publicIP(ip) {
		return s, errs.E(errs.Invalid, "endpoint must be on a public address")
	}
	if !allowPrivate && (u.Hostname() == "localhost" || strings.HasSuffix(u.Hostname(), ".localhost")) {
		return s, errs.E(errs.Invalid, "endpoint must be on a public address")
	}
	key, err := decodeKey(s.Keys.P256dh, 65)
	if err != nil {
		return s, errs.E(errs.Invalid, "keys.p256dh: %v", err)
	}
	if _, err := ecdh.P256().NewPublicKey(key); err != nil {
		return s, errs.E(errs.Invalid, "keys.p256dh is not a P-256 public key")
	}
	if _, err := decodeKey(s.Keys.Auth, 16); err != nil {
		return s, errs.E(errs.Invalid, "keys.auth: %v", err)
	}
	return s, nil
}

// AddSubscription stores a browser's push subscription for user (moving
// it over if another user had it) and drops the user's oldest beyond the
// limit.
func (s *Service) AddSubscription(ctx context.Context, user int64, sub Subscription, userAgent string) error {
	if s.pusher == nil {
		return errs.E(errs.Unavailable, "web push is not enabled on this server")
	}
	max := s.pusher.cfg.MaxSubscriptionsPerUser
	now := s.now().Unix()
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO notify_push_subscriptions(user_id, endpoint, p256dh, auth, user_agent, created_at) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT(endpoint) DO UPDATE SET user_id = excluded.user_id, p256dh = excluded.p256dh, auth = excluded.auth,
			user_agent = excluded.user_agent, created_at = excluded.created_at`,
			user, sub.Endpoint, sub.Keys.P256dh, sub.Keys.Auth, excerpt(userAgent, 200), now); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM notify_push_subscriptions WHERE user_id = ? AND id NOT IN
			(SELECT id FROM notify_push_subscriptions WHERE user_id = ? ORDER BY id DESC LIMIT ?)`, user, user, max)
		return err
	})
	if err != nil {
		return fmt.Errorf("notify: add subscription: %w", err)
	}
	return nil
}

// RemoveSubscription deletes user's subscription with the given endpoint.
func (s *Service) RemoveSubscription(ctx context.Context, user int64, endpoint string) error {
	res, err := s.db.W.ExecContext(ctx, `DELETE FROM notify_push_subscriptions WHERE user_id = ? AND endpoint = ?`, user, endpoint)
	if err != nil {
		return fmt.Errorf("notify: remove subscription: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errs.E(errs.NotFound, "no such push subscription")
	}
	return nil
}

// pushPayload is what the service worker receives.
type pushPayload struct {
	ID    string `json:"id"`
	Type  string `json:"type"`
	Title string `json:"title"`
	Body  string `json:"body"`
	URL   string `json:"url,omitempty"`
}

// sendPushOnce claims one due push delivery and sends it to each of the
// user's subscriptions not yet done. It reports whether there may be
// more.
func (s *Service) sendPushOnce(ctx context.Context) (bool, error) {
	now := s.now().Unix()
	var id, nid, user int64
	var attempts int
	var doneRaw string
	err := s.db.W.QueryRowContext(ctx, `UPDATE notify_deliveries SET status = 'sending', attempts = attempts + 1, updated_at = ?
		WHERE id = (SELECT id FROM notify_deliveries WHERE channel = 'push' AND status = 'pending' AND next_at <= ? ORDER BY id LIMIT 1)
		RETURNING id, notification_id, user_id, attempts, done_subs`, now, now).Scan(&id, &nid, &user, &attempts, &doneRaw)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("notify: claim push: %w", err)
	}
	done := map[int64]bool{}
	var doneList []int64
	json.Unmarshal([]byte(doneRaw), &doneList)
	for _, d := range doneList {
		done[d] = true
	}
	n, err := s.Get(ctx, user, nid)
	if err != nil {
		return true, s.finishPush(ctx, id, "skipped", doneList, "notification is gone", 0)
	}
	payload, _ := json.Marshal(pushPayload{ID: strconv.FormatInt(n.ID, 10), Type: n.Type,
		Title: excerpt(n.Title, 200), Body: excerpt(n.Text, 1000), URL: s.link(n.URL)})

	rows, err := s.db.R.QueryContext(ctx, `SELECT id, endpoint, p256dh, auth FROM notify_push_subscriptions WHERE user_id = ? ORDER BY id`, user)
	if err != nil {
		return true, s.finishPush(ctx, id, "pending", doneList, err.Error(), now+int64(emailBackoff(attempts).Seconds()))
	}
	type target struct {
		id  int64
		sub Subscription
	}
	var targets []target
	for rows.Next() {
		var t target
		if err := rows.Scan(&t.id, &t.sub.Endpoint, &t.sub.Keys.P256dh, &t.sub.Keys.Auth); err != nil {
			rows.Close()
			return true, s.finishPush(ctx, id, "pending", doneList, err.Error(), now+int64(emailBackoff(attempts).Seconds()))
		}
		if !done[t.id] {
			targets = append(targets, t)
		}
	}
	rows.Close()

	var retry, failed []string
	succeeded := 0
	for _, t := range targets {
		sendCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		status, err := s.pusher.send(sendCtx, t.sub, payload)
		cancel()
		switch {
		case err != nil:
			s.m.push.WithLabelValues("retry").Inc()
			retry = append(retry, err.Error())
		case status >= 200 && status < 300:
			s.m.push.WithLabelValues("sent").Inc()
			succeeded++
			doneList = append(doneList, t.id)
			s.db.W.ExecContext(ctx, `UPDATE notify_push_subscriptions SET last_ok_at = ? WHERE id = ?`, now, t.id)
		case status == http.StatusNotFound || status == http.StatusGone:
			// The subscription expired or the user revoked it: drop it
			// now, so it is never tried again.
			s.m.push.WithLabelValues("gone").Inc()
			if _, err := s.db.W.ExecContext(ctx, `DELETE FROM notify_push_subscriptions WHERE id = ?`, t.id); err != nil {
				retry = append(retry, err.Error())
			}
		case status == http.StatusTooManyRequests || status >= 500:
			s.m.push.WithLabelValues("retry").Inc()
			retry = append(retry, "push service answered "+strconv.Itoa(status))
		default:
			s.m.push.WithLabelValues("failed").Inc()
			failed = append(failed, "push service answered "+strconv.Itoa(status))
			doneList = append(doneList, t.id) // refused for good: not again
		}
	}
	problems := strings.Join(append(retry, failed...), "; ")
	switch {
	case len(retry) > 0 && attempts < s.cfg.MaxAttempts:
		return true, s.finishPush(ctx, id, "pending", doneList, problems, now+int64(emailBackoff(attempts).Seconds()))
	case succeeded > 0 || len(done) > 0:
		return true, s.finishPush(ctx, id, "sent", doneList, problems, 0)
	case problems != "":
		return true, s.finishPush(ctx, id, "failed", doneList, problems, 0)
	}
	return true, s.finishPush(ctx, id, "skipped", doneList, "no subscriptions", 0)
}

func (s *Service) finishPush(ctx context.Context, id int64, status string, done []int64, lastErr string, nextAt int64) error {
	now := s.now().Unix()
	if nextAt == 0 {
		nextAt = now
	}
	if done == nil {
		done = []int64{}
	}
	b, _ := json.Marshal(done)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := s.db.W.ExecContext(ctx, `UPDATE notify_deliveries SET status = ?, done_subs = ?, last_error = ?, next_at = ?, updated_at = ? WHERE id = ?`,
		status, string(b), excerpt(lastErr, 500), nextAt, now, id); err != nil {
		return fmt.Errorf("notify: record push %d: %w", id, err)
	}
	return nil
}
