package payment

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/blueprint-media/blueprint/internal/errs"
)

// Outgoing webhooks: creators register HTTPS endpoints; every event about
// their money (payment.succeeded, membership.*, payout.*) is queued for
// each endpoint in the transaction of the change, and delivered by the
// background job signed with the endpoint's secret (SignatureHeader, the
// same scheme Blueprint verifies on incoming webhooks) and retried with
// exponential backoff until a 2xx or WebhookMaxAttempts. Receivers dedupe
// on the Blueprint-Event-Id header and must refuse signatures older than a
// few minutes.

// Headers on outgoing webhooks.
const (
	EventIDHeader   = "Blueprint-Event-Id"
	EventTypeHeader = "Blueprint-Event-Type"
)

// MaxEndpointURL bounds an endpoint URL's length.
const MaxEndpointURL = 2048

// EndpointView is a creator's webhook endpoint. Secret is shown once, in
// the answer to its creation.
type EndpointView struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	Secret    string    `json:"secret,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	Pending   int64     `json:"pending_deliveries"`
	Failed    int64     `json:"failed_deliveries"`
	Delivered int64     `json:"delivered"`
}

// EndpointRequest is the body of POST /api/v1/payments/webhook-endpoints.
type EndpointRequest struct {
	URL string `json:"url"`
}

// checkEndpointURL validates an endpoint URL. Private and loopback
// addresses are refused again at connection time, after DNS resolution.
func (s *Service) checkEndpointURL(raw string) error {
	if len(raw) == 0 || len(raw) > MaxEndpointURL {
		return errs.E(errs.Invalid, "url must be 1 to %d characters", MaxEndpointURL)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return errs.E(errs.Invalid, "url must be an absolute URL without credentials or fragment")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && s.cfg.WebhookAllowPrivate:
	default:
		return errs.E(errs.Invalid, "url must be https")
	}
	if !s.cfg.WebhookAllowPrivate {
		host := u.Hostname()
		if ip := net.ParseIP(host); (ip != nil && !publicIP(ip)) || host == "localhost" || strings.HasSuffix(host, ".localhost") {
			return errs.E(errs.Invalid, "url must point to a public address")
		}
	}
	return nil
}

// AddEndpoint registers a webhook endpoint for the caller's events.
func (s *Service) AddEndpoint(ctx context.Context, creator int64, key string, req EndpointRequest) (Reply, error) {
	if creator <= 0 {
		return Reply{}, errs.E(errs.Unauthorized, "log in first")
	}
	if err := CheckKey(key); err != nil {
		return Reply{}, err
	}
	if err := s.checkEndpointURL(req.URL); err != nil {
		return Reply{}, err
	}
	var view EndpointView
	c, err := s.claimKey(ctx, creator, key, "webhook_endpoint", Fingerprint("webhook_endpoint", req), func(tx *sql.Tx) (int64, error) {
		var n int
		if err := s.db.queryRow(ctx, tx, `SELECT COUNT(*) FROM payment_webhook_endpoints WHERE creator_id = ?`, creator).Scan(&n); err != nil {
			return 0, err
		}
		if n >= s.cfg.MaxWebhookEndpoints {
			return 0, errs.E(errs.Conflict, "you have %d webhook endpoints, the most allowed; delete one first", n)
		}
		id, err := s.newID(creator)
		if err != nil {
			return 0, err
		}
		b := make([]byte, 32)
		rand.Read(b)
		now := s.now()
		view = EndpointView{ID: idStr(id), URL: req.URL, Secret: "whsec_" + hex.EncodeToString(b), CreatedAt: now}
		_, err = s.db.exec(ctx, tx, `INSERT INTO payment_webhook_endpoints(id, creator_id, url, secret, created_at) VALUES (?, ?, ?, ?, ?)`,
			id, creator, req.URL, view.Secret, ms(now))
		return id, err
	})
	if err != nil {
		return Reply{}, err
	}
	if c.reply != nil {
		return *c.reply, nil
	}
	if view.ID == "" {
		// A retry of a request that crashed after creating the endpoint.
		var secret string
		var created int64
		if err := s.db.queryRow(ctx, nil, `SELECT url, secret, created_at FROM payment_webhook_endpoints WHERE id = ?`, c.resourceID).
			Scan(&view.URL, &secret, &created); err != nil {
			return Reply{}, fmt.Errorf("payment: endpoint: %w", err)
		}
		view.ID, view.Secret, view.CreatedAt = idStr(c.resourceID), secret, fromMS(created)
	}
	var r Reply
	err = s.db.tx(ctx, func(tx *sql.Tx) error {
		var e error
		r, e = s.seal(ctx, tx, creator, key, http.StatusCreated, view)
		return e
	})
	return r, err
}

// Endpoints lists the caller's endpoints with delivery counts.
func (s *Service) Endpoints(ctx context.Context, creator int64) ([]EndpointView, error) {
	rows, err := s.db.query(ctx, nil, `SELECT e.id, e.url, e.created_at,
		(SELECT COUNT(*) FROM payment_webhook_deliveries d WHERE d.endpoint_id = e.id AND d.state = 'pending'),
		(SELECT COUNT(*) FROM payment_webhook_deliveries d WHERE d.endpoint_id = e.id AND d.state = 'failed'),
		(SELECT COUNT(*) FROM payment_webhook_deliveries d WHERE d.endpoint_id = e.id AND d.state = 'delivered')
		FROM payment_webhook_endpoints e WHERE e.creator_id = ? ORDER BY e.id`, creator)
	if err != nil {
		return nil, fmt.Errorf("payment: endpoints: %w", err)
	}
	defer rows.Close()
	out := []EndpointView{}
	for rows.Next() {
		var v EndpointView
		var id, created int64
		if err := rows.Scan(&id, &v.URL, &created, &v.Pending, &v.Failed, &v.Delivered); err != nil {
			return nil, err
		}
		v.ID, v.CreatedAt = idStr(id), fromMS(created)
		out = append(out, v)
	}
	return out, rows.Err()
}

// DeleteEndpoint removes one of the caller's endpoints and its queue.
func (s *Service) DeleteEndpoint(ctx context.Context, creator int64, key string, id int64) (Reply, error) {
	if creator <= 0 {
		return Reply{}, errs.E(errs.Unauthorized, "log in first")
	}
	c, err := s.claimKey(ctx, creator, key, "delete_endpoint", Fingerprint("delete_endpoint:"+idStr(id), nil), func(tx *sql.Tx) (int64, error) {
		var owner int64
		err := s.db.queryRow(ctx, tx, `SELECT creator_id FROM payment_webhook_endpoints WHERE id = ?`, id).Scan(&owner)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && owner != creator) {
			return 0, errs.E(errs.NotFound, "no such webhook endpoint")
		}
		if err != nil {
			return 0, err
		}
		if _, err := s.db.exec(ctx, tx, `DELETE FROM payment_webhook_deliveries WHERE endpoint_id = ?`, id); err != nil {
			return 0, err
		}
		_, err = s.db.exec(ctx, tx, `DELETE FROM payment_webhook_endpoints WHERE id = ?`, id)
		return id, err
	})
	if err != nil {
		return Reply{}, err
	}
	if c.reply != nil {
		return *c.reply, nil
	}
	var r Reply
	err = s.db.tx(ctx, func(tx *sql.Tx) error {
		var e error
		r, e = s.seal(ctx, tx, creator, key, http.StatusOK, map[string]string{"deleted": idStr(id)})
		return e
	})
	return r, err
}

// webhookBody is the JSON an endpoint receives.
type webhookBody struct {
	ID      string         `json:"id"`
	Type    string         `json:"type"`
	Created int64          `json:"created"`
	Data    map[string]any `json:"data"`
}

// queueDeliveries queues an event for each of creator's endpoints, in tx.
func (s *Service) queueDeliveries(ctx context.Context, tx *sql.Tx, creator int64, kind string, payload map[string]any) error {
	rows, err := s.db.query(ctx, tx, `SELECT id FROM payment_webhook_endpoints WHERE creator_id = ?`, creator)
	if err != nil {
		return fmt.Errorf("payment: endpoints: %w", err)
	}
	var eps []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		eps = append(eps, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(eps) == 0 {
		return err
	}
	evID, err := s.newID(creator)
	if err != nil {
		return err
	}
	now := s.now()
	body, err := json.Marshal(webhookBody{ID: "evt_" + idStr(evID), Type: kind, Created: now.Unix(), Data: payload})
	if err != nil {
		return err
	}
	for _, ep := range eps {
		if _, err := s.db.exec(ctx, tx, `INSERT INTO payment_webhook_deliveries(endpoint_id, event_id, kind, payload, state, next_attempt_at, created_at)
			VALUES (?, ?, ?, ?, 'pending', ?, ?)`, ep, "evt_"+idStr(evID), kind, string(body), ms(now), ms(now)); err != nil {
			return fmt.Errorf("payment: queue webhook: %w", err)
		}
	}
	return nil
}

type delivery struct {
	id, endpoint     int64
	url, secret      string
	eventID, kind    string
	payload          []byte
	attempts         int64
	status           int
	err              error
	deliveredOrFinal bool
}

// DeliverDue sends the deliveries that are due, up to 4 at a time, and
// returns how many it attempted.
func (s *Service) DeliverDue(ctx context.Context) (int, error) {
	rows, err := s.db.query(ctx, nil, `SELECT d.id, d.endpoint_id, e.url, e.secret, d.event_id, d.kind, d.payload, d.attempts
		FROM payment_webhook_deliveries d JOIN payment_webhook_endpoints e ON e.id = d.endpoint_id
		WHERE d.state = 'pending' AND d.next_attempt_at <= ? ORDER BY d.next_attempt_at LIMIT 64`, ms(s.now()))
	if err != nil {
		return 0, fmt.Errorf("payment: due deliveries: %w", err)
	}
	var due []*delivery
	for rows.Next() {
		d := &delivery{}
		var payload string
		if err := rows.Scan(&d.id, &d.endpoint, &d.url, &d.secret, &d.eventID, &d.kind, &payload, &d.attempts); err != nil {
			rows.Close()
			return 0, err
		}
		d.payload = []byte(payload)
		due = append(due, d)
	}
	rows.Close()
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, d := range due {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			d.status, d.err = s.post(ctx, d)
		})
	}
	wg.Wait()
	var errList []error
	for _, d := range due {
		if err := s.recordDelivery(ctx, d); err != nil {
			errList = append(errList, err)
		}
	}
	return len(due), errors.Join(errList...)
}

func (s *Service) post(ctx context.Context, d *delivery) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(d.payload))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Blueprint-Webhooks/1")
	req.Header.Set(SignatureHeader, Sign([]byte(d.secret), s.now(), d.payload))
	req.Header.Set(EventIDHeader, d.eventID)
	req.Header.Set(EventTypeHeader, d.kind)
	resp, err := s.hooks.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("endpoint answered %d", resp.StatusCode)
	}
	return resp.StatusCode, nil
}

func (s *Service) recordDelivery(ctx context.Context, d *delivery) error {
	now := s.now()
	attempts := d.attempts + 1
	var q string
	var args []any
	switch {
	case d.err == nil:
		q, args = `UPDATE payment_webhook_deliveries SET state = 'delivered', attempts = ?, last_status = ?, last_error = '', delivered_at = ? WHERE id = ?`,
			[]any{attempts, d.status, ms(now), d.id}
		s.m.deliveries.WithLabelValues("delivered").Inc()
	case attempts >= int64(s.cfg.WebhookMaxAttempts):
		q, args = `UPDATE payment_webhook_deliveries SET state = 'failed', attempts = ?, last_status = ?, last_error = ? WHERE id = ?`,
			[]any{attempts, d.status, truncate(d.err.Error(), 500), d.id}
		s.m.deliveries.WithLabelValues("failed").Inc()
	default:
		// 1 s, 2 s, 4 s ... up to an hour, with ±25 % jitter.
		wait := min(time.Second<<min(attempts-1, 12), time.Hour)
		wait = wait*3/4 + time.Duration(mrand.Int64N(int64(wait)/2+1))
		q, args = `UPDATE payment_webhook_deliveries SET attempts = ?, last_status = ?, last_error = ?, next_attempt_at = ? WHERE id = ?`,
			[]any{attempts, d.status, truncate(d.err.Error(), 500), ms(now.Add(wait)), d.id}
		s.m.deliveries.WithLabelValues("retry").Inc()
	}
	return s.db.tx(ctx, func(tx *sql.Tx) error {
		_, err := s.db.exec(ctx, tx, q, args...)
		return err
	})
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// newHookClient returns the HTTP client for outgoing webhooks: bounded in
// time, no redirects, and (unless allowPrivate) unable to connect to
// loopback, private, link-local or otherwise non-public addresses, checked
// on the resolved address so DNS cannot smuggle one in.
func newHookClient(timeout time.Duration, allowPrivate bool) *http.Client {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	dialer := &net.Dialer{Timeout: timeout}
	if !allowPrivate {
		dialer.Control = func(network, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			if ip := net.ParseIP(host); ip == nil || !publicIP(ip) {
				return fmt.Errorf("payment: webhook endpoint address %s is not public", host)
			}
			return nil
		}
	}
	tr := &http.Transport{
		DialContext: dialer.DialContext, TLSHandshakeTimeout: timeout, ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost: 2, IdleConnTimeout: 90 * time.Second,
	}
	return &http.Client{
		Timeout: timeout, Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

var cgnat = net.IPNet{IP: net.IPv4(100, 64, 0, 0), Mask: net.CIDRMask(10, 32)}

// publicIP reports whether ip is a globally routable unicast address.
func publicIP(ip net.IP) bool {
	if ip4 := ip.To4(); ip4 != nil {
		ip = ip4
		if ip4[0] == 0 || cgnat.Contains(ip4) || ip4.Equal(net.IPv4bcast) {
			return false
		}
	}
	return !(ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified())
}
