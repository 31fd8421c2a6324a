package gateway

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/account"
	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/httpx"
	"github.com/blueprint-media/blueprint/internal/lb"
	"github.com/blueprint-media/blueprint/internal/ratelimit"
)

type fakeAuth map[string]account.Identity

func (f fakeAuth) Authenticate(_ context.Context, token string) (account.Identity, error) {
	if id, ok := f[token]; ok {
		return id, nil
	}
	return account.Identity{}, errs.E(errs.Unauthorized, "invalid or expired token")
}

var secret = []byte("test-secret")

// newGateway returns a gateway in front of one real backend that echoes the
// identity it was given.
func newGateway(t *testing.T, rate float64, burst int) *httptest.Server {
	t.Helper()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		id, ok := account.IdentityFrom(r, secret, time.Now())
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Body-Len", strconv.Itoa(len(b)))
		if ok {
			io.WriteString(w, "user="+id.Username)
		} else {
			io.WriteString(w, "anonymous")
		}
	}))
	t.Cleanup(backend.Close)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	bal, err := lb.New(lb.Config{}, []string{backend.URL}, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bal.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bal.Stop(context.Background()) })
	rl, err := ratelimit.New(ratelimit.Config{Rate: rate, Burst: burst})
	if err != nil {
		t.Fatal(err)
	}
	auth := fakeAuth{"bp_good": {UserID: 7, Username: "gina", SessionID: 1}}
	g := New(Config{MaxBodyBytes: 1024, MaxUploadBytes: 1 << 20, Secret: secret}, auth, bal, rl, logger, nil)
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestIdentityIsSignedAndSpoofingIgnored(t *testing.T) {
	srv := newGateway(t, 100, 100)
	req, _ := http.NewRequest("GET", srv.URL+"/x", nil)
	req.Header.Set("Authorization", "Bearer bp_good")
	resp, body := do(t, req)
	if body != "user=gina" || resp.Header.Get(httpx.HeaderRequestID) == "" {
		t.Fatalf("authenticated: %q, request id %q", body, resp.Header.Get(httpx.HeaderRequestID))
	}
	// A client claiming an identity in the internal headers gets none.
	req, _ = http.NewRequest("GET", srv.URL+"/x", nil)
	req.Header.Set(account.HeaderUser, "7")
	req.Header.Set(account.HeaderUsername, "gina")
	req.Header.Set(account.HeaderSession, "1")
	req.Header.Set(account.HeaderSignature, "00")
	if _, body := do(t, req); body != "anonymous" {
		t.Fatalf("spoofed identity accepted: %q", body)
	}
	// Cookies authenticate too; a stale cookie is just anonymous.
	req, _ = http.NewRequest("GET", srv.URL+"/x", nil)
	req.AddCookie(&http.Cookie{Name: SessionCookie, Value: "bp_good"})
	if _, body := do(t, req); body != "user=gina" {
		t.Fatalf("cookie: %q", body)
	}
	req, _ = http.NewRequest("GET", srv.URL+"/x", nil)
	req.AddCookie(&http.Cookie{Name: SessionCookie, Value: "bp_stale"})
	if resp, body := do(t, req); resp.StatusCode != 200 || body != "anonymous" {
		t.Fatalf("stale cookie: %d %q", resp.StatusCode, body)
	}
}

func TestBadTokens(t *testing.T) {
	srv := newGateway(t, 100, 100)
	for _, h := range []string{"Bearer bp_wrong", "Basic dXNlcjpwdw==", "Bearer "} {
		req, _ := http.NewRequest("GET", srv.URL+"/x", nil)
		req.Header.Set("Authorization", h)
		resp, body := do(t, req)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "error") || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%q: %d %q %q", h, resp.StatusCode, body, resp.Header.Get("WWW-Authenticate"))
		}
	}
}

func TestFailedTokensAreRateLimited(t *testing.T) {
	srv := newGateway(t, 1, 3)
	codes := map[int]int{}
	for range 5 {
		req := mustReq("GET", srv.URL+"/x", nil)
		req.Header.Set("Authorization", "Bearer bp_guess")
		resp, _ := do(t, req)
		codes[resp.StatusCode]++
	}
	if codes[401] != 3 || codes[429] != 2 {
		t.Fatalf("codes = %v, want 3×401 then 2×429", codes)
	}
}

func TestChunkedBodyOverLimit(t *testing.T) {
	srv := newGateway(t, 100, 100)
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte(strings.Repeat("y", 4096)))
		pw.Close()
	}()
	req := mustReq("POST", srv.URL+"/api/v1/users", pr) // no Content-Length: chunked
	resp, _ := do(t, req)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked body over the limit: %d, want 413", resp.StatusCode)
	}
}

func TestRateLimit(t *testing.T) {
	srv := newGateway(t, 1, 3)
	codes := map[int]int{}
	var retryAfter string
	for range 5 {
		resp, _ := do(t, mustReq("GET", srv.URL+"/x", nil))
		codes[resp.StatusCode]++
		if resp.StatusCode == http.StatusTooManyRequests {
			retryAfter = resp.Header.Get("Retry-After")
		}
	}
	if codes[200] != 3 || codes[429] != 2 {
		t.Fatalf("codes = %v, want 3×200 then 2×429", codes)
	}
	if retryAfter != "1" {
		t.Fatalf("Retry-After = %q, want 1", retryAfter)
	}
	// Another caller has its own bucket.
	req := mustReq("GET", srv.URL+"/x", nil)
	req.Header.Set("Authorization", "Bearer bp_good")
	if resp, _ := do(t, req); resp.StatusCode != 200 {
		t.Fatalf("user bucket: %d", resp.StatusCode)
	}
}

func TestBodyLimits(t *testing.T) {
	srv := newGateway(t, 100, 100)
	resp, _ := do(t, mustReq("POST", srv.URL+"/api/v1/users", strings.NewReader(strings.Repeat("x", 2000))))
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("big body: %d", resp.StatusCode)
	}
	resp, _ = do(t, mustReq("POST", srv.URL+"/api/v1/users", strings.NewReader(strings.Repeat("x", 1000))))
	if resp.StatusCode != 200 {
		t.Fatalf("small body: %d", resp.StatusCode)
	}
	// Upload PATCHes have their own, larger limit.
	resp, _ = do(t, mustReq("PATCH", srv.URL+"/api/v1/uploads/1", strings.NewReader(strings.Repeat("x", 5000))))
	if resp.StatusCode != 200 || resp.Header.Get("X-Body-Len") != "5000" {
		t.Fatalf("upload patch: %d len %s", resp.StatusCode, resp.Header.Get("X-Body-Len"))
	}
}

func TestCrossOriginPostRefused(t *testing.T) {
	srv := newGateway(t, 100, 100)
	req := mustReq("POST", srv.URL+"/logout", nil)
	req.AddCookie(&http.Cookie{Name: SessionCookie, Value: "bp_good"})
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if resp, _ := do(t, req); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site POST: %d, want 403", resp.StatusCode)
	}
	req = mustReq("POST", srv.URL+"/logout", nil)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if resp, _ := do(t, req); resp.StatusCode != 200 {
		t.Fatalf("same-origin POST: %d", resp.StatusCode)
	}
}

func mustReq(method, url string, body io.Reader) *http.Request {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		panic(err)
	}
	return req
}
