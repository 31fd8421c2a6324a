package app

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/blueprint-media/blueprint/internal/idgen"
	"github.com/blueprint-media/blueprint/internal/sqlstore/shard"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

// TestShardedComments runs the platform with database.shard_catalog (comments
// and likes sharded): the
// main database and the catalog on server a, shard cluster "a" (shards
// 0–2047) on server a's postgres database and cluster "b" (2048–4095) on
// server b. Comments and likes land on the cluster of their video's shard
// and nowhere else, lists and the site-wide newest list (fan-out over both
// clusters) read them back, the video's count follows through the
// clusters' outbox relays, and a shard moved from b to a while comments are
// posted on it loses none and doubles none.
func TestShardedComments(t *testing.T) {
	ctx := context.Background()
	aURL, bURL := testenv.StartPostgresLogical(t), testenv.StartPostgresLogical(t)
	serverA, serverB := openDB(t, aURL), openDB(t, bURL)
	for _, name := range []string{"blueprint", "catalog"} {
		if _, err := serverA.Exec(`CREATE DATABASE ` + name); err != nil {
			t.Fatal(err)
		}
	}
	mainURL := strings.Replace(aURL, "/postgres?", "/blueprint?", 1)
	catURL := strings.Replace(aURL, "/postgres?", "/catalog?", 1)
	cat, err := shard.OpenCatalog(ctx, catURL)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	if _, err := cat.Init(ctx, []shard.ClusterConfig{{Name: "a", Primary: aURL}, {Name: "b", Primary: bURL}}); err != nil {
		t.Fatal(err)
	}

	cfg := testConfig(t)
	cfg.Database.URL, cfg.Database.ShardCatalog = mainURL, catURL
	cfg.Social.CommentInterval = 0
	cfg.Gateway.RateLimit, cfg.Gateway.RateBurst = 100_000, 100_000
	a := start(t, cfg)
	if len(a.shardStores) != 2 {
		t.Fatalf("shard stores: %d, want 2 (a and b, neither is the main database)", len(a.shardStores))
	}
	do := apiCaller(t, a.URLs().Gateway)
	var tokens [2]string
	var users [2]int64
	for i, name := range []string{"alice", "bob"} {
		code, out := do("POST", "/api/v1/users", "", fmt.Sprintf(`{"username":%q,"email":"%s@example.com","password":"correct horse"}`, name, name))
		if code != 201 {
			t.Fatalf("sign up: %d %v", code, out)
		}
		users[i], _ = strconv.ParseInt(fmt.Sprint(out["id"]), 10, 64)
		code, out = do("POST", "/api/v1/sessions", "", fmt.Sprintf(`{"username":%q,"password":"correct horse"}`, name))
		if code != 200 {
			t.Fatalf("login: %d %v", code, out)
		}
		tokens[i] = out["token"].(string)
	}
	// Two of alice's videos, one in shard 5 (cluster a), one in shard 3000
	// (cluster b): IDs with those shard bits.
	mainDB := openDB(t, mainURL)
	videoIn := func(s int64) int64 { return 1<<40 | s<<(idgen.WorkerBits+idgen.SequenceBits) }
	vA, vB := videoIn(5), videoIn(3000)
	now := time.Now().Unix()
	for _, v := range []int64{vA, vB} {
		if _, err := mainDB.Exec(`INSERT INTO videos(id, user_id, title, status, source_key, source_size, created_at, updated_at, ready_at)
			VALUES ($1, $2, 'v', 'ready', '', 0, $3, $3, $3)`, v, users[0], now); err != nil {
			t.Fatal(err)
		}
	}
	comment := func(video int64, body string) (int, int64) {
		t.Helper()
		code, out := do("POST", fmt.Sprintf("/api/v1/videos/%d/comments", video), tokens[1], fmt.Sprintf(`{"body":%q}`, body))
		id, _ := strconv.ParseInt(fmt.Sprint(out["id"]), 10, 64)
		return code, id
	}
	rowsOn := func(db *sql.DB, s int64) []int64 {
		t.Helper()
		rows, err := db.Query(`SELECT id FROM comments WHERE shard = $1 ORDER BY id`, s)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var ids []int64
		for rows.Next() {
			var id int64
			rows.Scan(&id)
			ids = append(ids, id)
		}
		return ids
	}
	countIs := func(video int64, want int) { t.Helper(); counterIs(t, mainDB, "comments", video, want) }
	likesAre := func(video int64, want int) { t.Helper(); counterIs(t, mainDB, "likes", video, want) }
	likesOn := func(db *sql.DB, s int64) int {
		t.Helper()
		var n int
		if err := db.QueryRow(`SELECT COUNT(*) FROM likes WHERE shard = $1`, s).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// Likes: on the video's cluster, the count answered at once, the main
	// database's count through the events.
	for _, v := range []int64{vA, vB} {
		code, out := do("POST", fmt.Sprintf("/api/v1/videos/%d/like", v), tokens[1], "")
		if code != 200 || fmt.Sprint(out["likes"]) != "1" || out["liked"] != true {
			t.Fatalf("like %d: %d %v", v, code, out)
		}
		if code, out := do("POST", fmt.Sprintf("/api/v1/videos/%d/like", v), tokens[1], ""); code != 200 || fmt.Sprint(out["likes"]) != "1" {
			t.Fatalf("second like %d: %d %v (a like counts once)", v, code, out)
		}
	}
	if likesOn(serverA, 5) != 1 || likesOn(serverB, 3000) != 1 || likesOn(serverA, 3000) != 0 || likesOn(serverB, 5) != 0 {
		t.Errorf("likes on the clusters: a/5 %d, b/3000 %d, a/3000 %d, b/5 %d", likesOn(serverA, 5), likesOn(serverB, 3000), likesOn(serverA, 3000), likesOn(serverB, 5))
	}
	likesAre(vA, 1)
	likesAre(vB, 1)
	if code, out := do("DELETE", fmt.Sprintf("/api/v1/videos/%d/like", vA), tokens[1], ""); code != 200 || fmt.Sprint(out["likes"]) != "0" {
		t.Fatalf("unlike: %d %v", code, out)
	}
	likesAre(vA, 0)
	if likesOn(serverA, 5) != 0 {
		t.Error("the like is still on cluster a")
	}

	codeA, cA := comment(vA, "on a")
	codeB, cB := comment(vB, "on b")
	if codeA != 201 || codeB != 201 || idgen.Shard(cA) != 5 || idgen.Shard(cB) != 3000 {
		t.Fatalf("comments: %d %d, shards %d %d", codeA, codeB, idgen.Shard(cA), idgen.Shard(cB))
	}
	if got := rowsOn(serverA, 5); !slices.Equal(got, []int64{cA}) {
		t.Errorf("cluster a, shard 5: %v, want [%d]", got, cA)
	}
	if got := rowsOn(serverB, 3000); !slices.Equal(got, []int64{cB}) {
		t.Errorf("cluster b, shard 3000: %v, want [%d]", got, cB)
	}
	if got := append(rowsOn(serverB, 5), rowsOn(serverA, 3000)...); len(got) != 0 {
		t.Errorf("comments on the wrong cluster: %v", got)
	}
	var inMain int
	mainDB.QueryRow(`SELECT COUNT(*) FROM comments`).Scan(&inMain)
	if inMain != 0 {
		t.Errorf("%d comments in the main database", inMain)
	}
	code, out := do("GET", fmt.Sprintf("/api/v1/videos/%d/comments", vB), "", "")
	if list, _ := out["comments"].([]any); code != 200 || len(list) != 1 || list[0].(map[string]any)["username"] != "bob" {
		t.Errorf("comments of video b: %d %v", code, out)
	}
	countIs(vA, 1)
	countIs(vB, 1)
	code, out = do("GET", "/api/v1/comments/recent?limit=10", "", "")
	list, _ := out["comments"].([]any)
	if code != 200 || len(list) != 2 || fmt.Sprint(list[0].(map[string]any)["id"]) != strconv.FormatInt(cB, 10) {
		t.Errorf("recent comments across clusters: %d %v (want %d then %d)", code, out, cB, cA)
	}
	if code, _ := do("DELETE", fmt.Sprintf("/api/v1/comments/%d", cB), tokens[1], ""); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	if got := rowsOn(serverB, 3000); len(got) != 0 {
		t.Errorf("deleted comment still on cluster b: %v", got)
	}
	countIs(vB, 0)

	// Move shard 3000 from b to a while bob keeps commenting on video b.
	var mu sync.Mutex
	var acked []int64
	failed := 0
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			code, id := comment(vB, fmt.Sprintf("during the move %d", i))
			mu.Lock()
			if code == 201 {
				acked = append(acked, id)
			} else {
				failed++
			}
			mu.Unlock()
		}
	})
	time.Sleep(300 * time.Millisecond)
	res, err := shard.Move(ctx, cat, shard.MoveOptions{Shard: 3000, To: "a"})
	if err != nil {
		close(stop)
		wg.Wait()
		t.Fatalf("move: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	slices.Sort(acked)
	t.Logf("moved shard 3000 to a: %d rows, pause %v; %d comments acknowledged during the move, %d refused", res.Rows, res.Pause, len(acked), failed)
	if len(acked) < 10 {
		t.Fatalf("only %d comments were written during the move", len(acked))
	}
	if got := rowsOn(serverA, 3000); !slices.Equal(got, acked) {
		t.Errorf("cluster a holds %d comments of shard 3000, %d were acknowledged (lost or doubled)", len(got), len(acked))
	}
	if got := rowsOn(serverB, 3000); len(got) != 0 {
		t.Errorf("cluster b still holds %d comments of the moved shard", len(got))
	}
	if likesOn(serverA, 3000) != 1 || likesOn(serverB, 3000) != 0 {
		t.Errorf("the moved shard's like: %d on a, %d on b", likesOn(serverA, 3000), likesOn(serverB, 3000))
	}
	countIs(vB, len(acked))
	// Query latency of the cluster nodes, by host (a and b).
	if n := testutil.CollectAndCount(a.reg, "blueprint_db_query_duration_seconds"); n < 3 {
		t.Errorf("query latency series: %d, want the main database's and one per cluster", n)
	}
	// The admin page shows the map after the move and the move itself.
	resp, err := http.Get(a.URLs().Admin + "/db")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"Shards (comments, likes)", "0-2047,3000", "2048-2999,3001-4095", "b → a"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("/db lacks %q", want)
		}
	}
	code, out = do("GET", fmt.Sprintf("/api/v1/videos/%d/comments?limit=100", vB), "", "")
	if list, _ := out["comments"].([]any); code != 200 || len(list) != min(len(acked), 100) {
		t.Errorf("comments of video b after the move: %d, %d listed, want %d", code, len(list), min(len(acked), 100))
	}
}

// counterIs waits until the main database's videos.<column> of video is
// want (the counts follow events).
func counterIs(t *testing.T, db *sql.DB, column string, video int64, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := db.QueryRow(`SELECT `+column+` FROM videos WHERE id = $1`, video).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("video %d: %s = %d, want %d", video, column, n, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
