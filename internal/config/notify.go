package config

import (
	"net/mail"
	"strings"
	"time"
)

// Notify configures the notification service: the in-app inbox, live
// delivery over server-sent events, email and Web Push.
type Notify struct {
	Enabled     bool          `yaml:"enabled" help:"run the notification service in the processes whose roles need it"`
	BaseURL     string        `yaml:"base_url" help:"URL that links in emails and push messages start with (default: public_url)"`
	FanoutPage  int           `yaml:"fanout_page" help:"followers notified per transaction when an upload fans out"`
	MaxAttempts int           `yaml:"max_attempts" help:"tries of an email or push message before it is given up as failed"`
	Realtime    Realtime      `yaml:"realtime"`
	SMTP        SMTP          `yaml:"smtp"`
	Push        Push          `yaml:"push"`
	DigestCheck time.Duration `yaml:"digest_check" help:"how often due email digests (hourly, daily) are assembled"`
}

// Realtime configures the live connections the frontends hold and the
// registry that routes messages to them.
type Realtime struct {
	MaxConnsPerUser  int           `yaml:"max_conns_per_user" help:"live (SSE) connections one user may hold on one frontend instance"`
	MaxConns         int           `yaml:"max_conns" help:"live connections one frontend instance holds at most"`
	Heartbeat        time.Duration `yaml:"heartbeat" help:"period of the keep-alive comment on idle live connections"`
	PresenceInterval time.Duration `yaml:"presence_interval" help:"period at which each frontend republishes which users it holds; registry entries expire after three periods"`
}

// SMTP configures outgoing email. Email is off while host is empty.
type SMTP struct {
	Host     string        `yaml:"host" help:"SMTP server host; empty disables email"`
	Port     int           `yaml:"port" help:"SMTP server port"`
	From     string        `yaml:"from" help:"sender address, e.g. Blueprint <noreply@example.com>"`
	User     string        `yaml:"user" help:"SMTP user name (empty: no authentication)"`
	Password string        `yaml:"password" secret:"true" help:"SMTP password"`
	TLS      string        `yaml:"tls" help:"starttls (required), tls (implicit, port 465), opportunistic or none"`
	Timeout  time.Duration `yaml:"timeout" help:"timeout of one SMTP conversation"`
}

// Push configures Web Push (VAPID).
type Push struct {
	Enabled                 bool   `yaml:"enabled" help:"send Web Push messages to the browsers users subscribed"`
	Subject                 string `yaml:"subject" help:"contact in the VAPID token: a mailto: or https: URL (default: mailto: the smtp.from address)"`
	VAPIDPublicKey          string `yaml:"vapid_public_key" help:"VAPID public key, base64url (default: generated once into data_dir/vapid.json)"`
	VAPIDPrivateKey         string `yaml:"vapid_private_key" secret:"true" help:"VAPID private key, base64url (set together with vapid_public_key)"`
	AllowPrivateEndpoints   bool   `yaml:"allow_private_endpoints" help:"accept push endpoints on loopback and private addresses (tests only; otherwise a request forgery risk)"`
	MaxSubscriptionsPerUser int    `yaml:"max_subscriptions_per_user" help:"push subscriptions kept per user; the oldest is dropped beyond it"`
}

func defaultNotify() Notify {
	return Notify{
		Enabled:     true,
		FanoutPage:  500,
		MaxAttempts: 8,
		Realtime: Realtime{
			MaxConnsPerUser:  8,
			MaxConns:         10_000,
			Heartbeat:        25 * time.Second,
			PresenceInterval: 10 * time.Second,
		},
		SMTP:        SMTP{Port: 587, TLS: "starttls", Timeout: 30 * time.Second},
		Push:        Push{Enabled: true, MaxSubscriptionsPerUser: 10},
		DigestCheck: time.Minute,
	}
}

func (c Notify) validate() error {
	checks := []struct {
		key string
		ok  bool
	}{
		{"notify.fanout_page", c.FanoutPage >= 1 && c.FanoutPage <= 10_000},
		{"notify.max_attempts", c.MaxAttempts >= 1 && c.MaxAttempts <= 100},
		{"notify.realtime.max_conns_per_user", c.Realtime.MaxConnsPerUser >= 1},
		{"notify.realtime.max_conns", c.Realtime.MaxConns >= 1},
		{"notify.realtime.heartbeat", c.Realtime.Heartbeat >= 100*time.Millisecond},
		{"notify.realtime.presence_interval", c.Realtime.PresenceInterval >= 100*time.Millisecond},
		{"notify.smtp.port", c.SMTP.Port >= 1 && c.SMTP.Port <= 65535},
		{"notify.smtp.timeout", c.SMTP.Timeout >= time.Second},
		{"notify.push.max_subscriptions_per_user", c.Push.MaxSubscriptionsPerUser >= 1 && c.Push.MaxSubscriptionsPerUser <= 100},
		{"notify.digest_check", c.DigestCheck >= 100*time.Millisecond},
	}
	for _, ch := range checks {
		if !ch.ok {
			return keyErr(ch.key, "out of range")
		}
	}
	if c.BaseURL != "" && !strings.HasPrefix(c.BaseURL, "http://") && !strings.HasPrefix(c.BaseURL, "https://") {
		return keyErr("notify.base_url", "%q is not an http(s) URL", c.BaseURL)
	}
	switch c.SMTP.TLS {
	case "starttls", "tls", "opportunistic", "none":
	default:
		return keyErr("notify.smtp.tls", "unknown mode %q (want starttls, tls, opportunistic or none)", c.SMTP.TLS)
	}
	if c.SMTP.Host != "" {
		if c.SMTP.From == "" {
			return keyErr("notify.smtp.from", "required when notify.smtp.host is set")
		}
		if _, err := mail.ParseAddress(c.SMTP.From); err != nil {
			return keyErr("notify.smtp.from", "%q is not an email address: %v", c.SMTP.From, err)
		}
		if c.SMTP.Password != "" && c.SMTP.User == "" {
			return keyErr("notify.smtp.user", "required when notify.smtp.password is set")
		}
	}
	if (c.Push.VAPIDPublicKey == "") != (c.Push.VAPIDPrivateKey == "") {
		return keyErr("notify.push.vapid_private_key", "set both VAPID keys or neither")
	}
	if s := c.Push.Subject; s != "" && !strings.HasPrefix(s, "mailto:") && !strings.HasPrefix(s, "https://") {
		return keyErr("notify.push.subject", "%q must start with mailto: or https://", s)
	}
	return nil
}
