// Package mailpit runs a throwaway Mailpit (a real SMTP server with a REST
// API) for tests of the email channel: started on free loopback ports with
// its own temporary directory, stopped when the test ends. The binary is
// installed at /usr/local/bin/mailpit by scripts/deps.sh; a missing binary
// fails the test with that hint, it never skips it.
package mailpit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/testenv"
)

// Server is a running Mailpit.
type Server struct {
	SMTPHost string
	SMTPPort int
	APIURL   string
}

// Start runs Mailpit with chaos (SMTP error injection) available.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("mailpit")
	if err != nil {
		if _, statErr := os.Stat("/usr/local/bin/mailpit"); statErr == nil {
			bin = "/usr/local/bin/mailpit"
		} else {
			t.Fatalf("mailpit is not installed: run scripts/deps.sh (it installs github.com/axllent/mailpit to /usr/local/bin)")
		}
	}
	dir := t.TempDir()
	smtpPort, httpPort := testenv.FreePort(t), testenv.FreePort(t)
	cmd := exec.Command(bin,
		"--smtp", "127.0.0.1:"+strconv.Itoa(smtpPort),
		"--listen", "127.0.0.1:"+strconv.Itoa(httpPort),
		"--database", filepath.Join(dir, "mailpit.db"),
		"--disable-version-check", "--enable-chaos",
		"--smtp-auth-accept-any", "--smtp-auth-allow-insecure",
	)
	logf, err := os.Create(filepath.Join(dir, "mailpit.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("mailpit: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	s := &Server{SMTPHost: "127.0.0.1", SMTPPort: smtpPort, APIURL: "http://127.0.0.1:" + strconv.Itoa(httpPort)}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.APIURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-done:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("mailpit exited:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("mailpit did not become ready:\n%s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Address is a mailbox.
type Address struct {
	Name    string
	Address string
}

// Summary is one message in a listing.
type Summary struct {
	ID        string
	MessageID string
	From      Address
	To        []Address
	Subject   string
}

// Message is one message with its bodies.
type Message struct {
	ID              string
	MessageID       string
	From            Address
	To              []Address
	Subject         string
	Text            string
	HTML            string
	ListUnsubscribe struct{ Header string }
}

func (s *Server) get(t testing.TB, path string, out any) {
	t.Helper()
	resp, err := http.Get(s.APIURL + path)
	if err != nil {
		t.Fatalf("mailpit api: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("mailpit api %s: %d %s", path, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("mailpit api %s: %v", path, err)
	}
}

// Messages returns every message received, newest first.
func (s *Server) Messages(t testing.TB) []Summary {
	t.Helper()
	var out struct{ Messages []Summary }
	s.get(t, "/api/v1/messages?limit=1000", &out)
	return out.Messages
}

// To returns the messages received for the address.
func (s *Server) To(t testing.TB, address string) []Summary {
	t.Helper()
	var out []Summary
	for _, m := range s.Messages(t) {
		for _, a := range m.To {
			if a.Address == address {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

// Message returns one message with its text and HTML bodies.
func (s *Server) Message(t testing.TB, id string) Message {
	t.Helper()
	var m Message
	s.get(t, "/api/v1/message/"+url.PathEscape(id), &m)
	return m
}

// WaitTo waits until at least n messages for address have arrived and
// returns them (the deadline only guards against a hang).
func (s *Server) WaitTo(t testing.TB, address string, n int, within time.Duration) []Summary {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := s.To(t, address)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("mailpit: %d messages for %s after %s, want %d", len(got), address, within, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Chaos sets the SMTP errors Mailpit injects: for each stage ("Sender",
// "Recipient", "Authentication") an SMTP code and a probability in
// percent. An empty map turns chaos off.
func (s *Server) Chaos(t testing.TB, triggers map[string][2]int) {
	t.Helper()
	body := map[string]map[string]int{}
	for stage, v := range triggers {
		body[stage] = map[string]int{"ErrorCode": v[0], "Probability": v[1]}
	}
	for _, stage := range []string{"Sender", "Recipient", "Authentication"} {
		if _, ok := body[stage]; !ok {
			body[stage] = map[string]int{"ErrorCode": 451, "Probability": 0}
		}
	}
	b, _ := json.Marshal(body)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, s.APIURL+"/api/v1/chaos", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("mailpit chaos: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		rb, _ := io.ReadAll(resp.Body)
		t.Fatalf("mailpit chaos: %d %s", resp.StatusCode, rb)
	}
}

// String describes the server.
func (s *Server) String() string {
	return fmt.Sprintf("mailpit smtp %s:%d api %s", s.SMTPHost, s.SMTPPort, s.APIURL)
}
