package analytics

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// ViewerCookie holds a browser's signed, random viewer ID: reloads and
// new tabs of one browser are one viewer.
const ViewerCookie = "bp_viewer"

// sessionClaims are what a session token vouches for.
type sessionClaims struct {
	Session int64 // random, one per page load
	Viewer  int64 // the viewer cookie's ID, or a hash of the account
	Video   int64 // 0 for pages that are not watch pages
	Issued  time.Time
}

// signer signs and checks viewer cookies and session tokens with keys
// derived from the platform secret (one key per purpose).
type signer struct {
	viewerKey, sessionKey []byte
}

func newSigner(secret []byte) signer {
	derive := func(purpose string) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte("blueprint analytics " + purpose))
		return m.Sum(nil)
	}
	return signer{viewerKey: derive("viewer v1"), sessionKey: derive("session v1")}
}

func mac(key []byte, msg string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// randomID returns a random positive int64.
func randomID() int64 {
	var b [8]byte
	rand.Read(b[:])
	id := int64(binary.LittleEndian.Uint64(b[:]) &^ (1 << 63))
	if id == 0 {
		id = 1
	}
	return id
}

// accountViewer is the viewer ID of a logged-in account: the same on every
// device, and never equal to a cookie's by more than chance.
func accountViewer(userID int64) int64 {
	h := sha256.Sum256([]byte("account:" + strconv.FormatInt(userID, 10)))
	id := int64(binary.LittleEndian.Uint64(h[:8]) &^ (1 << 63))
	return max(id, 1)
}

// viewerCookie returns the cookie value for viewer id.
func (s signer) viewerCookie(id int64) string {
	v := strconv.FormatInt(id, 36)
	return v + "." + mac(s.viewerKey, v)
}

// parseViewerCookie returns the viewer ID in a cookie value, or false.
func (s signer) parseViewerCookie(v string) (int64, bool) {
	id, sig, ok := strings.Cut(v, ".")
	if !ok || len(v) > 64 || !hmac.Equal([]byte(sig), []byte(mac(s.viewerKey, id))) {
		return 0, false
	}
	n, err := strconv.ParseInt(id, 36, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}

// sessionToken returns the signed token for c: "s1.session.viewer.video.issued.mac".
func (s signer) sessionToken(c sessionClaims) string {
	body := "s1." + strconv.FormatInt(c.Session, 36) + "." + strconv.FormatInt(c.Viewer, 36) + "." +
		strconv.FormatInt(c.Video, 36) + "." + strconv.FormatInt(c.Issued.Unix(), 36)
	return body + "." + mac(s.sessionKey, body)
}

var (
	errBadSession     = errors.New("session token is not valid; get a new one from POST /api/v1/analytics/sessions")
	errExpiredSession = errors.New("session token expired; get a new one from POST /api/v1/analytics/sessions")
)

// parseSession checks a session token and returns its claims; tokens older
// than ttl (or from the future, beyond a minute of clock skew) are refused.
func (s signer) parseSession(tok string, now time.Time, ttl time.Duration) (sessionClaims, error) {
	if len(tok) > 128 {
		return sessionClaims{}, errBadSession
	}
	i := strings.LastIndexByte(tok, '.')
	if i < 0 || !strings.HasPrefix(tok, "s1.") || !hmac.Equal([]byte(tok[i+1:]), []byte(mac(s.sessionKey, tok[:i]))) {
		return sessionClaims{}, errBadSession
	}
	parts := strings.Split(tok[3:i], ".")
	if len(parts) != 4 {
		return sessionClaims{}, errBadSession
	}
	var n [4]int64
	for j, p := range parts {
		v, err := strconv.ParseInt(p, 36, 64)
		if err != nil || v < 0 {
			return sessionClaims{}, errBadSession
		}
		n[j] = v
	}
	c := sessionClaims{Session: n[0], Viewer: n[1], Video: n[2], Issued: time.Unix(n[3], 0)}
	if c.Session == 0 || c.Viewer == 0 {
		return sessionClaims{}, errBadSession
	}
	if age := now.Sub(c.Issued); age > ttl || age < -time.Minute {
		return sessionClaims{}, errExpiredSession
	}
	return c, nil
}
