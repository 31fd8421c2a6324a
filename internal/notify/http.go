package notify

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/blueprint-media/blueprint/internal/account"
	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/httpx"
	"github.com/blueprint-media/blueprint/internal/idgen"
	"github.com/blueprint-media/blueprint/internal/realtime"
	"github.com/blueprint-media/blueprint/internal/web"
)

// Module serves the notification API, the live stream and the
// notifications page on every frontend instance (frontend.Module). Each
// instance gets its own realtime.Hub, registered under its own instance ID.
type Module struct {
	S            *Service
	Pages        *web.Pages
	Logger       *slog.Logger
	MaxBodyBytes int64
	NC           *nats.Conn         // nil: no live stream
	Hub          realtime.HubConfig // per-instance hub settings; Name is set per instance
	Metrics      *realtime.Metrics
	Context      context.Context // the hubs close their streams when it ends

	mu   sync.Mutex
	hubs []*realtime.Hub
}

// Routes mounts the routes for one frontend instance (frontend.Module).
func (m *Module) Routes(mux *http.ServeMux, instance string) {
	var hub *realtime.Hub
	if m.NC != nil {
		cfg := m.Hub
		cfg.Name = instance
		h := realtime.NewHub(cfg, m.NC, m.Metrics, m.Logger)
		ctx := m.Context
		if ctx == nil {
			ctx = context.Background()
		}
		if err := h.Start(ctx); err != nil {
			m.Logger.Error("notify: live stream unavailable on this instance", "instance", instance, "err", err)
		} else {
			hub = h
			m.mu.Lock()
			m.hubs = append(m.hubs, h)
			m.mu.Unlock()
		}
	}
	mux.HandleFunc("GET /api/v1/notifications", m.list)
	mux.HandleFunc("POST /api/v1/notifications/read", m.markRead)
	mux.HandleFunc("GET /api/v1/notifications/preferences", m.getPrefs)
	mux.HandleFunc("PUT /api/v1/notifications/preferences", m.putPrefs)
	mux.HandleFunc("GET /api/v1/notifications/stream", func(w http.ResponseWriter, r *http.Request) { m.stream(w, r, hub) })
	mux.HandleFunc("GET /api/v1/push/key", m.pushKey)
	mux.HandleFunc("POST /api/v1/push/subscriptions", m.subscribe)
	mux.HandleFunc("DELETE /api/v1/push/subscriptions", m.unsubscribe)
	mux.HandleFunc("GET /notifications", m.page)
	mux.HandleFunc("POST /notifications/read", m.pageRead)
	mux.HandleFunc("POST /notifications/preferences", m.pagePrefs)
}

// Hubs returns the hubs of the instances mounted so far.
func (m *Module) Hubs() []*realtime.Hub {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*realtime.Hub(nil), m.hubs...)
}

// Stop stops the hubs: their streams end and their instances leave the
// registries.
func (m *Module) Stop(ctx context.Context) error {
	var first error
	for _, h := range m.Hubs() {
		if err := h.Stop(ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (m *Module) fail(w http.ResponseWriter, r *http.Request, err error) {
	httpx.Error(w, r, m.Logger, err)
}

func caller(r *http.Request) (account.Identity, error) {
	id := account.FromContext(r.Context())
	if id.UserID == 0 {
		return id, errs.E(errs.Unauthorized, "log in first")
	}
	return id, nil
}

// listOptions reads ?before=, ?limit= and ?unread=.
func listOptions(q url.Values) (ListOptions, error) {
	var o ListOptions
	if c := q.Get("before"); c != "" {
		id, err := idgen.Parse(c)
		if err != nil {
			return o, errs.E(errs.Invalid, "bad cursor %q", c)
		}
		o.Before = id
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 100 {
			return o, errs.E(errs.Invalid, "limit must be 1..100")
		}
		o.Limit = n
	}
	switch q.Get("unread") {
	case "", "0", "false":
	case "1", "true":
		o.UnreadOnly = true
	default:
		return o, errs.E(errs.Invalid, "unread must be true or false")
	}
	return o, nil
}

type listResponse struct {
	Notifications []Notification `json:"notifications"`
	Unread        int            `json:"unread"`
	Next          string         `json:"next,omitempty"`
}

func (m *Module) list(w http.ResponseWriter, r *http.Request) {
	me, err := caller(r)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	o, err := listOptions(r.URL.Query())
	if err != nil {
		m.fail(w, r, err)
		return
	}
	items, next, err := m.S.List(r.Context(), me.UserID, o)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	unread, err := m.S.Unread(r.Context(), me.UserID)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	out := listResponse{Notifications: items, Unread: unread}
	if next != 0 {
		out.Next = strconv.FormatInt(next, 10)
	}
	httpx.JSON(w, http.StatusOK, out)
}

func (m *Module) markRead(w http.ResponseWriter, r *http.Request) {
	me, err := caller(r)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	var in struct {
		IDs []string `json:"ids"`
		All bool     `json:"all"`
	}
	if err := httpx.Decode(r, m.MaxBodyBytes, &in); err != nil {
		m.fail(w, r, err)
		return
	}
	if !in.All && len(in.IDs) == 0 {
		m.fail(w, r, errs.E(errs.Invalid, "give ids or all: true"))
		return
	}
	ids, err := parseIDs(in.IDs)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	unread, err := m.S.MarkRead(r.Context(), me.UserID, ids, in.All)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	httpx.JSON(w, http.StatusOK, map[string]int{"unread": unread})
}

// preferencesResponse adds what the server offers to the user's choices.
type preferencesResponse struct {
	Preferences
	EmailEnabled bool `json:"email_enabled"`
	PushEnabled  bool `json:"push_enabled"`
}

func (m *Module) getPrefs(w http.ResponseWriter, r *http.Request) {
	me, err := caller(r)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	p, err := m.S.Preferences(r.Context(), me.UserID)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	httpx.JSON(w, http.StatusOK, preferencesResponse{Preferences: p, EmailEnabled: m.S.EmailEnabled(), PushEnabled: m.S.PushEnabled()})
}

func (m *Module) putPrefs(w http.ResponseWriter, r *http.Request) {
	me, err := caller(r)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	b, err := readBody(r, m.MaxBodyBytes)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	p, err := ParsePreferences(b)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	if err := m.S.SetPreferences(r.Context(), me.UserID, p); err != nil {
		m.fail(w, r, err)
		return
	}
	m.getPrefs(w, r)
}

func readBody(r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, limit))
	if err != nil {
		return nil, errs.E(errs.Invalid, "request body over %d bytes or unreadable", limit)
	}
	return b, nil
}

func (m *Module) stream(w http.ResponseWriter, r *http.Request, hub *realtime.Hub) {
	me, err := caller(r)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	if hub == nil {
		m.fail(w, r, errs.E(errs.Unavailable, "live updates are not available on this server"))
		return
	}
	if err := hub.Serve(w, r, me.UserID, m.S.Backlog); err != nil {
		if errs.KindOf(err) == errs.TooMany || errs.KindOf(err) == errs.Unavailable {
			w.Header().Set("Retry-After", "5")
		}
		m.fail(w, r, err)
	}
}

func (m *Module) pushKey(w http.ResponseWriter, r *http.Request) {
	if !m.S.PushEnabled() {
		m.fail(w, r, errs.E(errs.NotFound, "web push is not enabled on this server"))
		return
	}
	httpx.JSON(w, http.StatusOK, map[string]string{"key": m.S.Pusher().PublicKey()})
}

func (m *Module) subscribe(w http.ResponseWriter, r *http.Request) {
	me, err := caller(r)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	if !m.S.PushEnabled() {
		m.fail(w, r, errs.E(errs.Unavailable, "web push is not enabled on this server"))
		return
	}
	b, err := readBody(r, min(m.MaxBodyBytes, 16<<10))
	if err != nil {
		m.fail(w, r, err)
		return
	}
	sub, err := ParseSubscription(b, m.S.Pusher().cfg.AllowPrivateEndpoints)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	if err := m.S.AddSubscription(r.Context(), me.UserID, sub, r.UserAgent()); err != nil {
		m.fail(w, r, err)
		return
	}
	httpx.JSON(w, http.StatusCreated, map[string]string{"endpoint": sub.Endpoint})
}

func (m *Module) unsubscribe(w http.ResponseWriter, r *http.Request) {
	me, err := caller(r)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	var in struct {
		Endpoint string `json:"endpoint"`
	}
	if err := httpx.Decode(r, min(m.MaxBodyBytes, 16<<10), &in); err != nil {
		m.fail(w, r, err)
		return
	}
	if in.Endpoint == "" || len(in.Endpoint) > maxEndpointLen {
		m.fail(w, r, errs.E(errs.Invalid, "endpoint is required"))
		return
	}
	if err := m.S.RemoveSubscription(r.Context(), me.UserID, in.Endpoint); err != nil {
		m.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// ---- The page ----

type prefRow struct {
	Type, Label      string
	Web, Email, Push bool
}

type pageData struct {
	User         account.Identity
	Items        []Notification
	Unread       int
	Next         string
	Rows         []prefRow
	Digest       string
	EmailEnabled bool
	PushEnabled  bool
	Saved        bool
}

func (m *Module) page(w http.ResponseWriter, r *http.Request) {
	me := account.FromContext(r.Context())
	if me.UserID == 0 {
		http.Redirect(w, r, "/login?next=/notifications", http.StatusSeeOther)
		return
	}
	o, err := listOptions(r.URL.Query())
	if err != nil {
		o = ListOptions{}
	}
	o.Limit = 50
	items, next, err := m.S.List(r.Context(), me.UserID, o)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	unread, err := m.S.Unread(r.Context(), me.UserID)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	p, err := m.S.Preferences(r.Context(), me.UserID)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	d := pageData{User: me, Items: items, Unread: unread, Digest: p.EmailDigest,
		EmailEnabled: m.S.EmailEnabled(), PushEnabled: m.S.PushEnabled(), Saved: r.URL.Query().Get("saved") == "1"}
	if next != 0 {
		d.Next = strconv.FormatInt(next, 10)
	}
	for _, t := range Types() {
		c := p.Types[t]
		d.Rows = append(d.Rows, prefRow{Type: t, Label: TypeLabel(t), Web: c[ChannelWeb], Email: c[ChannelEmail], Push: c[ChannelPush]})
	}
	m.Pages.Render(w, http.StatusOK, "notifications", d)
}

func (m *Module) parseForm(w http.ResponseWriter, r *http.Request) (account.Identity, bool) {
	me := account.FromContext(r.Context())
	if me.UserID == 0 {
		http.Redirect(w, r, "/login?next=/notifications", http.StatusSeeOther)
		return me, false
	}
	r.Body = http.MaxBytesReader(w, r.Body, m.MaxBodyBytes)
	if err := r.ParseForm(); err != nil {
		m.fail(w, r, errs.E(errs.Invalid, "bad form: %v", err))
		return me, false
	}
	return me, true
}

func (m *Module) pageRead(w http.ResponseWriter, r *http.Request) {
	me, ok := m.parseForm(w, r)
	if !ok {
		return
	}
	all := r.PostForm.Get("all") == "1"
	ids, err := parseIDs(r.PostForm["id"])
	if err != nil {
		m.fail(w, r, err)
		return
	}
	if _, err := m.S.MarkRead(r.Context(), me.UserID, ids, all); err != nil {
		m.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/notifications", http.StatusSeeOther)
}

func (m *Module) pagePrefs(w http.ResponseWriter, r *http.Request) {
	me, ok := m.parseForm(w, r)
	if !ok {
		return
	}
	// A checkbox that is not ticked is not sent: every switch absent from
	// the form is off.
	p := Preferences{EmailDigest: r.PostForm.Get("email_digest"), Types: map[string]map[string]bool{}}
	for _, t := range Types() {
		p.Types[t] = map[string]bool{}
		for _, c := range Channels() {
			p.Types[t][c] = r.PostForm.Get(t+"."+c) == "on"
		}
	}
	if err := m.S.SetPreferences(r.Context(), me.UserID, p); err != nil {
		m.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/notifications?saved=1#preferences", http.StatusSeeOther)
}
