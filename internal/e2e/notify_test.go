package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/blueprint-media/blueprint/client"
	"github.com/blueprint-media/blueprint/internal/config"
	"github.com/blueprint-media/blueprint/internal/notify/mailpit"
)

// follow makes c follow target through the social API and returns
// target's user ID.
func follow(ctx context.Context, t *testing.T, c *client.Client, target *client.Client) string {
	t.Helper()
	me, err := target.Me(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, http.MethodPost, "/api/v1/users/"+me.ID+"/follow", nil, nil); err != nil {
		t.Fatalf("follow %s: %v", me.Username, err)
	}
	return me.ID
}

// emailsSettled reports whether every email the platform queued has
// reached a final state (sent, failed or unknown), nothing waits for a
// digest, and no fan-out or live hint is in progress: from then on the
// SMTP server's mailbox is final.
func emailsSettled(t *testing.T, d testDB) bool {
	t.Helper()
	var open int
	err := d.db.R.QueryRow(`SELECT
		(SELECT COUNT(*) FROM notify_emails WHERE status IN ('pending', 'sending')) +
		(SELECT COUNT(*) FROM notify_deliveries WHERE channel = 'email' AND status = 'held') +
		(SELECT COUNT(*) FROM notify_fanout) + (SELECT COUNT(*) FROM notify_live)`).Scan(&open)
	if err != nil {
		t.Fatal(err)
	}
	return open == 0
}

// TestNotificationsEndToEnd: a creator uploads; a follower, with the
// notifications page open in a real Chromium, gets the live notification
// (bell count, toast, list entry) over SSE through the gateway, and
// exactly one email, read back from a real SMTP server (Mailpit) with an
// HTML and a text body.
func TestNotificationsEndToEnd(t *testing.T) {
	mp := mailpit.Start(t)
	gw := freeAddr(t) // a fixed address, so links in emails are right
	p := startPlatform(t, func(c *config.Config) {
		c.HTTPAddr = gw
		c.Notify.SMTP = config.SMTP{Host: mp.SMTPHost, Port: mp.SMTPPort, From: "Blueprint <noreply@blueprint.test>", TLS: "none", Timeout: 10 * time.Second}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	creator := p.user(t, "creator")
	follower := p.user(t, "follower")
	follow(ctx, t, follower, creator)

	bctx := newBrowser(t)
	bctx, bcancel := context.WithTimeout(bctx, 4*time.Minute)
	defer bcancel()
	base := p.urls.Gateway
	err := chromedp.Do(bctx,
		chromedp.Navigate(base+"/login?next=/notifications"),
		chromedp.WaitVisible(`input[name=username]`),
		chromedp.SendKeys(`input[name=username]`, "follower"),
		chromedp.SendKeys(`input[name=password]`, "password-follower"),
		chromedp.Submit(`input[name=password]`),
	)
	if err != nil {
		t.Fatalf("log in: %v", err)
	}
	settle(bctx, t, "/notifications", chromedp.WaitVisible(`#notification-list`))
	waitBrowser(bctx, t, "the bell to connect", `document.documentElement.dataset.bell === 'connected'`)
	if n, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById('bell-count').textContent`)); n != "" {
		t.Fatalf("bell shows %q before anything happened", n)
	}

	clip := filepath.Join(clipDir(t), "notify.mp4")
	makeClip(t, clip, 320, 240, 2, false)
	res, err := creator.Upload(ctx, clip, client.UploadOptions{Title: "Harbour at dawn"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := creator.WaitReady(ctx, res.VideoID, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	t.Logf("video ready at %s", time.Now().Format(time.TimeOnly))

	// Live, in the page: the bell count, a toast, and the list entry.
	waitBrowser(bctx, t, "the bell count", `document.getElementById('bell-count').textContent === '1'`)
	toast, err := chromedp.Run(bctx, chromedp.Evaluate[string](`(document.querySelector('.bp-toast') || {}).textContent || ''`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(toast, "creator uploaded a new video") || !strings.Contains(toast, "Harbour at dawn") {
		t.Fatalf("toast %q", toast)
	}
	first, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector('#notification-list li').textContent`))
	if !strings.Contains(first, "Harbour at dawn") {
		t.Fatalf("first list entry %q", first)
	}
	if n, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById('unread-count').textContent`)); n != "1" {
		t.Fatalf("unread on the page %q", n)
	}

	t.Logf("live notification shown at %s", time.Now().Format(time.TimeOnly))

	// Email: exactly one to the follower, once everything has settled.
	mp.WaitTo(t, "follower@example.com", 1, 2*time.Minute)
	d := openDB(t, p)
	deadline := time.Now().Add(time.Minute)
	for !emailsSettled(t, d) {
		if time.Now().After(deadline) {
			t.Fatal("emails never settled")
		}
		time.Sleep(100 * time.Millisecond)
	}
	msgs := mp.To(t, "follower@example.com")
	if len(msgs) != 1 {
		t.Fatalf("%d emails to the follower, want exactly 1", len(msgs))
	}
	m := mp.Message(t, msgs[0].ID)
	link := "http://" + gw + "/watch/" + res.VideoID
	if m.Subject != "creator uploaded a new video" || !strings.Contains(m.Text, "Harbour at dawn") || !strings.Contains(m.Text, link) ||
		!strings.Contains(m.HTML, "Harbour at dawn") || !strings.Contains(m.HTML, `href="`+link+`"`) {
		t.Fatalf("email %q:\ntext: %s\nhtml: %s", m.Subject, m.Text, m.HTML)
	}
	var subjects []string
	for _, s := range mp.To(t, "creator@example.com") {
		subjects = append(subjects, s.Subject)
	}
	if got := strings.Join(subjects, " | "); got != "Your video is ready | follower followed you" {
		t.Fatalf("creator's emails: %s", got)
	}

	t.Logf("emails checked at %s", time.Now().Format(time.TimeOnly))

	// Marking read in the page updates the bell.
	if err := chromedp.Do(bctx, chromedp.Click(`#mark-all`)); err != nil {
		t.Fatal(err)
	}
	settle(bctx, t, "/notifications", chromedp.WaitVisible(`#notification-list`))
	waitBrowser(bctx, t, "the bell to clear", `document.getElementById('bell-count').textContent === ''`)
	if dir := os.Getenv("BLUEPRINT_TEST_SCREENSHOTS"); dir != "" {
		png, _ := chromedp.Run(bctx, chromedp.FullScreenshot(90))
		os.WriteFile(filepath.Join(dir, "notifications.png"), png, 0o644)
	}
}

// waitBrowser polls a JavaScript condition in the page (the deadline only
// guards against a hang).
func waitBrowser(ctx context.Context, t *testing.T, what, cond string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](cond))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({bell: document.documentElement.dataset.bell, count: (document.getElementById('bell-count')||{}).textContent, url: location.href})`))
			t.Fatalf("timed out waiting for %s (%v); page: %s", what, err, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// notifyStatus is the part of /notify.json the routing test reads.
type notifyStatus struct {
	Hubs []struct {
		ID          string
		Connections int
		Channels    int
		Delivered   int64
		Dropped     int64
	}
	Registry []struct {
		ID    string
		Users int
	}
}

func adminJSON(t *testing.T, adminURL, path string, out any) {
	t.Helper()
	resp, err := http.Get(adminURL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

// metric returns the value of an unlabelled counter on an admin listener.
func metric(t *testing.T, adminURL, name string) float64 {
	t.Helper()
	resp, err := http.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var total float64
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok && (strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "{")) {
			f, _ := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
			total += f
		}
	}
	return total
}

// pidOf returns the process ID inside an instance ID
// (<name>-<host>-<pid>-<random>).
func pidOf(instance string) int {
	parts := strings.Split(instance, "-")
	if len(parts) < 3 {
		return 0
	}
	pid, _ := strconv.Atoi(parts[len(parts)-2])
	return pid
}

// TestRealtimeRoutedAcrossProcesses: two frontend processes behind one
// gateway. A user whose stream is held by the second process gets her
// notification there, a user on the first gets his on the first, and each
// message is published to exactly one instance — nobody receives a
// message for a user it does not hold. When both follow a creator while
// connected, their streams are resubscribed to the creator's channel, and
// the creator's upload reaches both live as one broadcast. When the second
// process stops, the registry forgets its instance.
func TestRealtimeRoutedAcrossProcesses(t *testing.T) {
	feA, feB, adminB := freeAddr(t), freeAddr(t), freeAddr(t)
	p := startPlatform(t, func(c *config.Config) {
		c.Roles = []string{"gateway", "frontend", "broker", "origin", "worker"} // worker: transcodes the upload
		c.Broker.Addr = "127.0.0.1:0"
		c.Frontend.Instances = 1
		c.Frontend.Addr = feA
		c.LB.Backends = []string{"http://" + feA, "http://" + feB}
		// Two frontend processes on one data directory: the embedded
		// key-value store belongs to one process, so feeds stay in SQL.
		c.KV.Feeds, c.KV.Activity = "sql", 0
	})
	procB := startProcess(t, p, "frontend-b", "--roles", "frontend", "--queue-url", p.urls.Broker, "--data-dir", p.dir,
		"--admin-addr", adminB, "--frontend-addr", feB, "--frontend-instances", "1", "--lock-ttl", "2s",
		// The embedded search index belongs to one process per data directory.
		"--search-enabled=false", "--kv-feeds", "sql", "--kv-activity-length", "0")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	healthDeadline := time.Now().Add(time.Minute)
	for {
		healthy := 0
		for _, b := range p.app.Status(ctx).Backends {
			if b.Healthy {
				healthy++
			}
		}
		if healthy == 2 {
			break
		}
		if time.Now().After(healthDeadline) {
			t.Fatal("the second frontend process never became healthy")
		}
		time.Sleep(50 * time.Millisecond)
	}
	adminA, adminBURL := p.urls.Admin, "http://"+adminB

	alice, bob, carol := p.user(t, "alice"), p.user(t, "bob"), p.user(t, "carol")
	// Open streams through the gateway until alice's is held by process B
	// and bob's by process A (the balancer alternates).
	open := func(c *client.Client, pid int) *client.Stream {
		t.Helper()
		for range 20 {
			s, err := c.NotificationStream(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			if pidOf(s.Instance) == pid {
				t.Cleanup(func() { s.Close() })
				return s
			}
			s.Close()
		}
		t.Fatalf("no stream landed on process %d", pid)
		return nil
	}
	sa := open(alice, procB.Process.Pid)
	sb := open(bob, os.Getpid())
	if sa.Instance == sb.Instance {
		t.Fatal("both streams on one instance")
	}
	// Both registries know both users.
	for _, admin := range []string{adminA, adminBURL} {
		for {
			var st notifyStatus
			adminJSON(t, admin, "/notify.json", &st)
			users := map[string]int{}
			for _, r := range st.Registry {
				users[r.ID] = r.Users
			}
			if users[sa.Instance] == 1 && users[sb.Instance] == 1 {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("registry at %s: %+v", admin, st.Registry)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	follow(ctx, t, carol, alice)
	follow(ctx, t, carol, bob)
	for name, s := range map[string]*client.Stream{"alice": sa, "bob": sb} {
		n, unread, err := s.WaitNotification()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n.Title != "carol followed you" || unread != 1 {
			t.Fatalf("%s got %+v (unread %d)", name, n, unread)
		}
	}
	routed := metric(t, adminA, "blueprint_realtime_routed_messages_total") + metric(t, adminBURL, "blueprint_realtime_routed_messages_total")
	dropped := metric(t, adminA, "blueprint_realtime_dropped_messages_total") + metric(t, adminBURL, "blueprint_realtime_dropped_messages_total")
	if routed != 2 || dropped != 0 {
		t.Fatalf("routed %v messages (want 2: one per notification, to one instance each), dropped %v (want 0)", routed, dropped)
	}
	for admin, want := range map[string]string{adminA: sb.Instance, adminBURL: sa.Instance} {
		var st notifyStatus
		adminJSON(t, admin, "/notify.json", &st)
		if len(st.Hubs) != 1 || st.Hubs[0].ID != want || st.Hubs[0].Connections != 1 || st.Hubs[0].Dropped != 0 {
			t.Fatalf("hubs at %s: %+v, want only %s", admin, st.Hubs, want)
		}
	}

	// Alice and bob follow carol while connected: each process's hub
	// subscribes to carol's channel; her upload is one broadcast that
	// reaches both.
	carolID := follow(ctx, t, alice, carol)
	follow(ctx, t, bob, carol)
	for _, admin := range []string{adminA, adminBURL} {
		for {
			var st notifyStatus
			adminJSON(t, admin, "/notify.json", &st)
			if len(st.Hubs) == 1 && st.Hubs[0].Channels == 1 {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("hubs at %s never subscribed to carol's channel: %+v", admin, st.Hubs)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	clip := filepath.Join(clipDir(t), "routed.mp4")
	makeClip(t, clip, 160, 120, 1, false)
	up, err := carol.Upload(ctx, clip, client.UploadOptions{Title: "Two frontends"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := carol.WaitReady(ctx, up.VideoID, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	var broadcastID string
	for name, s := range map[string]*client.Stream{"alice": sa, "bob": sb} {
		n, unread, err := s.WaitNotification()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n.Title != "carol uploaded a new video" || n.ActorID != carolID || unread != 2 {
			t.Fatalf("%s got %+v (unread %d)", name, n, unread)
		}
		if broadcastID != "" && n.ID != broadcastID {
			t.Fatalf("two live notifications for one upload: %s and %s", broadcastID, n.ID)
		}
		broadcastID = n.ID
	}
	broadcasts := metric(t, adminA, "blueprint_realtime_broadcasts_total") + metric(t, adminBURL, "blueprint_realtime_broadcasts_total")
	routed = metric(t, adminA, "blueprint_realtime_routed_messages_total") + metric(t, adminBURL, "blueprint_realtime_routed_messages_total")
	dropped = metric(t, adminA, "blueprint_realtime_dropped_messages_total") + metric(t, adminBURL, "blueprint_realtime_dropped_messages_total")
	if broadcasts != 1 || routed != 2 || dropped != 0 {
		t.Fatalf("upload: %v broadcasts (want 1), %v routed (want still 2), %v dropped", broadcasts, routed, dropped)
	}

	// Process B stops: alice's stream ends and A's registry forgets B.
	if err := procB.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := sa.Next(); err != nil {
			break
		}
	}
	for {
		var st notifyStatus
		adminJSON(t, adminA, "/notify.json", &st)
		gone := true
		for _, r := range st.Registry {
			if r.ID == sa.Instance {
				gone = false
			}
		}
		if gone {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("process B's instance still registered: %+v", st.Registry)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
