package app

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

// TestReplicaReadYourWrites runs the platform on a PostgreSQL primary with
// a streaming replica that applies WAL 40 ms late (recovery_min_apply_delay)
// and alternates follow and unfollow with a read of the follow state, as a
// browser would (cookies): every read shows the write before it, while the
// replica serves reads — the writer's own once it has caught up, and
// anonymous ones.
func TestReplicaReadYourWrites(t *testing.T) {
	c := testenv.StartPGCluster(t, 1)
	replica, primary := openDB(t, c.Replicas[0].URL), openDB(t, c.Primary.URL)
	// ALTER SYSTEM writes the server's own postgresql.auto.conf: run it
	// on the replica, which is where WAL is applied.
	if _, err := replica.Exec(`ALTER SYSTEM SET recovery_min_apply_delay = '40ms'`); err != nil {
		t.Fatal(err)
	}
	if _, err := replica.Exec(`SELECT pg_reload_conf()`); err != nil {
		t.Fatal(err)
	}

	cfg := testConfig(t)
	cfg.Database.URL = c.Primary.URL
	cfg.Database.Replicas = []string{c.Replicas[0].URL}
	cfg.Gateway.RateLimit, cfg.Gateway.RateBurst = 100_000, 100_000
	a := start(t, cfg)
	if !a.db.HasReplicas() {
		t.Fatal("database.replicas did not reach the store")
	}
	gw := a.URLs().Gateway
	do := apiCaller(t, gw)
	var tokens [2]string
	var ids [2]int64
	for i, name := range []string{"reader", "creator"} {
		if code, out := do("POST", "/api/v1/users", "", fmt.Sprintf(`{"username":%q,"email":"%s@example.com","password":"correct horse"}`, name, name)); code != 201 {
			t.Fatalf("sign up: %d %v", code, out)
		} else {
			ids[i], _ = strconv.ParseInt(fmt.Sprint(out["id"]), 10, 64)
		}
		code, out := do("POST", "/api/v1/sessions", "", fmt.Sprintf(`{"username":%q,"password":"correct horse"}`, name))
		if code != 200 {
			t.Fatalf("login: %d %v", code, out)
		}
		tokens[i] = out["token"].(string)
	}
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	call := func(method, path string) (int, []byte, http.Header) {
		t.Helper()
		req, _ := http.NewRequest(method, gw+path, nil)
		req.Header.Set("Authorization", "Bearer "+tokens[0])
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body, resp.Header
	}
	reads := a.db.Routing()
	if len(reads) != 2 || reads[0].Role != "primary" || reads[1].Role != "replica" {
		t.Fatalf("routing: %+v", reads)
	}
	// Replica reads counted by the router.
	replicaReads := func() float64 {
		mfs, err := a.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "blueprint_db_reads_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "target" && l.GetValue() == "replica" {
						return m.GetCounter().GetValue()
					}
				}
			}
		}
		return 0
	}
	const pairs = 400
	stale, fromReplica := 0, replicaReads()
	statsPath := fmt.Sprintf("/api/v1/users/%d/stats", ids[1])
	followPath := fmt.Sprintf("/api/v1/users/%d/follow", ids[1])
	for i := range pairs {
		method, want := "POST", true
		if i%2 == 1 {
			method, want = "DELETE", false
		}
		code, body, h := call(method, followPath)
		if code/100 != 2 {
			t.Fatalf("%s follow: %d %s", method, code, body)
		}
		if h.Get(sqlstore.ReadAfterHeader) == "" {
			t.Fatalf("a write's response carries no %s", sqlstore.ReadAfterHeader)
		}
		if i%4 == 3 {
			// Now and then give the replica time to catch up, so that
			// the writer's reads are served there too.
			waitReplay(t, replica, primary)
		}
		code, body, _ = call("GET", statsPath)
		if code != 200 {
			t.Fatalf("stats: %d %s", code, body)
		}
		var st struct {
			Followed bool `json:"followed_by_me"`
		}
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		if st.Followed != want {
			stale++
		}
	}
	fromReplica = replicaReads() - fromReplica
	t.Logf("%d write→read pairs: %d stale, %.0f reads served by the replica", pairs, stale, fromReplica)
	if stale != 0 {
		t.Errorf("%d of %d reads did not see the write before them", stale, pairs)
	}
	if fromReplica < pairs/8 {
		t.Errorf("only %.0f reads went to the replica: it is not serving", fromReplica)
	}
	// An anonymous visitor (no cookie) reads from the replica right away.
	before := replicaReads()
	resp, err := http.Get(gw + "/api/v1/videos")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || replicaReads() <= before {
		t.Errorf("anonymous read: %d, replica reads %v → %v", resp.StatusCode, before, replicaReads())
	}
	// The status page shows the routing.
	resp, err = http.Get(a.URLs().Admin + "/db.json")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), `"routing"`) || !strings.Contains(string(page), `"replica"`) {
		t.Errorf("/db.json lacks the routing: %s", page)
	}
	if testutil.CollectAndCount(a.reg, "blueprint_db_replica_lag_bytes_max") != 1 {
		t.Error("no replica lag metric")
	}
	// Query latency by server: the primary and the replica both served.
	if n := testutil.CollectAndCount(a.reg, "blueprint_db_query_duration_seconds"); n != 2 {
		t.Errorf("query latency series: %d, want 2 (primary, replica1)", n)
	}
}

// waitReplay waits until the replica has replayed everything the primary
// has written so far.
func waitReplay(t *testing.T, replica, primary *sql.DB) {
	t.Helper()
	var target string
	if err := primary.QueryRow(`SELECT pg_current_wal_lsn()::text`).Scan(&target); err != nil {
		t.Fatal(err)
	}
	for range 500 {
		var caught bool
		if err := replica.QueryRow(`SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn`, target).Scan(&caught); err != nil {
			t.Fatal(err)
		}
		if caught {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the replica never caught up")
}

// TestPrimaryFailover kills the primary under a running platform and
// promotes its replica (pg_ctl promote, as an operator or Patroni would).
// database.url lists both servers with target_session_attrs=read-write, so
// new write connections find the promoted server: sign-ups resume, and
// what was written before the failover is still there.
func TestPrimaryFailover(t *testing.T) {
	c := testenv.StartPGCluster(t, 1)
	cfg := testConfig(t)
	cfg.Database.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/postgres?sslmode=disable&target_session_attrs=read-write",
		c.Primary.Port, c.Replicas[0].Port)
	cfg.Database.Replicas = []string{c.Replicas[0].URL}
	a := start(t, cfg)
	do := apiCaller(t, a.URLs().Gateway)
	signUp := func(name string) (int, map[string]any) {
		return do("POST", "/api/v1/users", "", fmt.Sprintf(`{"username":%q,"email":"%s@example.com","password":"correct horse"}`, name, name))
	}
	if code, out := signUp("before"); code != 201 {
		t.Fatalf("sign up: %d %v", code, out)
	}
	replica, primary := openDB(t, c.Replicas[0].URL), openDB(t, c.Primary.URL)
	waitReplay(t, replica, primary)
	primary.Close()
	c.Stop(t, c.Primary)
	c.Promote(t, c.Replicas[0])
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		code, out := signUp(fmt.Sprintf("after%d", i))
		if code == 201 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes never resumed after the promotion: %d %v", code, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, out := do("POST", "/api/v1/sessions", "", `{"username":"before","password":"correct horse"}`); code != 200 {
		t.Fatalf("the user written before the failover cannot log in: %d %v", code, out)
	}
}

// openDB opens a plain pgx pool on url, closed when the test ends.
func openDB(t *testing.T, url string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
