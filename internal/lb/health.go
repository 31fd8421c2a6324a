package lb

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// checkLoop runs a round of health checks every HealthInterval until ctx is
// cancelled, then closes done.
func (b *Balancer) checkLoop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	ticker := time.NewTicker(b.cfg.HealthInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			b.checkAll(ctx)
		}
	}
}

// checkAll checks every backend at once and waits for all of them, so one
// round takes at most HealthTimeout however many backends there are.
func (b *Balancer) checkAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, be := range b.backends {
		wg.Go(func() { b.checkOne(ctx, be) })
	}
	wg.Wait()
}

// checkOne checks one backend and records the result. A check cut short by
// ctx (Stop, or the caller of Start giving up) is not recorded: it says
// nothing about the backend.
func (b *Balancer) checkOne(ctx context.Context, be *Backend) {
	err := b.probe(ctx, be)
	if ctx.Err() != nil {
		return
	}
	b.observe(be, err, time.Now())
}

// probe sends one health-check request. Any 2xx answer is healthy.
func (b *Balancer) probe(ctx context.Context, be *Backend) error {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.HealthTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, be.URL.JoinPath(b.cfg.HealthPath).String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "blueprint-lb-healthcheck")
	resp, err := b.checkClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("health check returned %s", resp.Status)
	}
	return nil
}

// observe records the result of one health check and moves be up or down
// when a streak reaches its threshold. The very first check of a backend
// decides its state directly: there is no earlier evidence to outweigh.
func (b *Balancer) observe(be *Backend, err error, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()

	be.lastCheck = now
	if err == nil {
		be.lastErr = ""
		be.okStreak++
		be.failStreak = 0
		be.m.checksOK.Inc()
	} else {
		be.lastErr = err.Error()
		be.failStreak++
		be.okStreak = 0
		be.m.checksFailed.Inc()
	}

	first := !be.checked
	be.checked = true
	switch {
	case err != nil && (first || be.failStreak >= b.cfg.UnhealthyAfter):
		b.setUp(be, false, be.lastErr)
	case err == nil && (first || be.okStreak >= b.cfg.HealthyAfter):
		b.setUp(be, true, "")
	}
}
