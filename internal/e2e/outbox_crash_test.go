package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/blueprint-media/blueprint/internal/outbox"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

// TestOutboxRelayKilledMidFlight: the whole platform runs as a process
// while thousands of events wait in the outbox; it is killed with SIGKILL
// while the relay is publishing them, and restarted. Afterwards every event
// is on the event stream exactly once and marked published.
func TestOutboxRelayKilledMidFlight(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	const n = 5000
	db, err := sqlstore.Open(ctx, filepath.Join(dir, "blueprint.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	brokerAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	adminAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	run := func(name string) *exec.Cmd {
		cmd := exec.Command(blueprintBinary(t), "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--edge-addr", "127.0.0.1:0",
			"--admin-addr", adminAddr, "--broker-addr", brokerAddr, "--lock-ttl", "1s", "--log-format", "text")
		logf, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				cmd.Process.Signal(syscall.SIGTERM)
				cmd.Wait()
			}
			logf.Close()
			if t.Failed() {
				b, _ := os.ReadFile(logf.Name())
				t.Logf("%s log:\n%s", name, b)
			}
		})
		deadline := time.Now().Add(60 * time.Second)
		for {
			resp, err := http.Get("http://" + adminAddr + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return cmd
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never became ready", name)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	published := func() (p int) {
		t.Helper()
		if err := db.R.QueryRow(`SELECT COUNT(*) FROM events WHERE kind = 'test.relay' AND published_at IS NOT NULL`).Scan(&p); err != nil {
			t.Fatal(err)
		}
		return p
	}

	first := run("first")
	// The events arrive in one transaction, as if a burst of changes had
	// just committed.
	err = db.Tx(ctx, func(tx *sql.Tx) error {
		for i := range n {
			if err := outbox.Insert(ctx, tx, "test.relay", int64(i+1), map[string]int{"n": i}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for published() < n/10 {
		if time.Now().After(deadline) {
			t.Fatal("the relay never started publishing")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	atKill := published()
	t.Logf("killed with %d of %d events marked published", atKill, n)
	if atKill >= n {
		t.Fatalf("the relay finished before the kill (%d); nothing was tested", atKill)
	}

	run("second")
	deadline = time.Now().Add(120 * time.Second)
	for published() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d events published after the restart", published(), n)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Read the whole event stream back: every event exactly once.
	nc, err := nats.Connect("nats://" + brokerAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctx, outbox.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"events.test.relay"}})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]int{}
	total := 0
	for total < n+1 {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			var e outbox.Event
			if err := json.Unmarshal(m.Data(), &e); err != nil {
				t.Fatal(err)
			}
			seen[e.SubjectID]++
			got++
		}
		total += got
		if got == 0 {
			break
		}
	}
	if total != n || len(seen) != n {
		t.Fatalf("event stream holds %d messages for %d distinct events; want %d exactly once", total, len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Fatalf("event %d on the stream %d times", id, c)
		}
	}
}
