package config

import (
	"net/url"
	"slices"
	"time"

	"github.com/blueprint-media/blueprint/internal/payment/currency"
)

// Payment configures the payment service: tips, memberships, creator
// balances and payouts. Amounts are integers in the minor unit of the
// payment's currency (cents for USD, yen for JPY).
type Payment struct {
	Enabled              bool          `yaml:"enabled" help:"run the payment service in the processes whose roles need it"`
	Provider             string        `yaml:"provider" help:"payment provider: test (built-in, with test cards) or stripe"`
	Currencies           []string      `yaml:"currencies" help:"ISO 4217 codes payments may use"`
	DefaultCurrency      string        `yaml:"default_currency" help:"currency of membership plans that do not name one; must be in payment.currencies"`
	MinAmount            int64         `yaml:"min_amount" help:"smallest payment, in minor units of its currency"`
	MaxAmount            int64         `yaml:"max_amount" help:"largest single payment, in minor units of its currency"`
	DailyLimit           int64         `yaml:"daily_limit" help:"most one payer may pay per UTC day and currency, in minor units (failed and canceled payments do not count)"`
	FeeBasisPoints       int64         `yaml:"fee_bps" help:"platform fee taken from each payment, in basis points (500 = 5 %)"`
	MembershipPrice      int64         `yaml:"membership_price" help:"monthly membership price of creators who set no plan, in minor units of default_currency"`
	MembershipPeriod     time.Duration `yaml:"membership_period" help:"length of one paid membership period"`
	MembershipRetry      time.Duration `yaml:"membership_retry" help:"pause before retrying a failed renewal"`
	MembershipMaxRetries int           `yaml:"membership_max_retries" help:"failed renewals in a row before a membership is canceled"`
	PayoutMin            int64         `yaml:"payout_min" help:"smallest payout a creator may request, in minor units"`
	ActionTimeout        time.Duration `yaml:"action_timeout" help:"how long a payment may wait for the customer (authentication, hosted card form) before it is canceled"`
	RecoveryAfter        time.Duration `yaml:"recovery_after" help:"age after which a payment or payout interrupted before the provider answered is driven to the end by the background job"`
	PollInterval         time.Duration `yaml:"poll_interval" help:"first pause before asking the provider about a payment still settling (doubles up to 32x)"`
	ReconcileInterval    time.Duration `yaml:"reconcile_interval" help:"period of the reconciliation of the ledger with the provider"`
	ReconcileWindow      time.Duration `yaml:"reconcile_window" help:"how far back reconciliation compares payments and payouts"`
	IdempotencyTTL       time.Duration `yaml:"idempotency_ttl" help:"how long idempotency keys and their stored responses are kept (at least 24h)"`
	WebhookTolerance     time.Duration `yaml:"webhook_tolerance" help:"largest clock difference accepted in the timestamp of a signed webhook"`
	WebhookSecret        string        `yaml:"webhook_secret" secret:"true" help:"key the built-in test provider signs its webhooks with (default: derived from secret)"`
	WebhookMaxAttempts   int           `yaml:"webhook_max_attempts" help:"delivery attempts of an outgoing webhook to a creator's endpoint before it is given up"`
	WebhookTimeout       time.Duration `yaml:"webhook_timeout" help:"time limit of one outgoing webhook delivery"`
	WebhookAllowPrivate  bool          `yaml:"webhook_allow_private" help:"let creators' webhook endpoints be plain http and on loopback or private addresses (development and tests only)"`
	MaxWebhookEndpoints  int           `yaml:"max_webhook_endpoints" help:"webhook endpoints one creator may register"`

	TestProvider PaymentTestProvider `yaml:"test_provider"`
	Stripe       PaymentStripe       `yaml:"stripe"`
}

// PaymentTestProvider configures the built-in test payment provider.
type PaymentTestProvider struct {
	SettleDelay time.Duration `yaml:"settle_delay" help:"time a test card payment spends processing before it settles"`
	WebhookURL  string        `yaml:"webhook_url" help:"URL the test provider posts its webhooks to (default: this process's gateway, else delivered in-process)"`
}

// PaymentStripe configures the Stripe adapter. Card data never reaches
// Blueprint: browsers enter it in Stripe's hosted fields.
type PaymentStripe struct {
	SecretKey      string `yaml:"secret_key" secret:"true" help:"Stripe secret API key (sk_live_... or sk_test_...)"`
	PublishableKey string `yaml:"publishable_key" help:"Stripe publishable key the wallet page loads Stripe's hosted fields with"`
	WebhookSecret  string `yaml:"webhook_secret" secret:"true" help:"signing secret of the Stripe webhook endpoint (whsec_...)"`
	APIURL         string `yaml:"api_url" help:"base URL of the Stripe API (default: Stripe's; set for a proxy or a test server)"`
}

func defaultPayment() Payment {
	return Payment{
		Enabled:              true,
		Provider:             "test",
		Currencies:           []string{"USD", "EUR", "GBP", "JPY"},
		DefaultCurrency:      "USD",
		MinAmount:            50,
		MaxAmount:            100_000,
		DailyLimit:           500_000,
		FeeBasisPoints:       500,
		MembershipPrice:      500,
		MembershipPeriod:     30 * 24 * time.Hour,
		MembershipRetry:      24 * time.Hour,
		MembershipMaxRetries: 3,
		PayoutMin:            1_000,
		ActionTimeout:        time.Hour,
		RecoveryAfter:        10 * time.Second,
		PollInterval:         30 * time.Second,
		ReconcileInterval:    time.Hour,
		ReconcileWindow:      7 * 24 * time.Hour,
		IdempotencyTTL:       72 * time.Hour,
		WebhookTolerance:     5 * time.Minute,
		WebhookMaxAttempts:   12,
		WebhookTimeout:       10 * time.Second,
		MaxWebhookEndpoints:  5,
		TestProvider:         PaymentTestProvider{SettleDelay: 2 * time.Second},
	}
}

// maxPaymentAmount bounds amounts so that fee arithmetic never overflows.
const maxPaymentAmount = 1_000_000_000_000

func (c Payment) validate() error {
	switch c.Provider {
	case "test":
	case "stripe":
		if c.Stripe.SecretKey == "" {
			return keyErr("payment.stripe.secret_key", "required when payment.provider is stripe")
		}
		if c.Stripe.WebhookSecret == "" {
			return keyErr("payment.stripe.webhook_secret", "required when payment.provider is stripe")
		}
		if c.Stripe.PublishableKey == "" {
			return keyErr("payment.stripe.publishable_key", "required when payment.provider is stripe")
		}
	default:
		return keyErr("payment.provider", "unknown provider %q (want test or stripe)", c.Provider)
	}
	if len(c.Currencies) == 0 {
		return keyErr("payment.currencies", "empty")
	}
	for _, code := range c.Currencies {
		if !currency.Valid(code) {
			return keyErr("payment.currencies", "%q is not an ISO 4217 currency code (upper case, e.g. USD)", code)
		}
	}
	if !slices.Contains(c.Currencies, c.DefaultCurrency) {
		return keyErr("payment.default_currency", "%q is not in payment.currencies", c.DefaultCurrency)
	}
	for _, u := range []struct{ key, v string }{{"payment.test_provider.webhook_url", c.TestProvider.WebhookURL}, {"payment.stripe.api_url", c.Stripe.APIURL}} {
		if u.v == "" {
			continue
		}
		p, err := url.Parse(u.v)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return keyErr(u.key, "%q is not an http(s) URL", u.v)
		}
	}
	checks := []struct {
		key string
		ok  bool
	}{
		{"payment.min_amount", c.MinAmount >= 1},
		{"payment.max_amount", c.MaxAmount >= c.MinAmount && c.MaxAmount <= maxPaymentAmount},
		{"payment.daily_limit", c.DailyLimit >= c.MaxAmount && c.DailyLimit <= maxPaymentAmount*100},
		{"payment.fee_bps", c.FeeBasisPoints >= 0 && c.FeeBasisPoints < 10_000},
		{"payment.membership_price", c.MembershipPrice >= c.MinAmount && c.MembershipPrice <= c.MaxAmount},
		{"payment.membership_period", c.MembershipPeriod >= time.Second},
		{"payment.membership_retry", c.MembershipRetry >= 100*time.Millisecond},
		{"payment.membership_max_retries", c.MembershipMaxRetries >= 1 && c.MembershipMaxRetries <= 100},
		{"payment.payout_min", c.PayoutMin >= 1},
		{"payment.action_timeout", c.ActionTimeout >= time.Second},
		{"payment.recovery_after", c.RecoveryAfter >= 100*time.Millisecond},
		{"payment.poll_interval", c.PollInterval >= 10*time.Millisecond},
		{"payment.reconcile_interval", c.ReconcileInterval >= time.Second},
		{"payment.reconcile_window", c.ReconcileWindow >= time.Minute},
		{"payment.idempotency_ttl", c.IdempotencyTTL >= 24*time.Hour},
		{"payment.webhook_tolerance", c.WebhookTolerance >= 10*time.Second && c.WebhookTolerance <= time.Hour},
		{"payment.webhook_max_attempts", c.WebhookMaxAttempts >= 1 && c.WebhookMaxAttempts <= 100},
		{"payment.webhook_timeout", c.WebhookTimeout >= 100*time.Millisecond && c.WebhookTimeout <= time.Minute},
		{"payment.max_webhook_endpoints", c.MaxWebhookEndpoints >= 0 && c.MaxWebhookEndpoints <= 100},
		{"payment.test_provider.settle_delay", c.TestProvider.SettleDelay >= 0},
	}
	for _, ch := range checks {
		if !ch.ok {
			return keyErr(ch.key, "out of range")
		}
	}
	if c.WebhookSecret != "" && len(c.WebhookSecret) < 16 {
		return keyErr("payment.webhook_secret", "at least 16 characters (or leave it empty to derive one from secret)")
	}
	return nil
}
