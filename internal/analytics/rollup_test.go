package analytics

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// ingest sends sessions × batches batches of heartbeats, each playing 1 s,
// and returns the number of events.
func ingest(t *testing.T, e *env, video int64, sessions, batches int) int {
	t.Helper()
	n := 0
	for range sessions {
		p := e.newViewer().session(video)
		p.send(EventIn{Type: "view_start", Pos: pos(0)})
		n++
		for i := range batches {
			p.send(EventIn{Type: "heartbeat", Pos: pos(float64(i + 1)), Played: 1}, EventIn{Type: "heartbeat", Pos: pos(float64(i + 1)), Played: 0})
			n += 2
		}
	}
	return n
}

func totals(t *testing.T, e *env, video int64) (views int64, watchMs int64, events int64) {
	t.Helper()
	ctx := context.Background()
	rg := LastDays(e.clock.now(), 2)
	st, err := e.s.VideoStats(ctx, video, rg)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := e.s.PlatformStats(ctx, rg)
	if err != nil {
		t.Fatal(err)
	}
	return st.Views, int64(st.WatchSeconds * 1000), pl.Events
}

// TestRollupRestartAndRedelivery: the rollup stops mid-stream (its leader
// lost) and a new one takes over; messages applied before are delivered
// again by hand. Every event counts exactly once.
func TestRollupRestartAndRedelivery(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.FetchBatch = 7 })
	e.videos[1] = VideoInfo{CreatorID: 9, Duration: 100, Ready: true}
	const sessions, batches = 20, 15
	events := ingest(t, e, 1, sessions, batches)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.s.RunRollup(ctx) }()
	for {
		p, _ := e.s.PipelineState(context.Background())
		if p.RollupSeq >= 100 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	p, _ := e.s.PipelineState(context.Background())
	if p.RollupSeq >= p.StreamLastSeq {
		t.Fatalf("rollup finished before it was stopped (%d of %d); make the stream longer", p.RollupSeq, p.StreamLastSeq)
	}

	// Redeliver everything from the start to a fresh rollup, as a
	// consumer that lost its acks would.
	cons, err := e.q.JetStream().CreateOrUpdateConsumer(context.Background(), StreamName, jetstream.ConsumerConfig{
		Durable: "redeliver", AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy, MaxAckPending: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(int(p.RollupSeq), jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if len(msgs) != int(p.RollupSeq) {
		t.Fatalf("redelivered %d messages, want %d", len(msgs), p.RollupSeq)
	}
	before, beforeWatch, beforeEvents := totals(t, e, 1)
	if err := newRollup(e.s).applyBatch(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	if v, w, n := totals(t, e, 1); v != before || w != beforeWatch || n != beforeEvents {
		t.Fatalf("redelivery changed the rollups: views %d→%d watch %d→%d events %d→%d", before, v, beforeWatch, w, beforeEvents, n)
	}

	// A new leader finishes the stream.
	e.rollUp()
	views, watch, n := totals(t, e, 1)
	if views != sessions || watch != sessions*batches*1000 || n != int64(events) {
		t.Fatalf("views %d watch %d events %d, want %d %d %d", views, watch, n, sessions, sessions*batches*1000, events)
	}
	ret, total, err := e.s.Retention(context.Background(), 1)
	if err != nil || total != sessions || len(ret) != batches+1 || ret[batches] != 1 {
		t.Fatalf("retention %v (total %d): %v", ret, total, err)
	}
}

// TestRollupSplitBrain: two rollups (a deposed leader that still runs and
// the new one) consume the stream at the same time through their own
// consumers. The watermark in the rollup transaction lets each batch be
// applied by one of them only, and only in stream order.
func TestRollupSplitBrain(t *testing.T) { rollupSplitBrain(t, newEnv(t, nil)) }

// TestRollupSplitBrainPostgres: the same on PostgreSQL, where the two
// transactions really run at once and the watermark row lock orders them.
func TestRollupSplitBrainPostgres(t *testing.T) { rollupSplitBrain(t, newEnvPostgres(t, nil)) }

func rollupSplitBrain(t *testing.T, e *env) {
	e.videos[1] = VideoInfo{CreatorID: 9, Duration: 100, Ready: true}
	const sessions, batches = 10, 20
	events := ingest(t, e, 1, sessions, batches)
	last, _ := e.s.PipelineState(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for i, size := range []int{5, 13} {
		cons, err := e.q.JetStream().CreateOrUpdateConsumer(ctx, StreamName, jetstream.ConsumerConfig{
			Durable: fmt.Sprintf("brain-%d", i), AckPolicy: jetstream.AckExplicitPolicy, AckWait: 5 * time.Second, MaxAckPending: 100,
		})
		if err != nil {
			t.Fatal(err)
		}
		r := newRollup(e.s)
		wg.Go(func() {
			for ctx.Err() == nil {
				p, _ := e.s.PipelineState(ctx)
				if p.RollupSeq >= last.StreamLastSeq {
					return
				}
				batch, err := cons.Fetch(size, jetstream.FetchMaxWait(100*time.Millisecond))
				if err != nil {
					continue
				}
				var msgs []jetstream.Msg
				for m := range batch.Messages() {
					msgs = append(msgs, m)
				}
				if len(msgs) > 0 {
					if err := r.applyBatch(ctx, msgs); err != nil {
						r.reset()
						for _, m := range msgs {
							m.Nak()
						}
					}
				}
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal("the two rollups did not finish the stream")
	}
	views, watch, n := totals(t, e, 1)
	if views != sessions || watch != sessions*batches*1000 || n != int64(events) {
		t.Fatalf("views %d watch %d events %d, want %d %d %d", views, watch, n, sessions, sessions*batches*1000, events)
	}
	ret, total, err := e.s.Retention(context.Background(), 1)
	if err != nil || total != sessions || len(ret) != batches+1 || ret[batches] != 1 {
		t.Fatalf("retention %v (total %d): %v", ret, total, err)
	}
}

// TestMetricsLint: every metric the service exports passes promlint.
func TestMetricsLint(t *testing.T) {
	e := newEnv(t, nil)
	e.videos[1] = VideoInfo{CreatorID: 9, Duration: 100, Ready: true}
	ingest(t, e, 1, 2, 2)
	e.rollUp()
	if _, err := e.s.ExportOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) < 8 {
		t.Fatalf("only %d metric families", len(mfs))
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}
