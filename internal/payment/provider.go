package payment

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Provider is a payment service provider: the built-in test provider
// (package testprovider) or Stripe (package stripeprovider). Every call
// that changes something at the provider carries an idempotency key that
// Blueprint derives from its own record (an intent's or a payout's ID), so
// a call repeated after a crash or a lost answer returns the first result
// and never charges twice.
//
// Errors: a *ProviderError with Temporary set means "the outcome is
// unknown or the provider is unavailable; call again with the same key".
// Any other error is definitive for that call.
type Provider interface {
	// Name is the provider's name in account codes and the webhook path.
	Name() string
	// CheckPaymentMethod validates a payment method reference (a token
	// such as pm_card_visa or a Stripe PaymentMethod ID, never card data)
	// before anything is recorded. Empty means "the payer will enter the
	// card in the provider's hosted fields"; providers without hosted
	// fields refuse it.
	CheckPaymentMethod(pm string) error
	// CheckDestination validates a payout destination.
	CheckDestination(dest string) error
	// DefaultDestination is where creatorID is paid out when they did not
	// register a destination; "" means they must register one.
	DefaultDestination(creatorID int64) string

	// Charge creates and confirms a payment. A declined card is a Charge
	// in state Failed, not an error.
	Charge(ctx context.Context, req ChargeRequest) (Charge, error)
	// GetCharge returns the provider's current view of a payment.
	GetCharge(ctx context.Context, ref string) (Charge, error)
	// CompleteAction continues a payment that requires action: with the
	// customer's answer to the test provider's authentication, or, for
	// hosted fields, by confirming with the payment method the browser
	// created (pm) or just reading the state the browser left it in.
	CompleteAction(ctx context.Context, ref, key string, approve bool, pm string) (Charge, error)
	// CancelCharge cancels a payment that has not started processing.
	CancelCharge(ctx context.Context, ref, key string) (Charge, error)
	// ListCharges calls fn for every payment created since since.
	ListCharges(ctx context.Context, since time.Time, fn func(Charge) error) error

	// Payout sends money from the platform's provider balance to a
	// creator's destination.
	Payout(ctx context.Context, req PayoutRequest) (ProviderPayout, error)
	// GetPayout returns the provider's current view of a payout.
	GetPayout(ctx context.Context, ref string) (ProviderPayout, error)
	// ListPayouts calls fn for every payout created since since.
	ListPayouts(ctx context.Context, since time.Time, fn func(ProviderPayout) error) error

	// ParseWebhook verifies a webhook's signature and timestamp (at most
	// tolerance away from now) and decodes it.
	ParseWebhook(payload []byte, h http.Header, now time.Time, tolerance time.Duration) (Event, error)
	// Client describes the provider to the wallet page.
	Client() ClientInfo
}

// ChargeRequest asks a provider for a payment.
type ChargeRequest struct {
	Key           string // idempotency key, the same on every retry
	IntentID      int64  // Blueprint's intent, sent as metadata
	Amount        int64
	Currency      string
	PaymentMethod string
	Description   string
	OffSession    bool // a renewal charged without the customer present
	// SaveForRenewal asks the provider to keep the payment method for
	// later off-session charges (a membership's first payment).
	SaveForRenewal bool
	// Customer is the provider's customer the saved payment method
	// belongs to (renewals; "" when the provider needs none).
	Customer string
}

// Charge is a provider's view of a payment. Status is one of
// RequiresAction, Processing, Succeeded, Failed, Canceled.
type Charge struct {
	Ref           string
	IntentID      int64 // from the metadata Blueprint sent; 0 if absent
	Status        State
	Amount        int64
	Currency      string
	ClientSecret  string
	NextAction    string // "authenticate" (test provider) or "hosted_fields" (Stripe)
	FailureReason string
	Created       time.Time
	// PaymentMethod and Customer identify what a SaveForRenewal payment
	// saved; empty when the provider needs nothing beyond the request's
	// payment method.
	PaymentMethod string
	Customer      string
}

// PayoutState is where a payout is.
type PayoutState string

// Payout states. pending means recorded and reserved in the ledger, the
// provider's answer not known yet.
const (
	PayoutPending   PayoutState = "pending"
	PayoutInTransit PayoutState = "in_transit"
	PayoutPaid      PayoutState = "paid"
	PayoutFailed    PayoutState = "failed"
)

// Final reports whether s is final.
func (s PayoutState) Final() bool { return s == PayoutPaid || s == PayoutFailed }

// PayoutRequest asks a provider to pay a creator.
type PayoutRequest struct {
	Key         string
	PayoutID    int64
	Amount      int64
	Currency    string
	Destination string
}

// ProviderPayout is a provider's view of a payout.
type ProviderPayout struct {
	Ref           string
	PayoutID      int64
	Status        PayoutState
	Amount        int64
	Currency      string
	FailureReason string
	Created       time.Time
}

// Event is a verified webhook from a provider. Exactly one of Charge and
// Payout is set for the events Blueprint acts on; others have neither.
type Event struct {
	ID      string
	Type    string
	Created time.Time
	Charge  *Charge
	Payout  *ProviderPayout
}

// ClientInfo is what the wallet page needs to collect a payment.
type ClientInfo struct {
	Provider       string     `json:"provider"`
	PublishableKey string     `json:"publishable_key,omitempty"`
	TestCards      []TestCard `json:"test_cards,omitempty"`
}

// TestCard is one of the test provider's payment methods.
type TestCard struct {
	PaymentMethod string `json:"payment_method"`
	Label         string `json:"label"`
}

// ProviderError is an error a provider answered with, or failed to.
type ProviderError struct {
	Code      string // e.g. invalid_request, idempotency_conflict, unavailable
	Message   string
	Temporary bool
}

func (e *ProviderError) Error() string {
	return fmt.Sprintf("payment provider: %s: %s", e.Code, e.Message)
}

// Temporary reports whether err means "outcome unknown; retry with the
// same key".
func Temporary(err error) bool {
	var pe *ProviderError
	if errors.As(err, &pe) {
		return pe.Temporary
	}
	// Anything that is not an answer from the provider (network errors,
	// context deadlines) leaves the outcome unknown.
	return err != nil
}
