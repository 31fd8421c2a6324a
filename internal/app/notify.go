package app

import (
	"context"
	"encoding/json"
	"html/template"
	"net"
	"net/http"
	"net/mail"
	"strings"
	"time"

	"github.com/blueprint-media/blueprint/internal/archive"
	"github.com/blueprint-media/blueprint/internal/notify"
	"github.com/blueprint-media/blueprint/internal/realtime"
	"github.com/blueprint-media/blueprint/internal/web"
)

// startNotify starts the notification service: the connection registry
// and router of the real-time dispatcher (on the broker's core NATS; the
// router also broadcasts new uploads on the creators' channels), the
// "notify" event consumer, the delivery loops (live, fan-out, email,
// push, digests) in the background, and a module that gives every
// frontend instance its own live-connection hub and the notification API
// and page. The operator's view is /notify on the admin listener.
func (a *App) startNotify(ctx context.Context) error {
	cfg := a.cfg.Notify
	if !cfg.Enabled {
		a.logger.Info("notifications disabled (notify.enabled is false)")
		return nil
	}
	logger := a.logger.With("component", "notify")
	nc := a.q.Conn()
	rtm := realtime.NewMetrics(a.reg)
	registry := realtime.NewRegistry(nc, rtm, logger)
	if err := registry.Start(a.bgCtx); err != nil {
		return err
	}
	a.onStop(func(context.Context) error { registry.Stop(); return nil })
	router := realtime.NewRouter(nc, registry, rtm)

	base := notifyBaseURL(a.cfg.Notify.BaseURL, a.cfg.PublicURL, a.cfg.HTTPAddr)
	var mailer *notify.Mailer
	emailStatus := "disabled: notify.smtp.host is not set"
	if cfg.SMTP.Host != "" {
		m, err := notify.NewMailer(notify.SMTPConfig{
			Host: cfg.SMTP.Host, Port: cfg.SMTP.Port, From: cfg.SMTP.From, User: cfg.SMTP.User,
			Password: cfg.SMTP.Password, TLS: cfg.SMTP.TLS, Timeout: cfg.SMTP.Timeout,
		})
		if err != nil {
			return err
		}
		mailer = m
		emailStatus = "on: " + m.Describe()
		logger.Info("email notifications on", "via", m.Describe())
	} else {
		logger.Info("email notifications disabled: notify.smtp.host is not set")
	}
	var pusher *notify.Pusher
	pushStatus := "disabled: notify.push.enabled is false"
	if cfg.Push.Enabled {
		pub, priv := cfg.Push.VAPIDPublicKey, cfg.Push.VAPIDPrivateKey
		if pub == "" {
			var err error
			if pub, priv, err = notify.LoadVAPIDKeys(a.cfg.DataDir); err != nil {
				return err
			}
		}
		subject := cfg.Push.Subject
		if subject == "" {
			if from, err := mail.ParseAddress(cfg.SMTP.From); err == nil {
				subject = "mailto:" + from.Address
			}
		}
		p, err := notify.NewPusher(notify.PushConfig{
			Subject: subject, PublicKey: pub, PrivateKey: priv,
			AllowPrivateEndpoints: cfg.Push.AllowPrivateEndpoints, MaxSubscriptionsPerUser: cfg.Push.MaxSubscriptionsPerUser,
		})
		if err != nil {
			return err
		}
		pusher = p
		pushStatus = "on"
	}

	svc := notify.New(notify.Config{
		BaseURL: base, FanoutPage: cfg.FanoutPage, MaxAttempts: cfg.MaxAttempts, DigestCheck: cfg.DigestCheck,
	}, notify.Deps{
		DB: a.db, IDs: a.ids, Media: a.media, Router: router, Mailer: mailer, Pusher: pusher,
		Logger: logger, Registerer: a.reg,
		// The inbox pages through archived days too (archive.*): kept even
		// with archive.after = 0, so days archived earlier still show.
		Archive: archive.NewReader(a.db, a.blobs),
	})
	// Events reach the service through the dispatcher (route "notify",
	// user-facing lane).
	if err := a.subscribe(notify.ConsumerName, svc.Handle); err != nil {
		return err
	}
	a.bg.Go(func() { svc.Run(a.bgCtx) })

	pages, err := web.NewPages()
	if err != nil {
		return err
	}
	module := &notify.Module{
		S: svc, Pages: pages, Logger: logger, MaxBodyBytes: int64(a.cfg.Gateway.MaxBodyBytes),
		NC: nc, Metrics: rtm, Context: a.bgCtx,
		Hub: realtime.HubConfig{
			MaxConnsPerUser: cfg.Realtime.MaxConnsPerUser, MaxConns: cfg.Realtime.MaxConns,
			Heartbeat: cfg.Realtime.Heartbeat, PresenceInterval: cfg.Realtime.PresenceInterval,
		},
	}
	a.modules = append(a.modules, module)
	a.onStop(module.Stop)

	status := func(r *http.Request) notifyStatus {
		st := notifyStatus{Email: emailStatus, Push: pushStatus, Registry: registry.Instances(), LinkBase: base, Time: time.Now().UTC()}
		for _, h := range module.Hubs() {
			st.Hubs = append(st.Hubs, h.Stats())
		}
		if s, err := svc.Stats(r.Context()); err == nil {
			st.Deliveries = &s
		} else {
			st.Error = err.Error()
		}
		return st
	}
	a.adminMux.HandleFunc("GET /notify.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(status(r))
	})
	a.adminMux.HandleFunc("GET /notify", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		notifyPage.Execute(w, status(r))
	})
	return nil
}

// notifyBaseURL is where links in emails and pushes point: notify.base_url,
// else public_url, else the gateway's http_addr on localhost.
func notifyBaseURL(base, public, httpAddr string) string {
	for _, u := range []string{base, public} {
		if u != "" {
			return strings.TrimSuffix(u, "/")
		}
	}
	host, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return "http://localhost"
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// notifyStatus is the operator's view of the notification service in this
// process.
type notifyStatus struct {
	Email      string                  `json:"email"`
	Push       string                  `json:"push"`
	LinkBase   string                  `json:"link_base"`
	Hubs       []realtime.HubStats     `json:"hubs"`
	Registry   []realtime.InstanceInfo `json:"registry"`
	Deliveries *notify.Stats           `json:"deliveries,omitempty"`
	Error      string                  `json:"error,omitempty"`
	Time       time.Time               `json:"time"`
}

var notifyPage = template.Must(template.New("notify").Parse(`<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>Blueprint · notifications</title>
<style>body{font:15px system-ui,sans-serif;margin:2rem;color:#1d1d1f}table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ddd;padding:.3rem .7rem;text-align:left}</style>
<h1>Notifications — this process</h1>
<p>Email: <b>{{.Email}}</b><br>Web Push: <b>{{.Push}}</b><br>Links start with {{.LinkBase}}</p>
<h2>Live connections held here</h2>
<table><tr><th>instance</th><th>ID</th><th>users</th><th>connections</th><th>channels</th><th>delivered</th><th>dropped</th><th>refused</th></tr>
{{range .Hubs}}<tr><td>{{.Name}}</td><td>{{.ID}}</td><td>{{.Users}}</td><td>{{.Connections}}</td><td>{{.Channels}}</td><td>{{.Delivered}}</td><td>{{.Dropped}}</td><td>{{.Refused}}</td></tr>{{end}}</table>
<h2>Connection registry (all instances)</h2>
<table><tr><th>instance</th><th>ID</th><th>users</th><th>expires</th></tr>
{{range .Registry}}<tr><td>{{.Name}}</td><td>{{.ID}}</td><td>{{.Users}}</td><td>{{.Expires.Format "15:04:05"}}</td></tr>{{end}}</table>
{{with .Deliveries}}<h2>Deliveries</h2>
<table><tr><th>notifications</th><td>{{.Notifications}} ({{.Unread}} unread)</td></tr>
<tr><th>live hints waiting</th><td>{{.LiveWaiting}}</td></tr><tr><th>upload fan-outs in progress</th><td>{{.FanoutJobs}}</td></tr>
<tr><th>emails by status</th><td>{{range $k, $v := .Emails}}{{$k}}: {{$v}} {{end}}</td></tr>
<tr><th>email items by status</th><td>{{range $k, $v := .EmailItems}}{{$k}}: {{$v}} {{end}}</td></tr>
<tr><th>pushes by status</th><td>{{range $k, $v := .Pushes}}{{$k}}: {{$v}} {{end}}</td></tr>
<tr><th>push subscriptions</th><td>{{.Subscriptions}}</td></tr></table>{{end}}
{{with .Error}}<p>{{.}}</p>{{end}}
<p><a href="/notify.json">JSON</a> · <a href="/">status</a></p>`))
