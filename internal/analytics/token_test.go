package analytics

import (
	"testing"
	"time"
)

func TestSessionToken(t *testing.T) {
	s := newSigner(testSecret)
	now := time.Unix(1_790_000_000, 0)
	c := sessionClaims{Session: 12345, Viewer: 1 << 60, Video: 99, Issued: now}
	tok := s.sessionToken(c)
	got, err := s.parseSession(tok, now.Add(time.Hour), 6*time.Hour)
	if err != nil || got != c {
		t.Fatalf("parse: %+v %v", got, err)
	}
	if _, err := s.parseSession(tok, now.Add(7*time.Hour), 6*time.Hour); err != errExpiredSession {
		t.Fatalf("expired token: %v", err)
	}
	if _, err := s.parseSession(tok, now.Add(-time.Hour), 6*time.Hour); err != errExpiredSession {
		t.Fatalf("token from the future: %v", err)
	}
	other := newSigner([]byte("another secret, 32 bytes long..."))
	if _, err := other.parseSession(tok, now, time.Hour); err != errBadSession {
		t.Fatalf("token of another secret: %v", err)
	}
	// Changing any claim breaks the signature.
	forged := "s1.9ix.1y2p0ij32e8e7.2r." + tok[len("s1.9ix.1y2p0ij32e8e7.2r."):]
	if _, err := s.parseSession(forged, now, time.Hour); err != errBadSession {
		t.Fatalf("forged token: %v", err)
	}
	id, ok := s.parseViewerCookie(s.viewerCookie(42))
	if !ok || id != 42 {
		t.Fatalf("viewer cookie: %d %v", id, ok)
	}
	if _, ok := s.parseViewerCookie("16.0000"); ok {
		t.Fatal("forged viewer cookie accepted")
	}
	if accountViewer(7) == accountViewer(8) || accountViewer(7) <= 0 {
		t.Fatal("account viewers collide or are not positive")
	}
}

func FuzzParseSession(f *testing.F) {
	s := newSigner(testSecret)
	now := time.Unix(1_790_000_000, 0)
	f.Add(s.sessionToken(sessionClaims{Session: 1, Viewer: 2, Video: 3, Issued: now}))
	f.Add("s1.....")
	f.Add(s.viewerCookie(5))
	f.Fuzz(func(t *testing.T, tok string) {
		if c, err := s.parseSession(tok, now, time.Hour); err == nil {
			if c.Session <= 0 || c.Viewer <= 0 || s.sessionToken(c) != tok {
				t.Fatalf("accepted %q as %+v", tok, c)
			}
		}
		if id, ok := s.parseViewerCookie(tok); ok && (id <= 0 || s.viewerCookie(id) != tok) {
			t.Fatalf("accepted viewer cookie %q as %d", tok, id)
		}
	})
}
