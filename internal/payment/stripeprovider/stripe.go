// Package stripeprovider is the Stripe adapter of the payment service,
// built on github.com/stripe/stripe-go/v82.
//
// Card data never reaches Blueprint: browsers enter it in Stripe's hosted
// fields (the Payment Element, loaded from js.stripe.com with the
// publishable key), which turn it into a PaymentMethod ID or confirm the
// PaymentIntent directly; Blueprint only ever sees Stripe IDs. That keeps
// the platform at PCI DSS SAQ A.
//
// Mapping: a Blueprint intent is a Stripe PaymentIntent created with
// Blueprint's idempotency key and metadata bp_intent_id. Statuses map as
// requires_payment_method / requires_confirmation / requires_action →
// RequiresAction (the payer must act in the hosted fields), processing and
// requires_capture → Processing, succeeded → Succeeded, canceled →
// Canceled; a PaymentIntent that Blueprint confirmed server-side (with a
// payment method given, or off-session for renewals) and that was declined
// is Failed. Payouts are Connect transfers to the creator's connected
// account (acct_...), paid when created. Webhooks are verified with
// webhook.ConstructEventWithOptions (Stripe-Signature, HMAC-SHA256,
// timestamp tolerance).
package stripeprovider

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v82"
	"github.com/stripe/stripe-go/v82/webhook"

	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/payment"
)

// Name is the provider's name.
const Name = "stripe"

// Metadata keys Blueprint sets on Stripe objects.
const (
	metaIntent = "bp_intent_id"
	metaPayout = "bp_payout_id"
	metaFlow   = "bp_flow" // "server": confirmed by Blueprint; "hosted": by the browser
)

// Config configures the adapter.
type Config struct {
	SecretKey      string
	PublishableKey string
	WebhookSecret  string
	// APIURL overrides Stripe's API base URL (tests, proxies).
	APIURL string
	// HTTPClient is the client for API calls; nil means one with a 30 s
	// limit.
	HTTPClient *http.Client
	// MaxNetworkRetries is stripe-go's own retry count for network errors
	// and 409/5xx answers, with the same idempotency key (default 2).
	MaxNetworkRetries *int64
}

// Provider is the Stripe adapter. It implements payment.Provider.
type Provider struct {
	cfg Config
	c   *stripe.Client
}

var _ payment.Provider = (*Provider)(nil)

// New returns the adapter.
func New(cfg Config) (*Provider, error) {
	if cfg.SecretKey == "" || cfg.WebhookSecret == "" {
		return nil, errors.New("stripeprovider: secret key and webhook secret are required")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	bc := &stripe.BackendConfig{
		HTTPClient:        cfg.HTTPClient,
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
		MaxNetworkRetries: cfg.MaxNetworkRetries,
	}
	if cfg.APIURL != "" {
		bc.URL = stripe.String(strings.TrimSuffix(cfg.APIURL, "/"))
	}
	return &Provider{cfg: cfg, c: stripe.NewClient(cfg.SecretKey, stripe.WithBackends(stripe.NewBackendsWithConfig(bc)))}, nil
}

// Name implements payment.Provider.
func (p *Provider) Name() string { return Name }

// Client implements payment.Provider.
func (p *Provider) Client() payment.ClientInfo {
	return payment.ClientInfo{Provider: Name, PublishableKey: p.cfg.PublishableKey}
}

var (
	pmRE   = regexp.MustCompile(`^pm_[A-Za-z0-9_]{1,200}$`)
	acctRE = regexp.MustCompile(`^acct_[A-Za-z0-9]{1,64}$`)
)

// CheckPaymentMethod implements payment.Provider: empty (the payer will
// use the hosted fields) or a PaymentMethod ID.
func (p *Provider) CheckPaymentMethod(pm string) error {
	if pm == "" || pmRE.MatchString(pm) {
		return nil
	}
	return errs.E(errs.Invalid, "payment_method must be a Stripe PaymentMethod ID (pm_...) made by Stripe's hosted fields; card numbers are never accepted")
}

// CheckDestination implements payment.Provider: a connected account.
func (p *Provider) CheckDestination(dest string) error {
	if acctRE.MatchString(dest) {
		return nil
	}
	return errs.E(errs.Invalid, "destination must be a Stripe connected account ID (acct_...)")
}

// DefaultDestination implements payment.Provider: creators must connect
// an account first.
func (p *Provider) DefaultDestination(int64) string { return "" }

// Charge implements payment.Provider.
func (p *Provider) Charge(ctx context.Context, req payment.ChargeRequest) (payment.Charge, error) {
	params := &stripe.PaymentIntentCreateParams{
		Amount:      stripe.Int64(req.Amount),
		Currency:    stripe.String(strings.ToLower(req.Currency)),
		Description: stripe.String("Blueprint " + req.Description),
		Metadata:    map[string]string{metaIntent: strconv.FormatInt(req.IntentID, 10), metaFlow: "hosted"},
	}
	params.SetIdempotencyKey(req.Key)
	if req.SaveForRenewal {
		// Memberships renew off-session: the card must be saved on a
		// customer. One customer per membership, made under a key
		// derived from the intent's, so a retried charge finds it.
		cp := &stripe.CustomerCreateParams{Metadata: map[string]string{metaIntent: strconv.FormatInt(req.IntentID, 10)}}
		cp.SetIdempotencyKey(req.Key + "-customer")
		cus, err := p.c.V1Customers.Create(ctx, cp)
		if err != nil {
			return payment.Charge{}, providerError(err)
		}
		params.Customer = stripe.String(cus.ID)
		params.SetupFutureUsage = stripe.String("off_session")
	}
	if req.Customer != "" {
		params.Customer = stripe.String(req.Customer)
	}
	if req.PaymentMethod != "" {
		params.PaymentMethod = stripe.String(req.PaymentMethod)
		params.Confirm = stripe.Bool(true)
		params.Metadata[metaFlow] = "server"
		// No redirects: a payment that needs the payer is finished in
		// the hosted fields, not on a return URL.
		params.AutomaticPaymentMethods = &stripe.PaymentIntentCreateAutomaticPaymentMethodsParams{
			Enabled: stripe.Bool(true), AllowRedirects: stripe.String("never"),
		}
		if req.OffSession {
			params.OffSession = stripe.Bool(true)
		}
	} else {
		params.AutomaticPaymentMethods = &stripe.PaymentIntentCreateAutomaticPaymentMethodsParams{Enabled: stripe.Bool(true)}
	}
	pi, err := p.c.V1PaymentIntents.Create(ctx, params)
	if err != nil {
		return declined(err)
	}
	return toCharge(pi), nil
}

// declined turns a card decline on confirmation into a failed charge; any
// other error into a payment.ProviderError.
func declined(err error) (payment.Charge, error) {
	var se *stripe.Error
	if errors.As(err, &se) && se.Type == stripe.ErrorTypeCard && se.PaymentIntent != nil {
		ch := toCharge(se.PaymentIntent)
		ch.Status = payment.Failed
		ch.FailureReason = failureCode(se)
		return ch, nil
	}
	return payment.Charge{}, providerError(err)
}

func failureCode(se *stripe.Error) string {
	if se.DeclineCode != "" {
		return string(se.DeclineCode)
	}
	if se.Code != "" {
		return string(se.Code)
	}
	return "card_declined"
}

// providerError classifies a stripe-go error: rate limits, conflicts with
// a request in flight, server errors and network failures leave the
// outcome unknown (temporary); the rest are definitive.
func providerError(err error) error {
	var se *stripe.Error
	if !errors.As(err, &se) {
		return &payment.ProviderError{Code: "unavailable", Message: err.Error(), Temporary: true}
	}
	temp := se.HTTPStatusCode == http.StatusTooManyRequests || se.HTTPStatusCode >= 500 || se.Type == stripe.ErrorTypeAPI ||
		se.Code == stripe.ErrorCodeIdempotencyKeyInUse || se.HTTPStatusCode == 0
	code := string(se.Code)
	if code == "" {
		code = string(se.Type)
	}
	if se.Type == stripe.ErrorTypeIdempotency {
		code = "idempotency_conflict"
	}
	return &payment.ProviderError{Code: code, Message: se.Msg, Temporary: temp}
}

func toCharge(pi *stripe.PaymentIntent) payment.Charge {
	ch := payment.Charge{Ref: pi.ID, Amount: pi.Amount, Currency: strings.ToUpper(string(pi.Currency)), ClientSecret: pi.ClientSecret,
		Created: time.Unix(pi.Created, 0).UTC()}
	if v := pi.Metadata[metaIntent]; v != "" {
		ch.IntentID, _ = strconv.ParseInt(v, 10, 64)
	}
	if pi.Customer != nil {
		ch.Customer = pi.Customer.ID
	}
	if pi.PaymentMethod != nil && pi.SetupFutureUsage != "" {
		ch.PaymentMethod = pi.PaymentMethod.ID
	}
	switch pi.Status {
	case stripe.PaymentIntentStatusSucceeded:
		ch.Status = payment.Succeeded
	case stripe.PaymentIntentStatusProcessing, stripe.PaymentIntentStatusRequiresCapture:
		ch.Status = payment.Processing
	case stripe.PaymentIntentStatusCanceled:
		ch.Status = payment.Canceled
	default: // requires_payment_method, requires_confirmation, requires_action
		ch.Status, ch.NextAction = payment.RequiresAction, "hosted_fields"
		if pi.LastPaymentError != nil && pi.Metadata[metaFlow] == "server" {
			ch.Status, ch.NextAction = payment.Failed, ""
			ch.FailureReason = failureCode(pi.LastPaymentError)
		}
	}
	if ch.Status == payment.Succeeded || ch.Status == payment.Failed {
		ch.ClientSecret = ""
	}
	return ch
}

// GetCharge implements payment.Provider.
func (p *Provider) GetCharge(ctx context.Context, ref string) (payment.Charge, error) {
	pi, err := p.c.V1PaymentIntents.Retrieve(ctx, ref, nil)
	if err != nil {
		return payment.Charge{}, providerError(err)
	}
	return toCharge(pi), nil
}

// CompleteAction implements payment.Provider: with pm, confirm the
// PaymentIntent with the PaymentMethod the hosted fields created; without,
// read the state the browser left it in (the hosted fields confirmed it).
func (p *Provider) CompleteAction(ctx context.Context, ref, key string, approve bool, pm string) (payment.Charge, error) {
	if pm == "" {
		return p.GetCharge(ctx, ref)
	}
	params := &stripe.PaymentIntentConfirmParams{PaymentMethod: stripe.String(pm)}
	params.SetIdempotencyKey(key)
	pi, err := p.c.V1PaymentIntents.Confirm(ctx, ref, params)
	if err != nil {
		var se *stripe.Error
		if errors.As(err, &se) && se.Type == stripe.ErrorTypeCard && se.PaymentIntent != nil {
			// The payer may try another card in the hosted fields.
			return toCharge(se.PaymentIntent), nil
		}
		return payment.Charge{}, providerError(err)
	}
	return toCharge(pi), nil
}

// CancelCharge implements payment.Provider.
func (p *Provider) CancelCharge(ctx context.Context, ref, key string) (payment.Charge, error) {
	params := &stripe.PaymentIntentCancelParams{CancellationReason: stripe.String("abandoned")}
	params.SetIdempotencyKey(key)
	pi, err := p.c.V1PaymentIntents.Cancel(ctx, ref, params)
	if err != nil {
		return payment.Charge{}, providerError(err)
	}
	return toCharge(pi), nil
}

// ListCharges implements payment.Provider: the PaymentIntents Blueprint
// made (those with its metadata) since since.
func (p *Provider) ListCharges(ctx context.Context, since time.Time, fn func(payment.Charge) error) error {
	params := &stripe.PaymentIntentListParams{CreatedRange: &stripe.RangeQueryParams{GreaterThanOrEqual: since.Unix()}}
	params.Limit = stripe.Int64(100)
	for pi, err := range p.c.V1PaymentIntents.List(ctx, params) {
		if err != nil {
			return providerError(err)
		}
		if pi.Metadata[metaIntent] == "" {
			continue
		}
		if err := fn(toCharge(pi)); err != nil {
			return err
		}
	}
	return nil
}

// Payout implements payment.Provider with a Connect transfer.
func (p *Provider) Payout(ctx context.Context, req payment.PayoutRequest) (payment.ProviderPayout, error) {
	params := &stripe.TransferCreateParams{
		Amount: stripe.Int64(req.Amount), Currency: stripe.String(strings.ToLower(req.Currency)), Destination: stripe.String(req.Destination),
		Metadata:      map[string]string{metaPayout: strconv.FormatInt(req.PayoutID, 10)},
		TransferGroup: stripe.String("payout_" + strconv.FormatInt(req.PayoutID, 10)),
	}
	params.SetIdempotencyKey(req.Key)
	tr, err := p.c.V1Transfers.Create(ctx, params)
	if err != nil {
		return payment.ProviderPayout{}, providerError(err)
	}
	return toPayout(tr), nil
}

func toPayout(tr *stripe.Transfer) payment.ProviderPayout {
	po := payment.ProviderPayout{Ref: tr.ID, Status: payment.PayoutPaid, Amount: tr.Amount, Currency: strings.ToUpper(string(tr.Currency)),
		Created: time.Unix(tr.Created, 0).UTC()}
	if v := tr.Metadata[metaPayout]; v != "" {
		po.PayoutID, _ = strconv.ParseInt(v, 10, 64)
	}
	if tr.Reversed {
		po.Status, po.FailureReason = payment.PayoutFailed, "reversed"
	}
	return po
}

// GetPayout implements payment.Provider.
func (p *Provider) GetPayout(ctx context.Context, ref string) (payment.ProviderPayout, error) {
	tr, err := p.c.V1Transfers.Retrieve(ctx, ref, nil)
	if err != nil {
		return payment.ProviderPayout{}, providerError(err)
	}
	return toPayout(tr), nil
}

// ListPayouts implements payment.Provider.
func (p *Provider) ListPayouts(ctx context.Context, since time.Time, fn func(payment.ProviderPayout) error) error {
	params := &stripe.TransferListParams{CreatedRange: &stripe.RangeQueryParams{GreaterThanOrEqual: since.Unix()}}
	params.Limit = stripe.Int64(100)
	for tr, err := range p.c.V1Transfers.List(ctx, params) {
		if err != nil {
			return providerError(err)
		}
		if tr.Metadata[metaPayout] == "" {
			continue
		}
		if err := fn(toPayout(tr)); err != nil {
			return err
		}
	}
	return nil
}

// ParseWebhook implements payment.Provider. Stripe's library checks the
// timestamp against the real clock, so now is not used.
func (p *Provider) ParseWebhook(payload []byte, h http.Header, _ time.Time, tolerance time.Duration) (payment.Event, error) {
	ev, err := webhook.ConstructEventWithOptions(payload, h.Get("Stripe-Signature"), p.cfg.WebhookSecret,
		webhook.ConstructEventOptions{Tolerance: tolerance, IgnoreAPIVersionMismatch: true})
	switch {
	case errors.Is(err, webhook.ErrTooOld):
		return payment.Event{}, payment.ErrStaleSignature
	case errors.Is(err, webhook.ErrNotSigned), errors.Is(err, webhook.ErrInvalidHeader):
		return payment.Event{}, payment.ErrBadSignatureHeader
	case errors.Is(err, webhook.ErrNoValidSignature):
		return payment.Event{}, payment.ErrBadSignature
	case err != nil:
		return payment.Event{}, errs.E(errs.Invalid, "webhook body is not a Stripe event")
	}
	if ev.ID == "" || len(ev.ID) > 255 {
		return payment.Event{}, errs.E(errs.Invalid, "webhook body is not a Stripe event")
	}
	out := payment.Event{ID: ev.ID, Type: string(ev.Type), Created: time.Unix(ev.Created, 0).UTC()}
	if ev.Data == nil {
		return out, nil
	}
	switch {
	case strings.HasPrefix(out.Type, "payment_intent."):
		var pi stripe.PaymentIntent
		if err := json.Unmarshal(ev.Data.Raw, &pi); err != nil || pi.ID == "" {
			return payment.Event{}, errs.E(errs.Invalid, "webhook data is not a PaymentIntent")
		}
		if pi.Metadata[metaIntent] == "" {
			return out, nil // not Blueprint's
		}
		ch := toCharge(&pi)
		if out.Type == "payment_intent.payment_failed" && pi.Metadata[metaFlow] == "server" {
			ch.Status = payment.Failed
		}
		out.Charge = &ch
	case strings.HasPrefix(out.Type, "transfer."):
		var tr stripe.Transfer
		if err := json.Unmarshal(ev.Data.Raw, &tr); err != nil || tr.ID == "" {
			return payment.Event{}, errs.E(errs.Invalid, "webhook data is not a Transfer")
		}
		if tr.Metadata[metaPayout] == "" {
			return out, nil
		}
		po := toPayout(&tr)
		out.Payout = &po
	}
	return out, nil
}
