package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// raiseFDLimit lifts the open-file limit to 65536, or to the hard limit
// when that is lower.
func raiseFDLimit() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0
	}
	l.Cur = min(65536, l.Max)
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	return l.Cur
}

// target is one server under load.
type target struct {
	name    string
	url     func(i int) string                           // SSE URL of client i (0-based)
	publish func(ctx context.Context, data []byte) error // one broadcast
	ready   func(ctx context.Context) error              // all clients routable
	pid     int
}

// load is the generator's state for one target: one latency slot per
// (message, client); 0 means not delivered.
type load struct {
	n, msgs  int
	lat      []int64 // ns, index seq*n + client
	got      atomic.Int64
	gotLate  atomic.Int64 // deliveries of seq >= late (the burst phase)
	late     int
	lastLate atomic.Int64 // unix ns of the last burst-phase delivery
	lastRx   atomic.Int64 // unix ns of the last delivery
	dupes    atomic.Int64
	errs     atomic.Int64
}

func newTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxConnsPerHost:     0,
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
}

// connect opens n SSE streams, at most par at a time, and returns once each
// has received its first event (the server's hello / connect reply) or
// failed. Every stream keeps being read in its own goroutine until ctx ends.
func (l *load) connect(ctx context.Context, t *target, par int, wg *sync.WaitGroup) (ok int, firstErr error) {
	tr := newTransport()
	client := &http.Client{Transport: tr}
	sem := make(chan struct{}, par)
	var okN atomic.Int64
	var errOnce sync.Once
	var opened sync.WaitGroup
	for i := 0; i < l.n; i++ {
		sem <- struct{}{}
		opened.Add(1)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			first := make(chan error, 1)
			go func() { <-first; <-sem; opened.Done() }()
			err := l.stream(ctx, client, t.url(i), i, first)
			if err != nil {
				l.errs.Add(1)
				errOnce.Do(func() { firstErr = err })
			}
		}(i)
	}
	opened.Wait()
	okN.Store(int64(l.n) - l.errs.Load())
	return int(okN.Load()), firstErr
}

// stream reads one SSE stream; it signals first (once) after the first
// data line or on failure.
func (l *load) stream(ctx context.Context, client *http.Client, url string, i int, first chan<- error) (err error) {
	signalled := false
	signal := func(e error) {
		if !signalled {
			signalled = true
			first <- e
		}
	}
	defer func() { signal(err) }()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	br := bufio.NewReaderSize(resp.Body, 4096)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read: %w", err)
		}
		if !bytes.HasPrefix(line, []byte("data:")) {
			continue
		}
		now := time.Now().UnixNano()
		if seq, ts, ok := parsePayload(line); ok && seq >= 0 && seq < l.msgs {
			slot := &l.lat[seq*l.n+i]
			if *slot != 0 {
				l.dupes.Add(1)
			} else {
				*slot = max(now-ts, 1)
				l.got.Add(1)
				if seq >= l.late {
					l.gotLate.Add(1)
					l.lastLate.Store(now)
				}
				l.lastRx.Store(now)
			}
		}
		signal(nil)
	}
}

// parsePayload finds "seq":S and "ts":T in a data line, whatever wraps them
// (Blueprint sends the data as is, Centrifugo inside {"pub":{"data":...}}).
func parsePayload(line []byte) (seq int, ts int64, ok bool) {
	s, ok1 := intAfter(line, []byte(`"seq":`))
	t, ok2 := intAfter(line, []byte(`"ts":`))
	return int(s), t, ok1 && ok2
}

func intAfter(b, key []byte) (int64, bool) {
	i := bytes.Index(b, key)
	if i < 0 {
		return 0, false
	}
	b = b[i+len(key):]
	j := 0
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	v, err := strconv.ParseInt(string(b[:j]), 10, 64)
	return v, err == nil
}

func payload(seq int) []byte {
	return fmt.Appendf(nil, `{"seq":%d,"ts":%d,"text":"new video from a creator you follow"}`, seq, time.Now().UnixNano())
}
