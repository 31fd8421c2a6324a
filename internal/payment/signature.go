package payment

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader carries the signature of the webhooks Blueprint sends to
// creators' endpoints and receives from the test provider. Its value has
// Stripe's shape, "t=<unix seconds>,v1=<hex HMAC-SHA256>", where the MAC is
// over "<t>.<raw body>" with the endpoint's secret; several v1 values may
// be present while a secret is rotated.
const SignatureHeader = "Blueprint-Signature"

// Webhook verification errors.
var (
	ErrBadSignatureHeader = errors.New("payment: malformed signature header")
	ErrBadSignature       = errors.New("payment: no valid signature")
	ErrStaleSignature     = errors.New("payment: signature timestamp outside the tolerance")
)

// maxSignatureHeader bounds the header a verifier looks at.
const maxSignatureHeader = 2048

// Sign returns the signature header value for payload at time t.
func Sign(secret []byte, t time.Time, payload []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, payload))
}

func mac(secret []byte, ts string, payload []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(payload)
	return m.Sum(nil)
}

// Verify checks a signature header for payload: a well-formed header, a
// timestamp at most tolerance away from now (so a captured request cannot
// be replayed later), and at least one v1 MAC made with secret. It returns
// the signed timestamp.
func Verify(secret []byte, header string, payload []byte, now time.Time, tolerance time.Duration) (time.Time, error) {
	ts, sigs, err := ParseSignatureHeader(header)
	if err != nil {
		return time.Time{}, err
	}
	t := time.Unix(ts, 0)
	if d := now.Sub(t); d > tolerance || d < -tolerance {
		return t, ErrStaleSignature
	}
	want := mac(secret, strconv.FormatInt(ts, 10), payload)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return t, nil
		}
	}
	return t, ErrBadSignature
}

// ParseSignatureHeader splits "t=<unix>,v1=<hex>[,v1=<hex>...]" into the
// timestamp and the v1 MACs. Unknown schemes (v0, ...) are ignored, as
// Stripe does; a header without t or without any v1 is malformed.
func ParseSignatureHeader(header string) (int64, [][]byte, error) {
	if len(header) == 0 || len(header) > maxSignatureHeader {
		return 0, nil, ErrBadSignatureHeader
	}
	var ts int64 = -1
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return 0, nil, ErrBadSignatureHeader
		}
		switch k {
		case "t":
			if ts != -1 || len(v) == 0 || len(v) > 12 {
				return 0, nil, ErrBadSignatureHeader
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return 0, nil, ErrBadSignatureHeader
			}
			ts = n
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != sha256.Size {
				return 0, nil, ErrBadSignatureHeader
			}
			if len(sigs) == 8 {
				return 0, nil, ErrBadSignatureHeader
			}
			sigs = append(sigs, b)
		}
	}
	if ts == -1 || len(sigs) == 0 {
		return 0, nil, ErrBadSignatureHeader
	}
	return ts, sigs, nil
}
