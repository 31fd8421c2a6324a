package notify

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	mail "github.com/wneessen/go-mail"
)

func (e *env) comment(t *testing.T, owner int64, n int, body string) {
	t.Helper()
	author := e.user(t, fmt.Sprintf("author%d", n))
	e.handle(t, "comment.created", 1, map[string]string{"comment_id": strconv.Itoa(n), "video_id": "1",
		"user_id": strconv.FormatInt(author, 10), "video_owner_id": strconv.FormatInt(owner, 10), "body": body})
}

func (e *env) statuses(t *testing.T, q string, args ...any) string {
	t.Helper()
	rows, err := e.db.R.Query(q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		rows.Scan(&s)
		out = append(out, s)
	}
	return strings.Join(out, ",")
}

// TestHourlyDigest: with hourly digests a user's emails wait for the
// window; read notifications are left out; at most one digest goes out
// per window; switching back to instant flushes what is held.
func TestHourlyDigest(t *testing.T) {
	e := newEnv(t, options{mail: true})
	ctx := context.Background()
	owner := e.user(t, "owner")
	if err := e.svc.SetPreferences(ctx, owner, Preferences{EmailDigest: DigestHourly}); err != nil {
		t.Fatal(err)
	}
	t0 := e.clk.Now()
	for i, body := range []string{"first!", "second!", "third!"} {
		e.comment(t, owner, i+1, body)
		e.clk.Add(10 * time.Minute)
	}
	if got := e.statuses(t, `SELECT status FROM notify_deliveries ORDER BY id`); got != "held,held,held" {
		t.Fatalf("deliveries %s", got)
	}
	assemble := func() int {
		t.Helper()
		n, err := e.svc.AssembleDigests(ctx)
		if err != nil {
			t.Fatal(err)
		}
		drain(t, e.svc.sendEmailOnce)
		return n
	}
	if n := assemble(); n != 0 {
		t.Fatalf("%d digests before the window passed", n)
	}
	items := e.inbox(t, owner)
	if _, err := e.svc.MarkRead(ctx, owner, []int64{items[1].ID}, false); err != nil { // "second!"
		t.Fatal(err)
	}
	e.clk.Set(t0.Add(61 * time.Minute))
	if n := assemble(); n != 1 {
		t.Fatalf("%d digests after the window, want 1", n)
	}
	if got := e.statuses(t, `SELECT status FROM notify_deliveries ORDER BY id`); got != "queued,skipped,queued" {
		t.Fatalf("deliveries %s", got)
	}
	msgs := e.mail.WaitTo(t, "owner@example.com", 1, 20*time.Second)
	m := e.mail.Message(t, msgs[0].ID)
	if m.Subject != "2 new notifications on Blueprint" || !strings.Contains(m.Text, "first!") || !strings.Contains(m.Text, "third!") ||
		strings.Contains(m.Text, "second!") || !strings.Contains(m.HTML, "in the last hour") || !strings.Contains(m.HTML, "third!") {
		t.Fatalf("digest %q:\n%s\n%s", m.Subject, m.Text, m.HTML)
	}

	// A new notification 9 minutes later waits a full window from the
	// last digest and from itself.
	e.clk.Set(t0.Add(70 * time.Minute))
	e.comment(t, owner, 4, "fourth!")
	for _, at := range []time.Duration{100 * time.Minute, 125 * time.Minute} {
		e.clk.Set(t0.Add(at))
		if n := assemble(); n != 0 {
			t.Fatalf("a second digest at +%s", at)
		}
	}
	e.clk.Set(t0.Add(131 * time.Minute))
	if n := assemble(); n != 1 {
		t.Fatal("no digest after the second window")
	}
	// Back to instant: held items go out at the next check, as a single
	// email when there is one.
	e.comment(t, owner, 5, "fifth!")
	if err := e.svc.SetPreferences(ctx, owner, Preferences{EmailDigest: DigestInstant}); err != nil {
		t.Fatal(err)
	}
	if n := assemble(); n != 1 {
		t.Fatal("held item not flushed after switching to instant")
	}
	e.comment(t, owner, 6, "sixth!") // instant: its own email at once
	drain(t, e.svc.sendEmailOnce)
	msgs = e.mail.WaitTo(t, "owner@example.com", 4, 20*time.Second)
	if len(msgs) != 4 {
		t.Fatalf("%d emails, want 4", len(msgs))
	}
	if got := e.statuses(t, `SELECT kind || ':' || status FROM notify_emails ORDER BY id`); got != "digest:sent,digest:sent,single:sent,single:sent" {
		t.Fatalf("emails %s", got)
	}
}

// TestEmailRetries: a temporary SMTP refusal (451) is retried after a
// backoff and then sent once; a permanent one (550) fails without a
// resend; after max_attempts temporary failures the email is given up.
func TestEmailRetries(t *testing.T) {
	e := newEnv(t, options{mail: true})
	e.svc.cfg.MaxAttempts = 3
	owner := e.user(t, "owner")

	e.mail.Chaos(t, map[string][2]int{"Recipient": {451, 100}})
	e.comment(t, owner, 1, "retry me")
	drain(t, e.svc.sendEmailOnce)
	if got := e.statuses(t, `SELECT status || ':' || attempts FROM notify_emails`); got != "pending:1" {
		t.Fatalf("after a 451: %s", got)
	}
	if more, _ := e.svc.sendEmailOnce(context.Background()); more {
		t.Fatal("retried before the backoff passed")
	}
	e.mail.Chaos(t, nil)
	e.clk.Add(31 * time.Second)
	drain(t, e.svc.sendEmailOnce)
	if got := e.statuses(t, `SELECT status || ':' || attempts FROM notify_emails`); got != "sent:2" {
		t.Fatalf("after the retry: %s", got)
	}
	if n := len(e.mail.WaitTo(t, "owner@example.com", 1, 20*time.Second)); n != 1 {
		t.Fatalf("%d emails", n)
	}

	e.mail.Chaos(t, map[string][2]int{"Recipient": {550, 100}})
	e.comment(t, owner, 2, "refuse me")
	drain(t, e.svc.sendEmailOnce)
	e.mail.Chaos(t, map[string][2]int{"Recipient": {451, 100}})
	e.comment(t, owner, 3, "give me up")
	for range 3 {
		drain(t, e.svc.sendEmailOnce)
		e.clk.Add(time.Hour)
	}
	e.mail.Chaos(t, nil)
	e.clk.Add(time.Hour)
	drain(t, e.svc.sendEmailOnce)
	if got := e.statuses(t, `SELECT status || ':' || attempts FROM notify_emails ORDER BY id`); got != "sent:2,failed:1,failed:3" {
		t.Fatalf("emails %s", got)
	}
	if n := len(e.mail.To(t, "owner@example.com")); n != 1 {
		t.Fatalf("%d emails delivered, want 1", n)
	}
}

// silentSMTP is a misbehaving SMTP server: it takes the whole message and
// then drops the connection instead of answering the end of DATA, so the
// client cannot know whether the message was accepted.
func silentSMTP(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				fmt.Fprintf(c, "220 silent ESMTP\r\n")
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					cmd := strings.ToUpper(strings.TrimSpace(line))
					switch {
					case strings.HasPrefix(cmd, "EHLO"):
						fmt.Fprintf(c, "250-silent\r\n250 8BITMIME\r\n")
					case strings.HasPrefix(cmd, "DATA"):
						fmt.Fprintf(c, "354 go ahead\r\n")
						for {
							l, err := r.ReadString('\n')
							if err != nil || l == ".\r\n" {
								return // took it all; never answers
							}
						}
					default:
						fmt.Fprintf(c, "250 ok\r\n")
					}
				}
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestAmbiguousSendIsNotRepeated: when the connection drops after the
// whole message went out but before the server's answer, the email is
// marked unknown and never sent again (at most once in that window); a
// send interrupted by a crash (left 'sending') is swept to unknown too.
func TestAmbiguousSendIsNotRepeated(t *testing.T) {
	e := newEnv(t, options{})
	m, err := NewMailer(SMTPConfig{Host: "127.0.0.1", Port: silentSMTP(t), From: "noreply@blueprint.test", TLS: "none", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e.svc.mailer = m
	owner := e.user(t, "owner")
	e.comment(t, owner, 1, "maybe")
	drain(t, e.svc.sendEmailOnce)
	e.clk.Add(24 * time.Hour)
	drain(t, e.svc.sendEmailOnce)
	if got := e.statuses(t, `SELECT status || ':' || attempts FROM notify_emails`); got != "unknown:1" {
		t.Fatalf("emails %s", got)
	}

	// A crash mid-send: the row stays 'sending' until the sweep.
	e.comment(t, owner, 2, "crash")
	if _, err := e.db.W.Exec(`UPDATE notify_emails SET status = 'sending', updated_at = ? WHERE status = 'pending'`, e.clk.Now().Unix()); err != nil {
		t.Fatal(err)
	}
	e.svc.sweepStale(context.Background())
	if got := e.statuses(t, `SELECT status FROM notify_emails ORDER BY id`); got != "unknown,sending" {
		t.Fatalf("swept too early: %s", got)
	}
	e.clk.Add(staleSending + time.Second)
	e.svc.sweepStale(context.Background())
	if got := e.statuses(t, `SELECT status FROM notify_emails ORDER BY id`); got != "unknown,unknown" {
		t.Fatalf("after the sweep: %s", got)
	}
}

// TestEmailServerDown: a server that cannot be reached is a retry, never
// a failure on the first attempt.
func TestEmailServerDown(t *testing.T) {
	e := newEnv(t, options{})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	m, err := NewMailer(SMTPConfig{Host: "127.0.0.1", Port: port, From: "noreply@blueprint.test", TLS: "none", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e.svc.mailer = m
	owner := e.user(t, "owner")
	e.comment(t, owner, 1, "later")
	drain(t, e.svc.sendEmailOnce)
	if got := e.statuses(t, `SELECT status || ':' || attempts FROM notify_emails`); got != "pending:1" {
		t.Fatalf("emails %s", got)
	}
}

func TestClassify(t *testing.T) {
	for name, c := range map[string]struct {
		err  error
		want outcome
	}{
		"nil":               {nil, outcomeSent},
		"dial":              {errors.New("dial failed: connection refused"), outcomeRetry},
		"rcpt temp":         {&mail.SendError{Reason: mail.ErrSMTPRcptTo}, outcomeRetry},
		"data close no rep": {&mail.SendError{Reason: mail.ErrSMTPDataClose}, outcomeUnknown},
		"ambiguous":         {&mail.SendError{Reason: mail.ErrAmbiguous}, outcomeUnknown},
		"bad sender":        {&mail.SendError{Reason: mail.ErrGetSender}, outcomeFailed},
		"wrapped":           {fmt.Errorf("send failed: %w", &mail.SendError{Reason: mail.ErrSMTPDataClose}), outcomeUnknown},
	} {
		if got := classify(c.err, mail.NewMsg()); got != c.want {
			t.Errorf("%s: %s, want %s", name, got, c.want)
		}
	}
}

func TestMailerConfig(t *testing.T) {
	for _, c := range []SMTPConfig{
		{Host: "", From: "a@b.c"},
		{Host: "mx", From: "not an address"},
		{Host: "mx", From: "a@b.c", TLS: "ssl3"},
	} {
		if _, err := NewMailer(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	m, err := NewMailer(SMTPConfig{Host: "mx.example", Port: 587, From: "a@b.c", User: "me", Password: "hunter22"})
	if err != nil {
		t.Fatal(err)
	}
	if d := m.Describe(); strings.Contains(d, "hunter22") || !strings.Contains(d, "mx.example:587") {
		t.Fatalf("describe %q", d)
	}
}
