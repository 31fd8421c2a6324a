package payment

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"

	"github.com/blueprint-media/blueprint/internal/account"
	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/httpx"
	"github.com/blueprint-media/blueprint/internal/idgen"
	"github.com/blueprint-media/blueprint/internal/payment/currency"
	"github.com/blueprint-media/blueprint/internal/web"
)

// maxRequestBytes bounds a payment API request body.
const maxRequestBytes = 16 << 10

// Module serves the payment API and the wallet page on every frontend
// instance (it satisfies frontend.Module).
type Module struct {
	s      *Service
	pages  *web.Pages
	videos VideoOwners
	logger *slog.Logger
}

// Module returns the service's HTTP module; pages renders the wallet page
// and videos resolves tips on a video (both may be nil).
func (s *Service) Module(pages *web.Pages, videos VideoOwners) *Module {
	return &Module{s: s, pages: pages, videos: videos, logger: s.logger}
}

// Routes mounts the payment routes on mux. The webhook receiver lives at
// /api/v1/payment-webhooks/{provider}, outside /api/v1/payments/{id}/...,
// so the two patterns cannot overlap.
func (m *Module) Routes(mux *http.ServeMux, instance string) {
	mux.HandleFunc("POST /api/v1/tips", m.tip)
	mux.HandleFunc("GET /api/v1/payments", m.listPayments)
	mux.HandleFunc("GET /api/v1/payments/config", m.config)
	mux.HandleFunc("GET /api/v1/payments/{id}", m.getPayment)
	mux.HandleFunc("POST /api/v1/payments/{id}/confirm", m.confirm)
	mux.HandleFunc("POST /api/v1/payments/{id}/cancel", m.cancel)
	mux.HandleFunc("GET /api/v1/payments/webhook-endpoints", m.listEndpoints)
	mux.HandleFunc("POST /api/v1/payments/webhook-endpoints", m.addEndpoint)
	mux.HandleFunc("DELETE /api/v1/payments/webhook-endpoints/{id}", m.deleteEndpoint)
	mux.HandleFunc("POST /api/v1/payment-webhooks/{provider}", m.webhook)
	mux.HandleFunc("POST /api/v1/memberships", m.subscribe)
	mux.HandleFunc("GET /api/v1/memberships", m.listMemberships)
	mux.HandleFunc("GET /api/v1/memberships/plan", m.getPlan)
	mux.HandleFunc("PUT /api/v1/memberships/plan", m.setPlan)
	mux.HandleFunc("DELETE /api/v1/memberships/{id}", m.cancelMembership)
	mux.HandleFunc("GET /api/v1/creators/{id}/balance", m.balance)
	mux.HandleFunc("GET /api/v1/payouts", m.listPayouts)
	mux.HandleFunc("POST /api/v1/payouts", m.requestPayout)
	mux.HandleFunc("PUT /api/v1/payouts/destination", m.setDestination)
	mux.HandleFunc("GET /wallet", m.wallet)
}

func caller(r *http.Request) int64 { return account.FromContext(r.Context()).UserID }

func (m *Module) fail(w http.ResponseWriter, r *http.Request, err error) {
	httpx.Error(w, r, m.logger, err)
}

// reply writes a mutating call's stored outcome.
func (m *Module) reply(w http.ResponseWriter, r *http.Request, rep Reply, err error) {
	if err != nil {
		m.fail(w, r, err)
		return
	}
	m.s.failpoint("committed")
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	if rep.Replayed {
		h.Set(ReplayedHeader, "true")
	}
	w.WriteHeader(rep.Status)
	w.Write(rep.Body)
	w.Write([]byte("\n"))
}

// mutating checks the caller and reads the key and the JSON body (when v
// is not nil).
func (m *Module) mutating(w http.ResponseWriter, r *http.Request, v any) (int64, string, bool) {
	user := caller(r)
	if user == 0 {
		m.fail(w, r, errs.E(errs.Unauthorized, "log in first"))
		return 0, "", false
	}
	key := r.Header.Get(IdempotencyHeader)
	if err := CheckKey(key); err != nil {
		m.fail(w, r, err)
		return 0, "", false
	}
	if v != nil {
		if err := httpx.Decode(r, maxRequestBytes, v); err != nil {
			m.fail(w, r, err)
			return 0, "", false
		}
	}
	return user, key, true
}

// mutatingID is mutating for a call on one object: it also reads the
// object's ID from the path ({id}), answering 404 when it is not one.
func (m *Module) mutatingID(w http.ResponseWriter, r *http.Request, v any) (int64, string, int64, bool) {
	user, key, ok := m.mutating(w, r, v)
	if !ok {
		return 0, "", 0, false
	}
	id, err := pathID(r, "id")
	if err != nil {
		m.fail(w, r, err)
		return 0, "", 0, false
	}
	return user, key, id, true
}

func pathID(r *http.Request, name string) (int64, error) {
	id, err := idgen.Parse(r.PathValue(name))
	if err != nil || id <= 0 {
		return 0, errs.E(errs.NotFound, "no such %s", name)
	}
	return id, nil
}

// page reads ?before=<id>&limit=<n>.
func page(r *http.Request) (int64, int, error) {
	q := r.URL.Query()
	var before int64
	if v := q.Get("before"); v != "" {
		id, err := idgen.Parse(v)
		if err != nil {
			return 0, 0, errs.E(errs.Invalid, "before must be an ID")
		}
		before = id
	}
	limit := 20
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return 0, 0, errs.E(errs.Invalid, "limit must be 1 to 100")
		}
		limit = n
	}
	return before, limit, nil
}

func (m *Module) tip(w http.ResponseWriter, r *http.Request) {
	var in TipRequest
	user, key, ok := m.mutating(w, r, &in)
	if !ok {
		return
	}
	rep, err := m.s.Tip(r.Context(), user, key, in, m.videos)
	m.reply(w, r, rep, err)
}

func (m *Module) confirm(w http.ResponseWriter, r *http.Request) {
	var in ConfirmRequest
	user, key, id, ok := m.mutatingID(w, r, &in)
	if !ok {
		return
	}
	rep, err := m.s.Confirm(r.Context(), user, key, id, in)
	m.reply(w, r, rep, err)
}

func (m *Module) cancel(w http.ResponseWriter, r *http.Request) {
	user, key, id, ok := m.mutatingID(w, r, nil)
	if !ok {
		return
	}
	rep, err := m.s.Cancel(r.Context(), user, key, id)
	m.reply(w, r, rep, err)
}

func (m *Module) getPayment(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		m.fail(w, r, err)
		return
	}
	if caller(r) == 0 {
		m.fail(w, r, errs.E(errs.Unauthorized, "log in first"))
		return
	}
	v, err := m.s.Payment(r.Context(), caller(r), id)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	httpx.JSON(w, http.StatusOK, v)
}

func (m *Module) listPayments(w http.ResponseWriter, r *http.Request) {
	user := caller(r)
	if user == 0 {
		m.fail(w, r, errs.E(errs.Unauthorized, "log in first"))
		return
	}
	before, limit, err := page(r)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	role := r.URL.Query().Get("role")
	if role != "" && role != "payer" && role != "creator" {
		m.fail(w, r, errs.E(errs.Invalid, "role must be payer or creator"))
		return
	}
	list, err := m.s.Payments(r.Context(), user, role == "creator", before, limit)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	out := map[string]any{"payments": list}
	if len(list) == limit {
		out["next_before"] = list[len(list)-1].ID
	}
	httpx.JSON(w, http.StatusOK, out)
}

// ConfigView is the answer of GET /api/v1/payments/config.
type ConfigView struct {
	ClientInfo
	Currencies      []CurrencyInfo `json:"currencies"`
	DefaultCurrency string         `json:"default_currency"`
	MinAmount       int64          `json:"min_amount"`
	MaxAmount       int64          `json:"max_amount"`
	DailyLimit      int64          `json:"daily_limit"`
	FeeBasisPoints  int64          `json:"fee_bps"`
	PayoutMin       int64          `json:"payout_min"`
}

// CurrencyInfo is an accepted currency and its minor-unit digits.
type CurrencyInfo struct {
	Code     string `json:"code"`
	Exponent int    `json:"exponent"`
}

// ConfigView returns what clients need to build a payment form.
func (s *Service) ConfigView() ConfigView {
	v := ConfigView{ClientInfo: s.provider.Client(), DefaultCurrency: s.cfg.DefaultCurrency, MinAmount: s.cfg.MinAmount,
		MaxAmount: s.cfg.MaxAmount, DailyLimit: s.cfg.DailyLimit, FeeBasisPoints: s.cfg.FeeBasisPoints, PayoutMin: s.cfg.PayoutMin}
	for _, c := range s.cfg.Currencies {
		e, _ := currency.Exponent(c)
		v.Currencies = append(v.Currencies, CurrencyInfo{Code: c, Exponent: e})
	}
	return v
}

func (m *Module) config(w http.ResponseWriter, r *http.Request) {
	httpx.JSON(w, http.StatusOK, m.s.ConfigView())
}

func (m *Module) webhook(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxWebhookBytes))
	if err != nil {
		m.fail(w, r, errs.E(errs.Invalid, "webhook body over %d bytes", MaxWebhookBytes))
		return
	}
	result, err := m.s.ReceiveWebhook(r.Context(), r.PathValue("provider"), body, r.Header)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	httpx.JSON(w, http.StatusOK, map[string]string{"result": result})
}

func (m *Module) subscribe(w http.ResponseWriter, r *http.Request) {
	var in SubscribeRequest
	user, key, ok := m.mutating(w, r, &in)
	if !ok {
		return
	}
	rep, err := m.s.Subscribe(r.Context(), user, key, in)
	m.reply(w, r, rep, err)
}

func (m *Module) listMemberships(w http.ResponseWriter, r *http.Request) {
	user := caller(r)
	if user == 0 {
		m.fail(w, r, errs.E(errs.Unauthorized, "log in first"))
		return
	}
	before, limit, err := page(r)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	role := q.Get("role")
	if role != "" && role != "member" && role != "creator" {
		m.fail(w, r, errs.E(errs.Invalid, "role must be member or creator"))
		return
	}
	var creator int64
	if v := q.Get("creator_id"); v != "" {
		if creator, err = parseID("creator_id", v); err != nil {
			m.fail(w, r, err)
			return
		}
	}
	list, err := m.s.Memberships(r.Context(), user, role == "creator", creator, before, limit)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	out := map[string]any{"memberships": list}
	if len(list) == limit {
		out["next_before"] = list[len(list)-1].ID
	}
	httpx.JSON(w, http.StatusOK, out)
}

func (m *Module) getPlan(w http.ResponseWriter, r *http.Request) {
	creator, err := parseID("creator_id", r.URL.Query().Get("creator_id"))
	if err != nil {
		m.fail(w, r, err)
		return
	}
	if err := m.s.checkUser(r.Context(), creator, "creator"); err != nil {
		m.fail(w, r, err)
		return
	}
	p, err := m.s.Plan(r.Context(), creator)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	httpx.JSON(w, http.StatusOK, p)
}

func (m *Module) setPlan(w http.ResponseWriter, r *http.Request) {
	var in PlanRequest
	user, key, ok := m.mutating(w, r, &in)
	if !ok {
		return
	}
	rep, err := m.s.SetPlan(r.Context(), user, key, in)
	m.reply(w, r, rep, err)
}

func (m *Module) cancelMembership(w http.ResponseWriter, r *http.Request) {
	user, key, id, ok := m.mutatingID(w, r, nil)
	if !ok {
		return
	}
	rep, err := m.s.CancelMembership(r.Context(), user, key, id)
	m.reply(w, r, rep, err)
}

func (m *Module) balance(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		m.fail(w, r, err)
		return
	}
	switch user := caller(r); {
	case user == 0:
		m.fail(w, r, errs.E(errs.Unauthorized, "log in first"))
		return
	case user != id:
		m.fail(w, r, errs.E(errs.Forbidden, "a creator's balance is visible to that creator only"))
		return
	}
	b, err := m.s.Balance(r.Context(), id)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	httpx.JSON(w, http.StatusOK, b)
}

func (m *Module) listPayouts(w http.ResponseWriter, r *http.Request) {
	user := caller(r)
	if user == 0 {
		m.fail(w, r, errs.E(errs.Unauthorized, "log in first"))
		return
	}
	before, limit, err := page(r)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	list, err := m.s.Payouts(r.Context(), user, before, limit)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	out := map[string]any{"payouts": list}
	if len(list) == limit {
		out["next_before"] = list[len(list)-1].ID
	}
	httpx.JSON(w, http.StatusOK, out)
}

func (m *Module) requestPayout(w http.ResponseWriter, r *http.Request) {
	var in PayoutAPIRequest
	user, key, ok := m.mutating(w, r, &in)
	if !ok {
		return
	}
	rep, err := m.s.RequestPayout(r.Context(), user, key, in)
	m.reply(w, r, rep, err)
}

func (m *Module) setDestination(w http.ResponseWriter, r *http.Request) {
	var in DestinationRequest
	user, key, ok := m.mutating(w, r, &in)
	if !ok {
		return
	}
	rep, err := m.s.SetDestination(r.Context(), user, key, in)
	m.reply(w, r, rep, err)
}

func (m *Module) listEndpoints(w http.ResponseWriter, r *http.Request) {
	user := caller(r)
	if user == 0 {
		m.fail(w, r, errs.E(errs.Unauthorized, "log in first"))
		return
	}
	list, err := m.s.Endpoints(r.Context(), user)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	httpx.JSON(w, http.StatusOK, map[string]any{"endpoints": list})
}

func (m *Module) addEndpoint(w http.ResponseWriter, r *http.Request) {
	var in EndpointRequest
	user, key, ok := m.mutating(w, r, &in)
	if !ok {
		return
	}
	rep, err := m.s.AddEndpoint(r.Context(), user, key, in)
	m.reply(w, r, rep, err)
}

func (m *Module) deleteEndpoint(w http.ResponseWriter, r *http.Request) {
	user, key, id, ok := m.mutatingID(w, r, nil)
	if !ok {
		return
	}
	rep, err := m.s.DeleteEndpoint(r.Context(), user, key, id)
	m.reply(w, r, rep, err)
}

// walletData is the wallet page's template data.
type walletData struct {
	User         account.Identity
	Config       ConfigView
	ConfigJSON   string
	Plan         Plan
	Authenticate string
}

func (m *Module) wallet(w http.ResponseWriter, r *http.Request) {
	id := account.FromContext(r.Context())
	if id.UserID == 0 {
		http.Redirect(w, r, "/login?next="+url.QueryEscape("/wallet"), http.StatusSeeOther)
		return
	}
	if m.pages == nil {
		m.fail(w, r, errs.E(errs.NotFound, "no wallet page here"))
		return
	}
	plan, err := m.s.Plan(r.Context(), id.UserID)
	if err != nil {
		m.fail(w, r, err)
		return
	}
	cfg := m.s.ConfigView()
	b, _ := json.Marshal(struct {
		ConfigView
		UserID string `json:"user_id"`
	}{cfg, idStr(id.UserID)})
	d := walletData{User: id, Config: cfg, ConfigJSON: string(b), Plan: plan}
	if a := r.URL.Query().Get("authenticate"); a != "" {
		if pid, err := idgen.Parse(a); err == nil {
			d.Authenticate = idStr(pid)
		}
	}
	m.pages.Render(w, http.StatusOK, "wallet", d)
}
