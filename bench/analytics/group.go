package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/blueprint-media/blueprint/internal/analytics"
)

// groupReq is one scheduled batch waiting for the message that holds it.
type groupReq struct {
	at   time.Time
	done chan struct{}
}

// peerGroupOpenLoop is the peer with group commit: the batches scheduled
// at eps events/s are handed to committers, each of which merges the
// batches waiting when it is free (at most maxGroup) into one stream
// message, publishes it, and answers all of them after its PubAck. With
// the broker syncing once per message (SyncAlways), this is the ceiling of
// an ingest that merges concurrent requests' batches.
func peerGroupOpenLoop(ctx context.Context, js jetstream.JetStream, eps, committers, maxGroup int, d time.Duration) (result, float64) {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "BENCH_PEER_GROUP", Subjects: []string{"benchpeergroup"}, Storage: jetstream.FileStorage, Duplicates: 10 * time.Minute})
	check(err)
	defer js.DeleteStream(ctx, "BENCH_PEER_GROUP")
	records := make([][]byte, maxGroup+1)
	for k := 1; k <= maxGroup; k++ {
		rec := analytics.Record{RecvMs: time.Now().UnixMilli()}
		for i := range k * *perBatch {
			rec.Events = append(rec.Events, analytics.Event{Type: analytics.Heartbeat, Session: 1 << 40, Viewer: 1 << 41, Video: 1_000_000, Seq: int64(i + 1), PosMs: int64(i) * 10_000, PlayedMs: 10_000, Rendition: "720p"})
		}
		records[k] = analytics.AppendRecord(nil, rec)
	}
	queue := make(chan groupReq, 1<<16)
	var id, errs, msgs, grouped atomic.Int64
	var cwg sync.WaitGroup
	for range committers {
		cwg.Go(func() {
			group := make([]groupReq, 0, maxGroup)
			for first := range queue {
				group = append(group[:0], first)
			fill:
				for len(group) < maxGroup {
					select {
					case r, ok := <-queue:
						if !ok {
							break fill
						}
						group = append(group, r)
					default:
						break fill
					}
				}
				peerPublish(ctx, js, "benchpeergroup", records[len(group)], fmt.Sprint("peer-group-", id.Add(1)), &errs)
				msgs.Add(1)
				grouped.Add(int64(len(group)))
				for _, r := range group {
					close(r.done)
				}
			}
		})
	}
	cpu0 := cpuTime()
	sched := schedule(eps, d)
	var mu sync.Mutex
	var res result
	start := time.Now()
	var wg sync.WaitGroup
	for range 4 * *conc {
		wg.Go(func() {
			var lat []time.Duration
			var events int64
			for at := range sched {
				r := groupReq{at: at, done: make(chan struct{})}
				queue <- r
				<-r.done
				lat = append(lat, time.Since(at))
				events += int64(*perBatch)
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.events += events
			mu.Unlock()
		})
	}
	wg.Wait()
	close(queue)
	cwg.Wait()
	res.eps = float64(res.events) / time.Since(start).Seconds()
	res.cpu = cpuTime() - cpu0
	res.errs = errs.Load()
	return res, float64(grouped.Load()) / float64(max(msgs.Load(), 1))
}
