package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/client"
	"github.com/blueprint-media/blueprint/internal/config"
	"github.com/blueprint-media/blueprint/internal/payment"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

// TestPlatformOnPostgres runs the whole platform with database.url on a
// throwaway PostgreSQL server: sign up, upload a real video that ffmpeg
// makes ready, follow, like, comment, the notifications in both inboxes,
// and search (the PostgreSQL search driver, chosen because database.url
// is PostgreSQL) finds the video and its creator. The rows are then read
// back from PostgreSQL itself, and no SQLite file was created. A tip
// settles into the ledger, and the admin listener's /db page shows the
// store.
func TestPlatformOnPostgres(t *testing.T) {
	dsn := testenv.StartPostgres(t, false)
	p := startPlatform(t, func(c *config.Config) {
		c.Database.URL = dsn
		c.Payment.TestProvider.SettleDelay = 100 * time.Millisecond
		c.Payment.PollInterval = 200 * time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	creator := p.user(t, "pgcreator")
	fan := p.user(t, "pgfan")
	creatorID := follow(ctx, t, fan, creator)

	clip := filepath.Join(clipDir(t), "heron.mp4")
	makeClip(t, clip, 320, 240, 2, true)
	up, err := creator.Upload(ctx, clip, client.UploadOptions{Title: "Grey heron fishing", Description: "Patience at the pond. #birds"})
	if err != nil {
		t.Fatal(err)
	}
	v, err := creator.WaitReady(ctx, up.VideoID, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != "ready" {
		t.Fatalf("video %s: %+v", v.Status, v)
	}
	if err := fan.Do(ctx, http.MethodPost, "/api/v1/videos/"+up.VideoID+"/like", nil, nil); err != nil {
		t.Fatalf("like: %v", err)
	}
	if err := fan.Do(ctx, http.MethodPost, "/api/v1/videos/"+up.VideoID+"/comments", map[string]string{"body": "Lovely light"}, nil); err != nil {
		t.Fatalf("comment: %v", err)
	}
	var social struct {
		Likes int `json:"likes"`
	}
	if err := fan.Do(ctx, http.MethodGet, "/api/v1/videos/"+up.VideoID+"/social", nil, &social); err != nil || social.Likes != 1 {
		t.Fatalf("social counts: %+v, %v", social, err)
	}

	// Inboxes: the fan hears of the upload; the creator of the follower,
	// the finished video and the comment. Delivery is asynchronous (outbox,
	// broker, consumer); the poll bound only stops a broken run.
	inbox := func(c *client.Client, want ...string) {
		t.Helper()
		var got []string
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
			page, err := c.Notifications(ctx, "", 50, false)
			if err != nil {
				t.Fatal(err)
			}
			got = got[:0]
			for _, n := range page.Notifications {
				got = append(got, n.Type)
			}
			missing := false
			for _, w := range want {
				missing = missing || !slices.Contains(got, w)
			}
			if !missing {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("inbox has %v, want %v", got, want)
			}
		}
	}
	inbox(fan, "new_upload")
	inbox(creator, "new_follower", "video_ready", "comment")

	anon := client.New(p.urls.Gateway)
	found := func(q string, opts client.SearchOptions, id string) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			res, err := anon.Search(ctx, q, opts)
			if err != nil {
				t.Fatalf("search %q: %v", q, err)
			}
			for _, h := range res.Hits {
				if h.ID == id {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("search %q never found %s: %+v", q, id, res)
			}
		}
	}
	found("heron", client.SearchOptions{}, up.VideoID)
	found("pgcreat", client.SearchOptions{Type: "creators"}, creatorID)

	// A tip settles through the test provider, lands in the ledger and
	// the creator's balance; reconciliation finds no drift.
	tip, err := fan.Tip(ctx, client.IdempotencyKey(), client.TipRequest{CreatorUsername: "pgcreator", Amount: 2500, Currency: "EUR", PaymentMethod: "pm_card_visa", Message: "for the heron"})
	if err != nil {
		t.Fatalf("tip: %v", err)
	}
	if done, err := fan.WaitPayment(ctx, tip.ID, 50*time.Millisecond); err != nil || done.State != "succeeded" {
		t.Fatalf("tip settled: %+v, %v", done, err)
	}
	if bal, err := creator.Balance(ctx, creatorID); err != nil || len(bal.Balances) != 1 || bal.Balances[0].Available != 2375 {
		t.Fatalf("balance: %+v, %v", bal, err)
	}
	resp, err := http.Post(p.urls.Admin+"/payments/reconcile", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var rec payment.Reconciliation
	json.NewDecoder(resp.Body).Decode(&rec)
	resp.Body.Close()
	if resp.StatusCode != 200 || rec.Checked < 1 || len(rec.Drift) != 0 {
		t.Fatalf("reconciliation: %d %+v", resp.StatusCode, rec)
	}

	// The rows are in PostgreSQL.
	db, err := sqlstore.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var status string
	var likes, comments, follows, notes, entries int
	err = db.R.QueryRowContext(ctx, `SELECT status, likes, comments, (SELECT COUNT(*) FROM follows), (SELECT COUNT(*) FROM notifications),
		(SELECT COUNT(*) FROM ledger_entries) FROM videos WHERE title = ?`,
		"Grey heron fishing").Scan(&status, &likes, &comments, &follows, &notes, &entries)
	if err != nil || status != "ready" || likes != 1 || comments != 1 || follows != 1 || notes < 4 || entries < 2 {
		t.Fatalf("in PostgreSQL: status %q likes %d comments %d follows %d notifications %d ledger entries %d, %v", status, likes, comments, follows, notes, entries, err)
	}
	// The operator's database page on the admin listener.
	var st sqlstore.Status
	adminJSON(t, p.urls.Admin, "/db.json", &st)
	users := int64(-1)
	for _, tb := range st.Tables {
		if tb.Name == "users" {
			users = tb.Rows
		}
	}
	if st.Engine != "postgres" || st.Version < 9 || users != 2 {
		t.Fatalf("/db.json: engine %q version %d users %d", st.Engine, st.Version, users)
	}
	if resp, body := get(t, p.urls.Admin+"/db"); resp.StatusCode != 200 || !strings.Contains(string(body), "postgres://") || !strings.Contains(string(body), "notifications") {
		t.Fatalf("/db: %d\n%s", resp.StatusCode, body)
	}
	if _, err := os.Stat(filepath.Join(p.dir, "blueprint.db")); !os.IsNotExist(err) {
		t.Fatalf("a SQLite file was created beside PostgreSQL: %v", err)
	}
}
