package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func startBroker(t *testing.T, dir, addr string) *Broker {
	t.Helper()
	b := NewBroker(BrokerConfig{StoreDir: dir, Addr: addr}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return b
}

// startQueue starts a broker in a temp dir and connects to it; both stop
// when the test ends.
func startQueue(t *testing.T) *Queue {
	t.Helper()
	b := startBroker(t, t.TempDir(), "")
	t.Cleanup(func() { b.Stop(context.Background()) })
	q, err := Connect(context.Background(), "", b, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	return q
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPublishConsumeDedup(t *testing.T) {
	ctx := context.Background()
	q := startQueue(t)
	for i := range 10 {
		for range 2 { // every job published twice: stored once
			if err := q.Publish(ctx, "test", fmt.Sprint("job-", i), map[string]int{"n": i}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if d, _ := q.Depth(ctx); d != 10 {
		t.Fatalf("depth = %d, want 10", d)
	}
	var mu sync.Mutex
	seen := map[int]int{}
	c, err := q.Consume(ctx, ConsumeConfig{Name: "t", Kind: "test", AckWait: 5 * time.Second, MaxDeliver: 3, Concurrency: 2},
		func(ctx context.Context, d *Delivery) error {
			var p struct{ N int }
			if err := d.Decode(&p); err != nil {
				return err
			}
			mu.Lock()
			seen[p.N]++
			mu.Unlock()
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all jobs acked", func() bool { d, _ := q.Depth(ctx); return d == 0 })
	c.Stop(ctx)
	for i := range 10 {
		if seen[i] != 1 {
			t.Errorf("job %d handled %d times", i, seen[i])
		}
	}
}

func TestRetryAndPermanent(t *testing.T) {
	ctx := context.Background()
	q := startQueue(t)
	q.Publish(ctx, "flaky", "flaky-1", map[string]string{"kind": "flaky"})
	q.Publish(ctx, "flaky", "poison-1", map[string]string{"kind": "poison"})
	var flaky, poison atomic.Int32
	c, _ := q.Consume(ctx, ConsumeConfig{Name: "f", Kind: "flaky", AckWait: 5 * time.Second, MaxDeliver: 5, Concurrency: 1},
		func(ctx context.Context, d *Delivery) error {
			var p struct{ Kind string }
			d.Decode(&p)
			if p.Kind == "poison" {
				poison.Add(1)
				return fmt.Errorf("bad input: %w", ErrPermanent)
			}
			if flaky.Add(1) == 1 {
				return errors.New("transient")
			}
			if d.NumDelivered != 2 {
				t.Errorf("NumDelivered = %d on the retry", d.NumDelivered)
			}
			return nil
		})
	defer c.Stop(ctx)
	waitFor(t, "queue drained", func() bool { d, _ := q.Depth(ctx); return d == 0 })
	if flaky.Load() != 2 || poison.Load() != 1 {
		t.Fatalf("flaky ran %d times (want 2), poison %d (want 1)", flaky.Load(), poison.Load())
	}
}

func TestUnackedJobIsRedeliveredAfterBrokerRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := startBroker(t, dir, "127.0.0.1:0")
	url := b.ClientURL()
	if url == "" {
		t.Fatal("no client URL")
	}
	q, err := Connect(ctx, url, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	q.Publish(ctx, "work", "w-1", map[string]int{"n": 1})
	started := make(chan struct{})
	c, _ := q.Consume(ctx, ConsumeConfig{Name: "w", Kind: "work", AckWait: time.Second, MaxDeliver: 5, Concurrency: 1},
		func(ctx context.Context, d *Delivery) error {
			close(started)
			<-ctx.Done() // a handler that never finishes (like a killed worker)
			return ctx.Err()
		})
	<-started
	stopCtx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	c.Stop(stopCtx)
	cancel()
	q.Close()
	b.Stop(ctx)

	b2 := startBroker(t, dir, "127.0.0.1:0")
	defer b2.Stop(ctx)
	q2, err := Connect(ctx, b2.ClientURL(), nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	var got atomic.Int32
	c2, _ := q2.Consume(ctx, ConsumeConfig{Name: "w", Kind: "work", AckWait: time.Second, MaxDeliver: 5, Concurrency: 1},
		func(ctx context.Context, d *Delivery) error { got.Add(1); return nil })
	defer c2.Stop(ctx)
	waitFor(t, "redelivery after restart", func() bool { return got.Load() == 1 })
	waitFor(t, "queue drained", func() bool { d, _ := q2.Depth(ctx); return d == 0 })
}

// TestEnsureStream: a missing stream is created, the same configuration
// again changes nothing, a changed one is applied, and streams ensured
// while consumers are created beside them (every process does both at
// start) stay race-free.
func TestEnsureStream(t *testing.T) {
	ctx := context.Background()
	q := startQueue(t)
	cfg := jetstream.StreamConfig{Name: "ENSURE", Subjects: []string{"ensure.>"}, Storage: jetstream.FileStorage, Duplicates: time.Minute, MaxAge: time.Hour}
	for range 2 {
		st, err := EnsureStream(ctx, q.JetStream(), cfg)
		if err != nil || st.CachedInfo().Config.MaxAge != time.Hour {
			t.Fatalf("EnsureStream: %v", err)
		}
	}
	cfg.MaxAge = 2 * time.Hour
	if st, err := EnsureStream(ctx, q.JetStream(), cfg); err != nil || st.CachedInfo().Config.MaxAge != 2*time.Hour {
		t.Fatalf("a changed MaxAge was not applied: %v", err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if _, err := EnsureStream(ctx, q.JetStream(), cfg); err != nil {
				t.Error(err)
			}
			if _, err := q.JetStream().CreateOrUpdateConsumer(ctx, "ENSURE", jetstream.ConsumerConfig{Durable: fmt.Sprint("c", i), AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}
