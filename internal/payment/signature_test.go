package payment_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/payment"
)

func TestSignature(t *testing.T) {
	secret := []byte("whsec_test")
	body := []byte(`{"id":"evt_1"}`)
	now := time.Unix(1_800_000_000, 0)
	h := payment.Sign(secret, now, body)
	if _, err := payment.Verify(secret, h, body, now.Add(4*time.Minute), 5*time.Minute); err != nil {
		t.Fatalf("genuine: %v", err)
	}
	// Rotation: any of several v1 values may match.
	other := payment.Sign([]byte("old secret"), now, body)
	rotated := h + "," + other[strings.Index(other, "v1="):]
	if _, err := payment.Verify([]byte("old secret"), rotated, body, now, time.Minute); err != nil {
		t.Fatalf("rotated: %v", err)
	}
	for _, c := range []struct {
		name   string
		secret []byte
		header string
		body   []byte
		at     time.Time
		want   error
	}{
		{"wrong secret", []byte("nope"), h, body, now, payment.ErrBadSignature},
		{"changed body", secret, h, []byte(`{"id":"evt_2"}`), now, payment.ErrBadSignature},
		{"too old", secret, h, body, now.Add(6 * time.Minute), payment.ErrStaleSignature},
		{"too new", secret, h, body, now.Add(-6 * time.Minute), payment.ErrStaleSignature},
		{"empty", secret, "", body, now, payment.ErrBadSignatureHeader},
		{"no t", secret, h[strings.Index(h, "v1="):], body, now, payment.ErrBadSignatureHeader},
		{"no v1", secret, "t=1800000000", body, now, payment.ErrBadSignatureHeader},
		{"two t", secret, "t=1800000000," + h, body, now, payment.ErrBadSignatureHeader},
		{"short mac", secret, "t=1800000000,v1=abcd", body, now, payment.ErrBadSignatureHeader},
		{"negative t", secret, "t=-5,v1=" + strings.Repeat("0", 64), body, now, payment.ErrBadSignatureHeader},
		{"v0 only", secret, "t=1800000000,v0=" + strings.Repeat("0", 64), body, now, payment.ErrBadSignatureHeader},
		{"huge", secret, "t=1," + strings.Repeat("v1="+strings.Repeat("0", 64)+",", 40), body, now, payment.ErrBadSignatureHeader},
	} {
		if _, err := payment.Verify(c.secret, c.header, c.body, c.at, 5*time.Minute); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// FuzzParseSignatureHeader: the parser never panics, and whatever it
// accepts has a timestamp and 1 to 8 MACs of 32 bytes.
func FuzzParseSignatureHeader(f *testing.F) {
	f.Add("t=1800000000,v1=" + strings.Repeat("ab", 32))
	f.Add("t=1,v1=" + strings.Repeat("00", 32) + ",v0=zz")
	f.Add("t=,v1=")
	f.Add(",,,=")
	f.Add("t=99999999999999999999,v1=00")
	f.Fuzz(func(t *testing.T, h string) {
		ts, sigs, err := payment.ParseSignatureHeader(h)
		if err != nil {
			return
		}
		if ts < 0 || len(sigs) == 0 || len(sigs) > 8 {
			t.Fatalf("%q: ts %d, %d sigs", h, ts, len(sigs))
		}
		for _, s := range sigs {
			if len(s) != 32 {
				t.Fatalf("%q: mac of %d bytes", h, len(s))
			}
		}
	})
}

// FuzzVerify: only the exact signed body verifies.
func FuzzVerify(f *testing.F) {
	f.Add([]byte(`{"a":1}`), []byte(`{"a":2}`))
	f.Add([]byte{}, []byte{0})
	f.Fuzz(func(t *testing.T, body, other []byte) {
		secret := []byte("s3cret")
		now := time.Unix(1_800_000_000, 0)
		h := payment.Sign(secret, now, body)
		if _, err := payment.Verify(secret, h, body, now, time.Minute); err != nil {
			t.Fatalf("own signature refused: %v", err)
		}
		if _, err := payment.Verify(secret, h, other, now, time.Minute); err == nil && string(other) != string(body) {
			t.Fatalf("signature of %q accepted for %q", body, other)
		}
	})
}
