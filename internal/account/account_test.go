package account

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/idgen/idgentest"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

func newService(t *testing.T) *Service {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), filepath.Join(t.TempDir(), "bp.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return New(db, idgentest.New(t), Config{SessionTTL: time.Hour, MinPasswordLength: 8})
}

func TestSignUpLoginLogout(t *testing.T) {
	ctx := context.Background()
	s := newService(t)
	u, err := s.SignUp(ctx, "alice", "alice@example.com", "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	var hash string
	s.db.R.QueryRow(`SELECT password_hash FROM users WHERE id = ?`, u.ID).Scan(&hash)
	if !strings.HasPrefix(hash, "$argon2id$") || strings.Contains(hash, "correct horse") {
		t.Fatalf("stored hash %q", hash)
	}
	if _, _, err := s.Login(ctx, "alice", "wrong password"); errs.KindOf(err) != errs.Unauthorized {
		t.Fatalf("wrong password: %v", err)
	}
	if _, _, err := s.Login(ctx, "nobody", "whatever1"); errs.KindOf(err) != errs.Unauthorized {
		t.Fatalf("unknown user: %v", err)
	}
	token, _, err := s.Login(ctx, "ALICE", "correct horse") // usernames are case-insensitive
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.Authenticate(ctx, token)
	if err != nil || id.UserID != u.ID || id.Username != "alice" {
		t.Fatalf("authenticate: %+v %v", id, err)
	}
	var n int
	s.db.R.QueryRow(`SELECT COUNT(*) FROM sessions WHERE token_hash = ?`, []byte(token)).Scan(&n)
	if n != 0 {
		t.Fatal("raw token stored")
	}
	if err := s.Logout(ctx, token); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, token); errs.KindOf(err) != errs.Unauthorized {
		t.Fatalf("token still valid after logout: %v", err)
	}
}

func TestSignUpValidation(t *testing.T) {
	ctx := context.Background()
	s := newService(t)
	if _, err := s.SignUp(ctx, "bob", "bob@example.com", "password1"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		user, email, pw string
		kind            errs.Kind
	}{
		{"bob", "other@example.com", "password1", errs.Conflict},
		{"BOB", "other@example.com", "password1", errs.Conflict},
		{"bob2", "BOB@example.com", "password1", errs.Conflict},
		{"x", "x@example.com", "password1", errs.Invalid},
		{"has space", "s@example.com", "password1", errs.Invalid},
		{"carol", "not-an-email", "password1", errs.Invalid},
		{"carol", "Carol <c@example.com>", "password1", errs.Invalid},
		{"carol", "c@example.com", "short", errs.Invalid},
		{"carol", "c@example.com", strings.Repeat("p", 300), errs.Invalid},
	}
	for _, c := range cases {
		if _, err := s.SignUp(ctx, c.user, c.email, c.pw); errs.KindOf(err) != c.kind {
			t.Errorf("SignUp(%q, %q): err=%v, want kind %d", c.user, c.email, err, c.kind)
		}
	}
}

func TestExpiredSession(t *testing.T) {
	ctx := context.Background()
	s := newService(t)
	s.SignUp(ctx, "dave", "d@example.com", "password1")
	token, _, err := s.Login(ctx, "dave", "password1")
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if _, err := s.Authenticate(ctx, token); errs.KindOf(err) != errs.Unauthorized {
		t.Fatalf("expired token accepted: %v", err)
	}
	if n, err := s.DeleteExpiredSessions(ctx); err != nil || n != 1 {
		t.Fatalf("expired sessions deleted: %d, %v", n, err)
	}
	for _, bad := range []string{"", "nope", "bp_" + strings.Repeat("a", 100)} {
		if _, err := s.Authenticate(ctx, bad); errs.KindOf(err) != errs.Unauthorized {
			t.Errorf("token %q: %v", bad, err)
		}
	}
}

func TestIdentityHeaders(t *testing.T) {
	secret := []byte("k")
	now := time.Now()
	req := func(method, path, rid string) *http.Request {
		r, _ := http.NewRequest(method, "http://x"+path, nil)
		r.Header.Set("X-Request-Id", rid)
		return r
	}
	r := req("GET", "/api/v1/me", "req-1")
	r.Header.Set(HeaderUser, "999") // client-sent: must be replaced
	id := Identity{UserID: 42, Username: "eve", SessionID: 7}
	SetIdentity(r, id, secret, now)
	if got, ok := IdentityFrom(r, secret, now); !ok || got != id {
		t.Fatalf("round trip: %+v %v", got, ok)
	}
	replay := func(to *http.Request) *http.Request {
		for _, k := range []string{HeaderUser, HeaderUsername, HeaderSession, HeaderSignature} {
			to.Header.Set(k, r.Header.Get(k))
		}
		return to
	}
	for name, other := range map[string]*http.Request{
		"other request id": replay(req("GET", "/api/v1/me", "req-2")),
		"other method":     replay(req("DELETE", "/api/v1/me", "req-1")),
		"other path":       replay(req("GET", "/api/v1/uploads/", "req-1")),
	} {
		if _, ok := IdentityFrom(other, secret, now); ok {
			t.Errorf("signature replayed with %s", name)
		}
	}
	if _, ok := IdentityFrom(r, secret, now.Add(2*IdentityMaxAge)); ok {
		t.Fatal("stale signature accepted")
	}
	if _, ok := IdentityFrom(r, []byte("other"), now); ok {
		t.Fatal("signature accepted with another secret")
	}
	r.Header.Set(HeaderUser, "43")
	if _, ok := IdentityFrom(r, secret, now); ok {
		t.Fatal("tampered user accepted")
	}
}

func FuzzIdentityFrom(f *testing.F) {
	f.Add("42", "eve", "7", "1700000000.abcd")
	f.Add("", "", "", "")
	f.Add("-1", "x", "999999999999999999999", "..")
	f.Fuzz(func(t *testing.T, user, name, session, sig string) {
		r, _ := http.NewRequest("GET", "http://x/", nil)
		r.Header.Set(HeaderUser, user)
		r.Header.Set(HeaderUsername, name)
		r.Header.Set(HeaderSession, session)
		r.Header.Set(HeaderSignature, sig)
		if _, ok := IdentityFrom(r, []byte("k"), time.Unix(1700000000, 0)); ok {
			t.Fatalf("forged identity accepted: %q %q %q %q", user, name, session, sig)
		}
	})
}

func FuzzCheckPassword(f *testing.F) {
	f.Add(HashPassword("pw"), "pw")
	f.Add("$argon2id$v=19$m=99999999,t=1,p=1$AA$AA", "x")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, hash, pw string) {
		CheckPassword(hash, pw) // must not panic or allocate unbounded memory
	})
}
