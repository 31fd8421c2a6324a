package nameserver

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// HealthConfig tunes the active health checks of pool targets.
type HealthConfig struct {
	Interval       time.Duration // between checks of one target (default 500ms)
	Timeout        time.Duration // per check (default 400ms, at most Interval)
	UnhealthyAfter int           // consecutive failures before a target leaves answers (default 2)
	HealthyAfter   int           // consecutive successes before it comes back (default 2)
}

func (c *HealthConfig) defaults() {
	if c.Interval <= 0 {
		c.Interval = 500 * time.Millisecond
	}
	if c.Timeout <= 0 {
		c.Timeout = 400 * time.Millisecond
	}
	c.Timeout = min(c.Timeout, c.Interval)
	if c.UnhealthyAfter <= 0 {
		c.UnhealthyAfter = 2
	}
	if c.HealthyAfter <= 0 {
		c.HealthyAfter = 2
	}
}

// MaxDetection is the longest a target that stopped answering can stay in
// answers: the last good check may have just passed, then UnhealthyAfter
// checks must fail, each taking up to Timeout.
func (c HealthConfig) MaxDetection() time.Duration {
	c.defaults()
	return time.Duration(c.UnhealthyAfter)*c.Interval + c.Timeout
}

// checker probes health URLs. Targets with the same URL share one probe
// and one state.
type checker struct {
	cfg      HealthConfig
	logger   *slog.Logger
	metrics  *metrics
	client   *http.Client
	onChange func() // called after any target changes state

	mu     sync.Mutex
	probes map[string]*probe
	rounds atomic.Uint64 // completed check rounds (tests wait on these)
}

type probe struct {
	url      string
	healthy  atomic.Bool
	ok, fail int    // consecutive results
	checked  bool   // at least one check done
	lastErr  string // for explanations
	mu       sync.Mutex
	lastDone time.Time
}

func newChecker(cfg HealthConfig, logger *slog.Logger, m *metrics, onChange func()) *checker {
	cfg.defaults()
	tr := &http.Transport{
		DisableKeepAlives: true, // a new connection per check: a dead listener fails at once
		Proxy:             nil,
	}
	return &checker{
		cfg: cfg, logger: logger, metrics: m, onChange: onChange,
		client: &http.Client{
			Transport:     tr,
			Timeout:       cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		probes: make(map[string]*probe),
	}
}

// state returns the shared health flag of url, creating its probe. An
// empty url is always healthy. New probes start healthy until the first
// check decides.
func (c *checker) state(u string) *atomic.Bool {
	if u == "" {
		b := new(atomic.Bool)
		b.Store(true)
		return b
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.probes[u]
	if p == nil {
		p = &probe{url: u}
		p.healthy.Store(true)
		c.probes[u] = p
	}
	return &p.healthy
}

// retain drops probes whose URL is not in keep.
func (c *checker) retain(keep map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for u := range c.probes {
		if !keep[u] {
			delete(c.probes, u)
		}
	}
}

// round checks every probe once, in parallel, and reports whether any
// state changed.
func (c *checker) round(ctx context.Context) bool {
	c.mu.Lock()
	ps := make([]*probe, 0, len(c.probes))
	for _, p := range c.probes {
		ps = append(ps, p)
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	var changed atomic.Bool
	for _, p := range ps {
		wg.Go(func() {
			err := c.check(ctx, p.url)
			if ctx.Err() != nil {
				return
			}
			if c.record(p, err) {
				changed.Store(true)
			}
		})
	}
	wg.Wait()
	c.rounds.Add(1)
	return changed.Load()
}

// record applies one check result to p and reports a state change.
func (c *checker) record(p *probe, err error) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastDone = time.Now()
	was := p.healthy.Load()
	now := was
	if err == nil {
		p.ok, p.fail = p.ok+1, 0
		p.lastErr = ""
		if !p.checked || p.ok >= c.cfg.HealthyAfter {
			now = true
		}
	} else {
		p.ok, p.fail = 0, p.fail+1
		p.lastErr = err.Error()
		if !p.checked || p.fail >= c.cfg.UnhealthyAfter {
			now = false
		}
	}
	p.checked = true
	if now == was {
		return false
	}
	p.healthy.Store(now)
	if now {
		c.logger.Info("nameserver: target healthy", "health", p.url)
	} else {
		c.logger.Warn("nameserver: target unhealthy", "health", p.url, "err", p.lastErr)
	}
	if c.metrics != nil {
		c.metrics.healthTransitions.WithLabelValues(map[bool]string{true: "up", false: "down"}[now]).Inc()
	}
	return true
}

// lastError returns the last check error of url ("" when it passed).
func (c *checker) lastError(u string) string {
	c.mu.Lock()
	p := c.probes[u]
	c.mu.Unlock()
	if p == nil {
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr
}

func (c *checker) check(ctx context.Context, raw string) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme == "tcp" {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// run checks every Interval until ctx ends.
func (c *checker) run(ctx context.Context) {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if c.round(ctx) && c.onChange != nil {
				c.onChange()
			}
		}
	}
}
