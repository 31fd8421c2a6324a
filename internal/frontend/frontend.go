// Package frontend is one frontend server: the API and the web pages behind
// the load balancer. Several instances run side by side (two in all-in-one
// mode, each on its own loopback port); they keep no state of their own —
// everything lives in the SQL store, object storage and the queue — so the
// load balancer may send any request to any of them.
//
// Frontends trust the caller identity only in the form the gateway signs
// (account.SetIdentity); requests that reach a frontend directly are
// anonymous.
package frontend

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/blueprint-media/blueprint/internal/account"
	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/httpx"
	"github.com/blueprint-media/blueprint/internal/idgen"
	"github.com/blueprint-media/blueprint/internal/media"
	"github.com/blueprint-media/blueprint/internal/upload"
	"github.com/blueprint-media/blueprint/internal/web"
)

// SessionCookie is the name of the web session cookie.
const SessionCookie = "bp_session"

// Deps are the services a frontend serves.
type Deps struct {
	Accounts     *account.Service
	Media        *media.Service
	Uploads      *upload.Service
	Pages        *web.Pages
	Secret       []byte
	SecureCookie bool
	SessionTTL   time.Duration
	MaxBodyBytes int64
	MaxUpload    int64
	Logger       *slog.Logger
	Requests     *prometheus.CounterVec // by instance and code class; may be nil
	Modules      []Module
	// AdmitUpload, when set, may refuse a new upload (an errs.TooMany
	// error becomes 429 with Retry-After).
	AdmitUpload func(context.Context) error
	// ReadYourWrites, when set, wraps every route: with database
	// replicas it lets pages read from a replica that has replayed the
	// visitor's last write (sqlstore.DB.ReadYourWrites).
	ReadYourWrites func(http.Handler) http.Handler
}

// Server is one frontend instance.
type Server struct {
	name string
	d    Deps
	tus  http.Handler
}

// New returns the frontend instance called name.
func New(name string, d Deps) (*Server, error) {
	tus, err := d.Uploads.Handler()
	if err != nil {
		return nil, err
	}
	return &Server{name: name, d: d, tus: tus}, nil
}

// NewRequestsMetric returns the frontend request counter, registered on reg.
func NewRequestsMetric(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "blueprint", Subsystem: "frontend", Name: "requests_total", Help: "Requests served by frontend instances.",
	}, []string{"instance", "code"})
	if reg != nil {
		reg.MustRegister(c)
	}
	return c
}

func ident(r *http.Request) account.Identity { return account.FromContext(r.Context()) }

// Module is a product service that serves routes on every frontend
// instance (follows and feeds, notifications, search, payments, analytics).
// Routes is called once per instance with the instance's name; handlers read
// the caller with account.FromContext. Patterns must not collide with the
// frontend's own or another module's.
type Module interface {
	Routes(mux *http.ServeMux, instance string)
}

// Handler returns the instance's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	// API.
	mux.HandleFunc("POST /api/v1/users", s.apiSignUp)
	mux.HandleFunc("POST /api/v1/sessions", s.apiLogin)
	mux.HandleFunc("DELETE /api/v1/sessions", s.apiLogout)
	mux.HandleFunc("GET /api/v1/me", s.apiMe)
	mux.HandleFunc("GET /api/v1/videos", s.apiVideos)
	mux.HandleFunc("GET /api/v1/videos/{id}", s.apiVideo)
	mux.HandleFunc("GET /api/v1/uploads/{id}", s.apiUpload)
	mux.Handle(upload.BasePath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Backpressure at the edge of the system: a new upload (tus
		// creation) is refused while the transcoding backlog is over its
		// budget; uploads in progress continue.
		if r.Method == http.MethodPost && s.d.AdmitUpload != nil {
			if err := s.d.AdmitUpload(r.Context()); err != nil {
				w.Header().Set("Retry-After", "30")
				httpx.Error(w, r, s.d.Logger, err)
				return
			}
		}
		s.tus.ServeHTTP(w, r.WithContext(upload.WithIdentity(r.Context(), ident(r))))
	}))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		httpx.JSON(w, http.StatusNotFound, map[string]string{"error": "no such endpoint: " + r.Method + " " + r.URL.Path})
	})
	for _, m := range s.d.Modules {
		m.Routes(mux, s.name)
	}
	// Pages.
	mux.HandleFunc("GET /{$}", s.home)
	mux.HandleFunc("GET /signup", s.signupPage)
	mux.HandleFunc("POST /signup", s.signupSubmit)
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.loginSubmit)
	mux.HandleFunc("POST /logout", s.logoutSubmit)
	mux.HandleFunc("GET /upload", s.uploadPage)
	mux.HandleFunc("GET /watch/{id}", s.watchPage)
	mux.Handle("GET /static/", web.Static())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.errorPage(w, r, http.StatusNotFound, "Not found", "There is no page at "+r.URL.Path+".")
	})
	h := http.Handler(mux)
	if s.d.ReadYourWrites != nil {
		h = s.d.ReadYourWrites(h)
	}
	return s.middleware(h)
}

func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := account.IdentityFrom(r, s.d.Secret, time.Now())
		sw := &httpx.Recorder{ResponseWriter: w, Code: http.StatusOK}
		w.Header().Set("X-Served-By", s.name)
		next.ServeHTTP(sw, r.WithContext(account.NewContext(r.Context(), id)))
		if s.d.Requests != nil {
			s.d.Requests.WithLabelValues(s.name, strconv.Itoa(sw.Code/100)+"xx").Inc()
		}
	})
}

// ---- API ----

func (s *Server) apiSignUp(w http.ResponseWriter, r *http.Request) {
	var in struct{ Username, Email, Password string }
	if err := httpx.Decode(r, s.d.MaxBodyBytes, &in); err != nil {
		httpx.Error(w, r, s.d.Logger, err)
		return
	}
	u, err := s.d.Accounts.SignUp(r.Context(), in.Username, in.Email, in.Password)
	if err != nil {
		httpx.Error(w, r, s.d.Logger, err)
		return
	}
	httpx.JSON(w, http.StatusCreated, u)
}

func (s *Server) apiLogin(w http.ResponseWriter, r *http.Request) {
	var in struct{ Username, Password string }
	if err := httpx.Decode(r, s.d.MaxBodyBytes, &in); err != nil {
		httpx.Error(w, r, s.d.Logger, err)
		return
	}
	token, u, err := s.d.Accounts.Login(r.Context(), in.Username, in.Password)
	if err != nil {
		httpx.Error(w, r, s.d.Logger, err)
		return
	}
	httpx.JSON(w, http.StatusOK, map[string]any{"token": token, "user": u, "expires_in": int(s.d.SessionTTL.Seconds())})
}

func (s *Server) apiLogout(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || ident(r).UserID == 0 {
		httpx.Error(w, r, s.d.Logger, errs.E(errs.Unauthorized, "log in first"))
		return
	}
	if err := s.d.Accounts.Logout(r.Context(), token); err != nil {
		httpx.Error(w, r, s.d.Logger, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) apiMe(w http.ResponseWriter, r *http.Request) {
	id := ident(r)
	if id.UserID == 0 {
		httpx.Error(w, r, s.d.Logger, errs.E(errs.Unauthorized, "log in first"))
		return
	}
	u, err := s.d.Accounts.User(r.Context(), id.UserID)
	if err != nil {
		httpx.Error(w, r, s.d.Logger, err)
		return
	}
	httpx.JSON(w, http.StatusOK, u)
}

func pathID(r *http.Request) (int64, error) {
	id, err := idgen.Parse(r.PathValue("id"))
	if err != nil {
		return 0, errs.E(errs.NotFound, "no such id: %q", r.PathValue("id"))
	}
	return id, nil
}

func (s *Server) apiVideo(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		httpx.Error(w, r, s.d.Logger, err)
		return
	}
	v, err := s.visible(r, id)
	if err != nil {
		httpx.Error(w, r, s.d.Logger, err)
		return
	}
	httpx.JSON(w, http.StatusOK, v)
}

// visible returns a media item the caller may see: ready items are public;
// processing and failed ones (and their error text) only to their owner.
func (s *Server) visible(r *http.Request, id int64) (media.Video, error) {
	v, err := s.d.Media.Get(r.Context(), id)
	if err != nil {
		return v, err
	}
	if v.Status != media.StatusReady && v.UserID != ident(r).UserID {
		return media.Video{}, errs.E(errs.NotFound, "no video with id %d", id)
	}
	return v, nil
}

func (s *Server) apiVideos(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	opts := media.ListOptions{Status: media.StatusReady}
	if c := q.Get("cursor"); c != "" {
		id, err := idgen.Parse(c)
		if err != nil {
			httpx.Error(w, r, s.d.Logger, errs.E(errs.Invalid, "bad cursor %q", c))
			return
		}
		opts.Before = id
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 100 {
			httpx.Error(w, r, s.d.Logger, errs.E(errs.Invalid, "limit must be 1..100"))
			return
		}
		opts.Limit = n
	}
	if q.Get("mine") == "1" || q.Get("mine") == "true" {
		id := ident(r)
		if id.UserID == 0 {
			httpx.Error(w, r, s.d.Logger, errs.E(errs.Unauthorized, "log in to list your own videos"))
			return
		}
		opts.UserID, opts.Status = id.UserID, ""
	}
	vs, next, err := s.d.Media.List(r.Context(), opts)
	if err != nil {
		httpx.Error(w, r, s.d.Logger, err)
		return
	}
	if vs == nil {
		vs = []media.Video{}
	}
	out := map[string]any{"videos": vs}
	if next != 0 {
		out["next_cursor"] = strconv.FormatInt(next, 10)
	}
	httpx.JSON(w, http.StatusOK, out)
}

func (s *Server) apiUpload(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodHead { // "GET" patterns match HEAD too; HEAD is tus's offset query
		s.tus.ServeHTTP(w, r.WithContext(upload.WithIdentity(r.Context(), ident(r))))
		return
	}
	id := ident(r)
	if id.UserID == 0 {
		httpx.Error(w, r, s.d.Logger, errs.E(errs.Unauthorized, "log in first"))
		return
	}
	u, err := s.d.Uploads.Get(r.Context(), r.PathValue("id"), id.UserID)
	if err != nil {
		httpx.Error(w, r, s.d.Logger, err)
		return
	}
	httpx.JSON(w, http.StatusOK, u)
}

// ---- pages ----

type page struct {
	User account.Identity
}

func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	s.d.Pages.Render(w, status, "error", struct {
		page
		Title, Message string
	}{page{ident(r)}, title, msg})
}

func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	opts := media.ListOptions{Status: media.StatusReady, Limit: 24}
	if b, err := idgen.Parse(r.URL.Query().Get("before")); err == nil {
		opts.Before = b
	}
	vs, next, err := s.d.Media.List(r.Context(), opts)
	if err != nil {
		s.d.Logger.Error("home", "err", err)
		s.errorPage(w, r, http.StatusServiceUnavailable, "Unavailable", "The catalogue is unavailable; try again in a moment.")
		return
	}
	s.d.Pages.Render(w, http.StatusOK, "home", struct {
		page
		Videos []media.Video
		Next   int64
	}{page{ident(r)}, vs, next})
}

type authForm struct {
	page
	Title, Action, Error, Next, Username, Email string
	Signup                                      bool
}

func safeNext(next string) string {
	if u, err := url.Parse(next); err != nil || next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || u.Host != "" {
		return "/"
	}
	return next
}

func (s *Server) signupPage(w http.ResponseWriter, r *http.Request) {
	s.d.Pages.Render(w, http.StatusOK, "auth", authForm{page: page{ident(r)}, Title: "Sign up", Action: "/signup", Signup: true, Next: safeNext(r.URL.Query().Get("next"))})
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.d.Pages.Render(w, http.StatusOK, "auth", authForm{page: page{ident(r)}, Title: "Log in", Action: "/login", Next: safeNext(r.URL.Query().Get("next"))})
}

func (s *Server) signupSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, s.d.MaxBodyBytes)
	r.ParseForm()
	f := authForm{page: page{ident(r)}, Title: "Sign up", Action: "/signup", Signup: true, Next: safeNext(r.PostFormValue("next")),
		Username: r.PostFormValue("username"), Email: r.PostFormValue("email")}
	if _, err := s.d.Accounts.SignUp(r.Context(), f.Username, f.Email, r.PostFormValue("password")); err != nil {
		f.Error = errs.Message(err)
		s.d.Pages.Render(w, errs.HTTPStatus(err), "auth", f)
		return
	}
	s.startSession(w, r, f.Username, r.PostFormValue("password"), f)
}

func (s *Server) loginSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, s.d.MaxBodyBytes)
	r.ParseForm()
	f := authForm{page: page{ident(r)}, Title: "Log in", Action: "/login", Next: safeNext(r.PostFormValue("next")), Username: r.PostFormValue("username")}
	s.startSession(w, r, f.Username, r.PostFormValue("password"), f)
}

func (s *Server) startSession(w http.ResponseWriter, r *http.Request, username, password string, f authForm) {
	token, _, err := s.d.Accounts.Login(r.Context(), username, password)
	if err != nil {
		f.Error = errs.Message(err)
		s.d.Pages.Render(w, errs.HTTPStatus(err), "auth", f)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: token, Path: "/", HttpOnly: true, Secure: s.d.SecureCookie,
		SameSite: http.SameSiteLaxMode, MaxAge: int(s.d.SessionTTL.Seconds()),
	})
	http.Redirect(w, r, f.Next, http.StatusSeeOther)
}

func (s *Server) logoutSubmit(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(SessionCookie); err == nil {
		s.d.Accounts.Logout(r.Context(), c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", HttpOnly: true, Secure: s.d.SecureCookie, SameSite: http.SameSiteLaxMode, MaxAge: -1})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) uploadPage(w http.ResponseWriter, r *http.Request) {
	if ident(r).UserID == 0 {
		http.Redirect(w, r, "/login?next=/upload", http.StatusSeeOther)
		return
	}
	s.d.Pages.Render(w, http.StatusOK, "upload", struct {
		page
		MaxSize string
	}{page{ident(r)}, humanBytes(s.d.MaxUpload)})
}

func (s *Server) watchPage(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		s.errorPage(w, r, http.StatusNotFound, "Not found", "There is no video with that id.")
		return
	}
	v, err := s.visible(r, id)
	if err != nil {
		if errs.KindOf(err) == errs.NotFound {
			s.errorPage(w, r, http.StatusNotFound, "Not found", "There is no video with that id.")
			return
		}
		s.d.Logger.Error("watch", "err", err)
		s.errorPage(w, r, http.StatusServiceUnavailable, "Unavailable", "Try again in a moment.")
		return
	}
	var largest *media.Rendition
	for i := range v.Renditions {
		if largest == nil || v.Renditions[i].Width > largest.Width {
			largest = &v.Renditions[i]
		}
	}
	s.d.Pages.Render(w, http.StatusOK, "watch", struct {
		page
		Video   media.Video
		Largest *media.Rendition
	}{page{ident(r)}, v, largest})
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}
