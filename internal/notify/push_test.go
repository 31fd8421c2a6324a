package notify

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	webpush "github.com/SherClockHolmes/webpush-go"
)

var b64 = base64.RawURLEncoding

// browserKeys are a browser's subscription keys.
type browserKeys struct {
	priv *ecdh.PrivateKey
	auth []byte
}

func newBrowserKeys(t *testing.T) browserKeys {
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, 16)
	rand.Read(auth)
	return browserKeys{priv: k, auth: auth}
}

func (k browserKeys) subscription(endpoint string) string {
	return fmt.Sprintf(`{"endpoint":%q,"expirationTime":null,"keys":{"p256dh":%q,"auth":%q}}`,
		endpoint, b64.EncodeToString(k.priv.PublicKey().Bytes()), b64.EncodeToString(k.auth))
}

// decrypt opens an aes128gcm Web Push body as the browser would (RFC 8291).
func (k browserKeys) decrypt(body []byte) ([]byte, error) {
	if len(body) < 21 {
		return nil, fmt.Errorf("body of %d bytes", len(body))
	}
	salt, rs, idlen := body[:16], binary.BigEndian.Uint32(body[16:20]), int(body[20])
	if rs < 18 || len(body) < 21+idlen {
		return nil, fmt.Errorf("bad header: rs %d idlen %d", rs, idlen)
	}
	asPublic := body[21 : 21+idlen]
	ciphertext := body[21+idlen:]
	pub, err := ecdh.P256().NewPublicKey(asPublic)
	if err != nil {
		return nil, fmt.Errorf("key id is not a P-256 key: %w", err)
	}
	secret, err := k.priv.ECDH(pub)
	if err != nil {
		return nil, err
	}
	info := append(append([]byte("WebPush: info\x00"), k.priv.PublicKey().Bytes()...), asPublic...)
	ikm, err := hkdf.Key(sha256.New, secret, k.auth, string(info), 32)
	if err != nil {
		return nil, err
	}
	cek, _ := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: aes128gcm\x00", 16)
	nonce, _ := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: nonce\x00", 12)
	block, _ := aes.NewCipher(cek)
	gcm, _ := cipher.NewGCM(block)
	plain, err := gcm.Open(nil, nonce, ciphertext, nil)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	plain = bytes.TrimRight(plain, "\x00")
	if len(plain) == 0 || plain[len(plain)-1] != 2 {
		return nil, fmt.Errorf("no last-record delimiter")
	}
	return plain[:len(plain)-1], nil
}

// pushService is a test push service: it checks every request's VAPID
// token and encryption headers, decrypts the payload with the browser's
// keys, and answers per path.
type pushService struct {
	t      *testing.T
	srv    *httptest.Server
	keys   browserKeys
	vapid  string // expected VAPID public key
	mu     sync.Mutex
	got    map[string][]string // path → decrypted payloads
	status map[string][]int    // path → statuses to answer, in turn (last repeats)
	errs   []string
}

func newPushService(t *testing.T, keys browserKeys, vapidPublic string) *pushService {
	p := &pushService{t: t, keys: keys, vapid: vapidPublic, got: map[string][]string{}, status: map[string][]int{}}
	p.srv = httptest.NewTLSServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *pushService) fail(format string, args ...any) {
	p.mu.Lock()
	p.errs = append(p.errs, fmt.Sprintf(format, args...))
	p.mu.Unlock()
}

func (p *pushService) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.Method != http.MethodPost || r.Header.Get("Content-Encoding") != "aes128gcm" || r.Header.Get("Content-Type") != "application/octet-stream" {
		p.fail("%s with Content-Encoding %q", r.Method, r.Header.Get("Content-Encoding"))
	}
	if ttl, err := strconv.Atoi(r.Header.Get("TTL")); err != nil || ttl <= 0 {
		p.fail("TTL %q", r.Header.Get("TTL"))
	}
	if err := p.checkVAPID(r); err != nil {
		p.fail("vapid: %v", err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	plain, err := p.keys.decrypt(body)
	if err != nil {
		p.fail("payload: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.got[r.URL.Path] = append(p.got[r.URL.Path], string(plain))
	codes := p.status[r.URL.Path]
	code := http.StatusCreated
	if len(codes) > 0 {
		code = codes[0]
		if len(codes) > 1 {
			p.status[r.URL.Path] = codes[1:]
		}
	}
	p.mu.Unlock()
	w.WriteHeader(code)
}

// checkVAPID verifies the Authorization header: "vapid t=<JWT>, k=<key>"
// with an ES256 JWT signed by k, aud the push service origin, exp within
// 24 hours, sub a mailto: contact (RFC 8292).
func (p *pushService) checkVAPID(r *http.Request) error {
	h := r.Header.Get("Authorization")
	rest, ok := strings.CutPrefix(h, "vapid ")
	if !ok {
		return fmt.Errorf("authorization %q", h)
	}
	var token, key string
	for part := range strings.SplitSeq(rest, ",") {
		part = strings.TrimSpace(part)
		if v, ok := strings.CutPrefix(part, "t="); ok {
			token = v
		}
		if v, ok := strings.CutPrefix(part, "k="); ok {
			key = v
		}
	}
	if key != p.vapid {
		return fmt.Errorf("k=%s, want the server's key %s", key, p.vapid)
	}
	pub, err := b64.DecodeString(key)
	if err != nil {
		return err
	}
	x, y := elliptic.Unmarshal(elliptic.P256(), pub)
	if x == nil {
		return fmt.Errorf("k is not a P-256 point")
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return fmt.Errorf("token has %d parts", len(parts))
	}
	var header struct{ Alg, Typ string }
	var claims struct {
		Aud string `json:"aud"`
		Exp int64  `json:"exp"`
		Sub string `json:"sub"`
	}
	hb, _ := b64.DecodeString(parts[0])
	cb, _ := b64.DecodeString(parts[1])
	sig, _ := b64.DecodeString(parts[2])
	if json.Unmarshal(hb, &header) != nil || json.Unmarshal(cb, &claims) != nil || len(sig) != 64 {
		return fmt.Errorf("malformed token")
	}
	if header.Alg != "ES256" {
		return fmt.Errorf("alg %s", header.Alg)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(&ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return fmt.Errorf("bad signature")
	}
	if claims.Aud != "https://"+r.Host {
		return fmt.Errorf("aud %s, want https://%s", claims.Aud, r.Host)
	}
	if exp := time.Unix(claims.Exp, 0); time.Until(exp) <= 0 || time.Until(exp) > 24*time.Hour {
		return fmt.Errorf("exp %s", exp)
	}
	if claims.Sub != "mailto:ops@blueprint.test" {
		return fmt.Errorf("sub %q", claims.Sub)
	}
	return nil
}

func testPusher(t *testing.T, client *http.Client) *Pusher {
	t.Helper()
	pub, priv, err := LoadVAPIDKeys(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPusher(PushConfig{Subject: "mailto:ops@blueprint.test", PublicKey: pub, PrivateKey: priv, AllowPrivateEndpoints: true, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestWebPush: subscriptions made through the API get each notification
// once, encrypted for the browser and signed with the VAPID key; a
// subscription answered 404/410 is dropped at once; a 503 is retried
// later for that subscription only.
func TestWebPush(t *testing.T) {
	keys := newBrowserKeys(t)
	// The push service needs the pusher's key and the pusher the
	// service's client: make the service first with a placeholder.
	svc := newPushService(t, keys, "")
	pusher := testPusher(t, svc.srv.Client())
	svc.vapid = pusher.PublicKey()
	e := newEnv(t, options{pusher: pusher})
	owner := e.user(t, "owner")
	svc.status["/flaky"] = []int{503, 201}
	svc.status["/gone"] = []int{410}

	post := func(body string) int {
		resp, err := http.Post(fmt.Sprintf("%s/api/v1/push/subscriptions?as=%d", e.srv.URL, owner), "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, path := range []string{"/ok", "/gone", "/flaky"} {
		if code := post(keys.subscription(svc.srv.URL + path)); code != http.StatusCreated {
			t.Fatalf("subscribe %s: %d", path, code)
		}
	}
	resp, _ := http.Get(fmt.Sprintf("%s/api/v1/push/key?as=%d", e.srv.URL, owner))
	var k struct{ Key string }
	json.NewDecoder(resp.Body).Decode(&k)
	resp.Body.Close()
	if k.Key != pusher.PublicKey() {
		t.Fatalf("key endpoint %q", k.Key)
	}

	e.comment(t, owner, 1, "push me")
	drain(t, e.svc.sendPushOnce)
	if got := e.statuses(t, `SELECT status || ':' || attempts FROM notify_deliveries WHERE channel = 'push'`); got != "pending:1" {
		t.Fatalf("after the 503: %s", got)
	}
	if n := e.count(t, `SELECT COUNT(*) FROM notify_push_subscriptions WHERE endpoint LIKE '%/gone'`); n != 0 {
		t.Fatal("the 410 subscription was kept")
	}
	e.clk.Add(31 * time.Second)
	drain(t, e.svc.sendPushOnce)
	if got := e.statuses(t, `SELECT status || ':' || attempts FROM notify_deliveries WHERE channel = 'push'`); got != "sent:2" {
		t.Fatalf("after the retry: %s", got)
	}
	svc.mu.Lock()
	defer svc.mu.Unlock()
	if len(svc.errs) > 0 {
		t.Fatalf("push service saw: %s", strings.Join(svc.errs, "; "))
	}
	if len(svc.got["/ok"]) != 1 || len(svc.got["/gone"]) != 1 || len(svc.got["/flaky"]) != 2 {
		t.Fatalf("requests per endpoint: %v", svc.got)
	}
	var p pushPayload
	if err := json.Unmarshal([]byte(svc.got["/ok"][0]), &p); err != nil {
		t.Fatal(err)
	}
	if p.Type != TypeComment || p.Body != "push me" || !strings.HasPrefix(p.URL, "https://media.example/watch/") || p.ID == "" {
		t.Fatalf("payload %+v", p)
	}

	// Unsubscribe; bad subscriptions are refused with 400.
	req, _ := http.NewRequest(http.MethodDelete, fmt.Sprintf("%s/api/v1/push/subscriptions?as=%d", e.srv.URL, owner), strings.NewReader(`{"endpoint":"`+svc.srv.URL+`/ok"}`))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("unsubscribe: %v %v", err, resp)
	}
	if code := post(`{"endpoint":"http://push.example/x","keys":{"p256dh":"AA","auth":"AA"}}`); code != http.StatusBadRequest {
		t.Fatalf("bad subscription: %d", code)
	}
}

// TestPushOnlyWithSubscriptions: no push delivery rows for a user with
// no subscription; the limit per user drops the oldest.
func TestPushOnlyWithSubscriptions(t *testing.T) {
	pusher := testPusher(t, nil)
	pusher.cfg.MaxSubscriptionsPerUser = 2
	e := newEnv(t, options{pusher: pusher})
	owner := e.user(t, "owner")
	e.comment(t, owner, 1, "nobody listens")
	if n := e.count(t, `SELECT COUNT(*) FROM notify_deliveries WHERE channel = 'push'`); n != 0 {
		t.Fatalf("%d push rows without subscriptions", n)
	}
	keys := newBrowserKeys(t)
	for i := range 3 {
		sub, err := ParseSubscription([]byte(keys.subscription(fmt.Sprintf("https://push.example/%d", i))), false)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.svc.AddSubscription(context.Background(), owner, sub, "test"); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.statuses(t, `SELECT endpoint FROM notify_push_subscriptions ORDER BY id`); got != "https://push.example/1,https://push.example/2" {
		t.Fatalf("subscriptions %s", got)
	}
}

// TestPushRefusesPrivateAddresses: without allow_private_endpoints the
// sender will not connect to loopback, whatever the endpoint's name.
func TestPushRefusesPrivateAddresses(t *testing.T) {
	keys := newBrowserKeys(t)
	svc := newPushService(t, keys, "")
	priv, pub, _ := webpush.GenerateVAPIDKeys()
	if _, err := NewPusher(PushConfig{PublicKey: priv, PrivateKey: pub}); err == nil {
		t.Fatal("swapped VAPID keys accepted")
	}
	p, err := NewPusher(PushConfig{PublicKey: pub, PrivateKey: priv})
	if err != nil {
		t.Fatal(err)
	}
	var sub Subscription
	json.Unmarshal([]byte(keys.subscription(svc.srv.URL+"/ok")), &sub)
	if _, err := p.send(context.Background(), sub, []byte(`{}`)); err == nil || !strings.Contains(err.Error(), "not public") {
		t.Fatalf("sent to loopback: %v", err)
	}
	for ip, public := range map[string]bool{
		"127.0.0.1": false, "10.1.2.3": false, "192.168.1.1": false, "172.16.0.1": false, "169.254.169.254": false,
		"100.64.0.1": false, "0.0.0.0": false, "::1": false, "fe80::1": false, "fc00::1": false,
		"8.8.8.8": true, "142.250.0.1": true, "2607:f8b0::1": true,
	} {
		if got := publicIP(net.ParseIP(ip)); got != public {
			t.Errorf("publicIP(%s) = %v", ip, got)
		}
	}
}

func TestParseSubscription(t *testing.T) {
	keys := newBrowserKeys(t)
	good := keys.subscription("https://fcm.googleapis.com/fcm/send/abc")
	if _, err := ParseSubscription([]byte(good), false); err != nil {
		t.Fatal(err)
	}
	pk := b64.EncodeToString(keys.priv.PublicKey().Bytes())
	auth := b64.EncodeToString(keys.auth)
	notOnCurve := make([]byte, 65)
	notOnCurve[0] = 4
	for name, body := range map[string]string{
		"not json":       `{`,
		"no endpoint":    `{"keys":{}}`,
		"http":           fmt.Sprintf(`{"endpoint":"http://push.example/x","keys":{"p256dh":%q,"auth":%q}}`, pk, auth),
		"credentials":    fmt.Sprintf(`{"endpoint":"https://u:p@push.example/x","keys":{"p256dh":%q,"auth":%q}}`, pk, auth),
		"loopback":       fmt.Sprintf(`{"endpoint":"https://127.0.0.1/x","keys":{"p256dh":%q,"auth":%q}}`, pk, auth),
		"localhost":      fmt.Sprintf(`{"endpoint":"https://localhost/x","keys":{"p256dh":%q,"auth":%q}}`, pk, auth),
		"metadata":       fmt.Sprintf(`{"endpoint":"https://169.254.169.254/x","keys":{"p256dh":%q,"auth":%q}}`, pk, auth),
		"long endpoint":  fmt.Sprintf(`{"endpoint":"https://push.example/%s","keys":{"p256dh":%q,"auth":%q}}`, strings.Repeat("a", 3000), pk, auth),
		"short key":      fmt.Sprintf(`{"endpoint":"https://push.example/x","keys":{"p256dh":"AAAA","auth":%q}}`, auth),
		"off curve":      fmt.Sprintf(`{"endpoint":"https://push.example/x","keys":{"p256dh":%q,"auth":%q}}`, b64.EncodeToString(notOnCurve), auth),
		"short auth":     fmt.Sprintf(`{"endpoint":"https://push.example/x","keys":{"p256dh":%q,"auth":"AAAA"}}`, pk),
		"not base64 key": fmt.Sprintf(`{"endpoint":"https://push.example/x","keys":{"p256dh":"!!!","auth":%q}}`, auth),
	} {
		if _, err := ParseSubscription([]byte(body), false); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	if _, err := ParseSubscription([]byte(keys.subscription("https://127.0.0.1:8443/x")), true); err != nil {
		t.Fatalf("loopback with allow_private_endpoints: %v", err)
	}
}

// TestVAPIDKeysPersist: generated once, kept 0600, the same on reload.
func TestVAPIDKeysPersist(t *testing.T) {
	dir := t.TempDir()
	pub1, priv1, err := LoadVAPIDKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	pub2, priv2, err := LoadVAPIDKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if pub1 != pub2 || priv1 != priv2 {
		t.Fatal("keys changed on reload")
	}
	st, err := os.Stat(filepath.Join(dir, "vapid.json"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode().Perm())
	}
	if _, err := NewPusher(PushConfig{PublicKey: pub1, PrivateKey: priv1}); err != nil {
		t.Fatal(err)
	}
}

// FuzzParseSubscription: untrusted subscription bodies never panic, and
// whatever is accepted is an https endpoint with keys of the right size.
func FuzzParseSubscription(f *testing.F) {
	f.Add([]byte(`{"endpoint":"https://push.example/x","keys":{"p256dh":"BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4","auth":"BTBZMqHH6r4Tts7J_aSIgg"}}`))
	f.Add([]byte(`{"endpoint":"https://[::1]/x","keys":{"p256dh":"","auth":""}}`))
	f.Add([]byte(`{"endpoint":"https://push.example/x#frag"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSubscription(b, false)
		if err != nil {
			return
		}
		if !strings.HasPrefix(s.Endpoint, "https://") || len(s.Endpoint) > maxEndpointLen {
			t.Fatalf("accepted endpoint %q", s.Endpoint)
		}
		if k, err := decodeKey(s.Keys.P256dh, 65); err != nil || k[0] != 4 {
			t.Fatalf("accepted key %q", s.Keys.P256dh)
		}
	})
}
