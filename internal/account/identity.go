package account

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
)

// Headers the gateway sets on requests it forwards to frontend servers.
// The gateway deletes any client-sent copies first; frontends accept them
// only with a valid signature, so a client that reaches a frontend directly
// cannot claim to be somebody else.
const (
	HeaderUser      = "X-Blueprint-User"
	HeaderUsername  = "X-Blueprint-Username"
	HeaderSession   = "X-Blueprint-Session"
	HeaderSignature = "X-Blueprint-Signature"
)

// StripIdentity removes identity headers from h.
func StripIdentity(h http.Header) {
	for _, k := range []string{HeaderUser, HeaderUsername, HeaderSession, HeaderSignature} {
		h.Del(k)
	}
}

// SetIdentity writes id into h, signed with secret and bound to requestID.
func SetIdentity(h http.Header, id Identity, secret []byte, requestID string) {
	StripIdentity(h)
	if id.UserID == 0 {
		return
	}
	h.Set(HeaderUser, strconv.FormatInt(id.UserID, 10))
	h.Set(HeaderUsername, id.Username)
	h.Set(HeaderSession, strconv.FormatInt(id.SessionID, 10))
	h.Set(HeaderSignature, identityMAC(id, secret, requestID))
}

// IdentityFrom reads and verifies the identity in h. It returns the zero
// Identity (anonymous) when there is none or its signature is wrong.
func IdentityFrom(h http.Header, secret []byte, requestID string) (Identity, bool) {
	uid, err1 := strconv.ParseInt(h.Get(HeaderUser), 10, 64)
	sid, err2 := strconv.ParseInt(h.Get(HeaderSession), 10, 64)
	if err1 != nil || err2 != nil || uid <= 0 {
		return Identity{}, false
	}
	id := Identity{UserID: uid, Username: h.Get(HeaderUsername), SessionID: sid}
	want := identityMAC(id, secret, requestID)
	if !hmac.Equal([]byte(want), []byte(h.Get(HeaderSignature))) {
		return Identity{}, false
	}
	return id, true
}

func identityMAC(id Identity, secret []byte, requestID string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(strconv.FormatInt(id.UserID, 10) + "\x00" + id.Username + "\x00" + strconv.FormatInt(id.SessionID, 10) + "\x00" + requestID))
	return hex.EncodeToString(m.Sum(nil))
}
