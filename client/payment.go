package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Payment is a payment intent: a tip or a membership payment. Amounts are
// integers in the currency's minor unit (cents).
type Payment struct {
	ID            string      `json:"id"`
	Kind          string      `json:"kind"`
	State         string      `json:"state"` // pending, requires_action, processing, succeeded, failed, canceled
	Amount        int64       `json:"amount"`
	Fee           int64       `json:"fee"`
	Currency      string      `json:"currency"`
	PayerID       string      `json:"payer_id"`
	CreatorID     string      `json:"creator_id"`
	VideoID       string      `json:"video_id,omitempty"`
	MembershipID  string      `json:"membership_id,omitempty"`
	Message       string      `json:"message,omitempty"`
	Provider      string      `json:"provider"`
	ProviderRef   string      `json:"provider_ref,omitempty"`
	ClientSecret  string      `json:"client_secret,omitempty"`
	NextAction    *NextAction `json:"next_action,omitempty"`
	FailureReason string      `json:"failure_reason,omitempty"`
	CreatedAt     time.Time   `json:"created_at"`
}

// Final reports whether the payment will not change any more.
func (p Payment) Final() bool {
	return p.State == "succeeded" || p.State == "failed" || p.State == "canceled"
}

// NextAction is what the payer must do for a payment in requires_action.
type NextAction struct {
	Type string `json:"type"` // authenticate (test provider) or hosted_fields (Stripe)
	URL  string `json:"url,omitempty"`
}

// TipRequest is a tip to a creator named by exactly one of CreatorID,
// CreatorUsername and VideoID.
type TipRequest struct {
	CreatorID       string `json:"creator_id,omitempty"`
	CreatorUsername string `json:"creator_username,omitempty"`
	VideoID         string `json:"video_id,omitempty"`
	Amount          int64  `json:"amount"`
	Currency        string `json:"currency"`
	PaymentMethod   string `json:"payment_method,omitempty"`
	Message         string `json:"message,omitempty"`
}

// Membership is a monthly membership of a creator.
type Membership struct {
	ID                string     `json:"id"`
	MemberID          string     `json:"member_id"`
	CreatorID         string     `json:"creator_id"`
	State             string     `json:"state"` // incomplete, active, past_due, canceled, incomplete_expired
	Amount            int64      `json:"amount"`
	Currency          string     `json:"currency"`
	PeriodsPaid       int64      `json:"periods_paid"`
	CurrentPeriodEnd  *time.Time `json:"current_period_end,omitempty"`
	CancelAtPeriodEnd bool       `json:"cancel_at_period_end"`
	EndedReason       string     `json:"ended_reason,omitempty"`
	CreatedAt         time.Time  `json:"created_at"`
}

// Subscription is the answer to Subscribe.
type Subscription struct {
	Membership Membership `json:"membership"`
	Payment    Payment    `json:"payment"`
}

// Balance is a creator's money in one currency.
type Balance struct {
	Currency  string `json:"currency"`
	Available int64  `json:"available"`
	Pending   int64  `json:"pending"`
	InTransit int64  `json:"in_transit"`
	PaidOut   int64  `json:"paid_out"`
}

// CreatorBalance is a creator's balances.
type CreatorBalance struct {
	CreatorID   string    `json:"creator_id"`
	Balances    []Balance `json:"balances"`
	Destination string    `json:"payout_destination,omitempty"`
}

// Payout is a payout of a creator's balance.
type Payout struct {
	ID            string    `json:"id"`
	State         string    `json:"state"` // pending, in_transit, paid, failed
	Amount        int64     `json:"amount"`
	Currency      string    `json:"currency"`
	Destination   string    `json:"destination"`
	FailureReason string    `json:"failure_reason,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
}

// WebhookEndpoint is a creator's webhook endpoint; Secret is set only in
// the answer to its creation.
type WebhookEndpoint struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	Secret    string    `json:"secret,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// IdempotencyKey returns a new random idempotency key. Use one per
// operation and pass the same one to every retry of it.
func IdempotencyKey() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Reply is the raw answer to a mutating payment call.
type Reply struct {
	Status   int
	Body     []byte
	Replayed bool // the stored answer to an earlier request with the key
}

// DoIdempotent sends a mutating call with the Idempotency-Key header once
// and returns the raw answer (any status). An error means no answer
// arrived: retry with the same key.
func (c *Client) DoIdempotent(ctx context.Context, method, path, key string, in any) (Reply, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return Reply{}, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return Reply{}, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Idempotency-Key", key)
	resp, err := c.send(req)
	if err != nil {
		return Reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Reply{}, err
	}
	return Reply{Status: resp.StatusCode, Body: b, Replayed: resp.Header.Get("Idempotent-Replayed") == "true"}, nil
}

// mutate sends a mutating call under key, retrying lost answers and 5xx
// with the same key (up to 5 tries, backing off), and decodes a 2xx
// answer into out. Other answers become *Error.
func (c *Client) mutate(ctx context.Context, method, path, key string, in, out any) error {
	if key == "" {
		key = IdempotencyKey()
	}
	var last error
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(100<<attempt) * time.Millisecond):
			}
		}
		r, err := c.DoIdempotent(ctx, method, path, key, in)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			last = err
			continue
		}
		if r.Status >= 500 || (r.Status == http.StatusConflict && bytes.Contains(r.Body, []byte("in progress"))) {
			last = replyError(r)
			continue
		}
		if r.Status/100 != 2 {
			return replyError(r)
		}
		if out != nil {
			return json.Unmarshal(r.Body, out)
		}
		return nil
	}
	return fmt.Errorf("client: no answer after retries with the same idempotency key: %w", last)
}

func replyError(r Reply) error {
	var e struct{ Error string }
	msg := string(r.Body)
	if json.Unmarshal(r.Body, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	return &Error{Status: r.Status, Message: msg}
}

// Tip pays a creator once. key is the idempotency key ("" makes one); the
// call is retried with it when an answer is lost.
func (c *Client) Tip(ctx context.Context, key string, req TipRequest) (Payment, error) {
	var p Payment
	err := c.mutate(ctx, http.MethodPost, "/api/v1/tips", key, req, &p)
	return p, err
}

// ConfirmPayment answers the test provider's authentication for a payment
// in requires_action (approve), or, with Stripe, reports that the hosted
// fields finished (paymentMethod optional).
func (c *Client) ConfirmPayment(ctx context.Context, key, id string, approve bool, paymentMethod string) (Payment, error) {
	var p Payment
	in := map[string]any{"approve": approve}
	if paymentMethod != "" {
		in["payment_method"] = paymentMethod
	}
	err := c.mutate(ctx, http.MethodPost, "/api/v1/payments/"+url.PathEscape(id)+"/confirm", key, in, &p)
	return p, err
}

// CancelPayment cancels a payment that waits for the payer.
func (c *Client) CancelPayment(ctx context.Context, key, id string) (Payment, error) {
	var p Payment
	err := c.mutate(ctx, http.MethodPost, "/api/v1/payments/"+url.PathEscape(id)+"/cancel", key, nil, &p)
	return p, err
}

// Payment returns one payment the caller made or received.
func (c *Client) Payment(ctx context.Context, id string) (Payment, error) {
	var p Payment
	err := c.Do(ctx, http.MethodGet, "/api/v1/payments/"+url.PathEscape(id), nil, &p)
	return p, err
}

// Payments lists the caller's payments (received ones when asCreator),
// newest first.
func (c *Client) Payments(ctx context.Context, asCreator bool, limit int) ([]Payment, error) {
	role := "payer"
	if asCreator {
		role = "creator"
	}
	var out struct{ Payments []Payment }
	err := c.Do(ctx, http.MethodGet, fmt.Sprintf("/api/v1/payments?role=%s&limit=%d", role, limit), nil, &out)
	return out.Payments, err
}

// WaitPayment polls a payment until it is final or ctx ends.
func (c *Client) WaitPayment(ctx context.Context, id string, every time.Duration) (Payment, error) {
	for {
		p, err := c.Payment(ctx, id)
		if err != nil || p.Final() {
			return p, err
		}
		select {
		case <-ctx.Done():
			return p, ctx.Err()
		case <-time.After(every):
		}
	}
}

// Subscribe joins a creator's monthly membership at the creator's price.
func (c *Client) Subscribe(ctx context.Context, key, creatorID, paymentMethod string) (Subscription, error) {
	var s Subscription
	in := map[string]string{"creator_id": creatorID}
	if paymentMethod != "" {
		in["payment_method"] = paymentMethod
	}
	err := c.mutate(ctx, http.MethodPost, "/api/v1/memberships", key, in, &s)
	return s, err
}

// Memberships lists the caller's memberships (its members' when
// asCreator).
func (c *Client) Memberships(ctx context.Context, asCreator bool) ([]Membership, error) {
	role := "member"
	if asCreator {
		role = "creator"
	}
	var out struct{ Memberships []Membership }
	err := c.Do(ctx, http.MethodGet, "/api/v1/memberships?role="+role+"&limit=100", nil, &out)
	return out.Memberships, err
}

// CancelMembership ends a membership at the end of its paid period.
func (c *Client) CancelMembership(ctx context.Context, key, id string) (Membership, error) {
	var m Membership
	err := c.mutate(ctx, http.MethodDelete, "/api/v1/memberships/"+url.PathEscape(id), key, nil, &m)
	return m, err
}

// SetMembershipPrice sets the caller's monthly membership price.
func (c *Client) SetMembershipPrice(ctx context.Context, key string, amount int64, currency string) error {
	return c.mutate(ctx, http.MethodPut, "/api/v1/memberships/plan", key, map[string]any{"amount": amount, "currency": currency}, nil)
}

// Balance returns the caller's balances; creatorID must be the caller.
func (c *Client) Balance(ctx context.Context, creatorID string) (CreatorBalance, error) {
	var b CreatorBalance
	err := c.Do(ctx, http.MethodGet, "/api/v1/creators/"+url.PathEscape(creatorID)+"/balance", nil, &b)
	return b, err
}

// RequestPayout pays out part of the caller's available balance.
func (c *Client) RequestPayout(ctx context.Context, key string, amount int64, currency string) (Payout, error) {
	var p Payout
	err := c.mutate(ctx, http.MethodPost, "/api/v1/payouts", key, map[string]any{"amount": amount, "currency": currency}, &p)
	return p, err
}

// Payouts lists the caller's payouts, newest first.
func (c *Client) Payouts(ctx context.Context) ([]Payout, error) {
	var out struct{ Payouts []Payout }
	err := c.Do(ctx, http.MethodGet, "/api/v1/payouts?limit=100", nil, &out)
	return out.Payouts, err
}

// SetPayoutDestination sets where the caller's payouts go.
func (c *Client) SetPayoutDestination(ctx context.Context, key, destination string) error {
	return c.mutate(ctx, http.MethodPut, "/api/v1/payouts/destination", key, map[string]string{"destination": destination}, nil)
}

// AddWebhookEndpoint registers a URL for the caller's payment events and
// returns it with its signing secret.
func (c *Client) AddWebhookEndpoint(ctx context.Context, key, endpointURL string) (WebhookEndpoint, error) {
	var e WebhookEndpoint
	err := c.mutate(ctx, http.MethodPost, "/api/v1/payments/webhook-endpoints", key, map[string]string{"url": endpointURL}, &e)
	return e, err
}

// IsConflict reports whether err is a 409 answer (for example an
// idempotency key reused with a different request).
func IsConflict(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusConflict
}
