package account

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Headers the gateway sets on requests it forwards to frontend servers.
// The gateway deletes any client-sent copies first; frontends accept them
// only with a valid signature, so a client that reaches a frontend directly
// cannot claim to be somebody else. The signature covers the identity, the
// request ID, method and path, and a timestamp; frontends refuse signatures
// older than IdentityMaxAge, so a captured header cannot be replayed on
// another request or later.
const (
	HeaderUser      = "X-Blueprint-User"
	HeaderUsername  = "X-Blueprint-Username"
	HeaderSession   = "X-Blueprint-Session"
	HeaderSignature = "X-Blueprint-Signature"
	headerRequestID = "X-Request-Id"
)

// IdentityMaxAge bounds the age of a signed identity.
const IdentityMaxAge = time.Minute

// StripIdentity removes identity headers from h.
func StripIdentity(h http.Header) {
	for _, k := range []string{HeaderUser, HeaderUsername, HeaderSession, HeaderSignature} {
		h.Del(k)
	}
}

// SetIdentity writes id into r's headers, signed with secret.
func SetIdentity(r *http.Request, id Identity, secret []byte, now time.Time) {
	StripIdentity(r.Header)
	if id.UserID == 0 {
		return
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	r.Header.Set(HeaderUser, strconv.FormatInt(id.UserID, 10))
	r.Header.Set(HeaderUsername, id.Username)
	r.Header.Set(HeaderSession, strconv.FormatInt(id.SessionID, 10))
	r.Header.Set(HeaderSignature, ts+"."+identityMAC(r, id, secret, ts))
}

// IdentityFrom reads and verifies the identity in r's headers. It returns
// the zero Identity (anonymous) when there is none, its signature is wrong,
// or it is older than IdentityMaxAge.
func IdentityFrom(r *http.Request, secret []byte, now time.Time) (Identity, bool) {
	h := r.Header
	uid, err1 := strconv.ParseInt(h.Get(HeaderUser), 10, 64)
	sid, err2 := strconv.ParseInt(h.Get(HeaderSession), 10, 64)
	ts, mac, ok := strings.Cut(h.Get(HeaderSignature), ".")
	if err1 != nil || err2 != nil || uid <= 0 || !ok {
		return Identity{}, false
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || now.Sub(time.Unix(sec, 0)).Abs() > IdentityMaxAge {
		return Identity{}, false
	}
	id := Identity{UserID: uid, Username: h.Get(HeaderUsername), SessionID: sid}
	if !hmac.Equal([]byte(identityMAC(r, id, secret, ts)), []byte(mac)) {
		return Identity{}, false
	}
	return id, true
}

func identityMAC(r *http.Request, id Identity, secret []byte, ts string) string {
	m := hmac.New(sha256.New, secret)
	for _, part := range []string{strconv.FormatInt(id.UserID, 10), id.Username, strconv.FormatInt(id.SessionID, 10),
		r.Header.Get(headerRequestID), r.Method, r.URL.Path, ts} {
		m.Write([]byte(part))
		m.Write([]byte{0})
	}
	return hex.EncodeToString(m.Sum(nil))
}

type identityKey struct{}

// NewContext returns a context carrying the caller's identity. Frontend
// servers put the verified identity there for every request, so the
// product services mounted on them read it with FromContext.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext returns the caller's identity (the zero Identity, UserID 0,
// for anonymous callers).
func FromContext(ctx context.Context) Identity {
	id, _ := ctx.Value(identityKey{}).(Identity)
	return id
}
