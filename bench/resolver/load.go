package main

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/miekg/dns"
)

func numCPU() int { return runtime.NumCPU() }

// stats is the outcome of one load run.
type stats struct {
	sent, answered, lost int
	rcodes               map[int]int
	elapsed              time.Duration
	lat                  []time.Duration
	cpu                  time.Duration // resolver process CPU during the run
}

func (s stats) qps() float64 { return float64(s.answered) / s.elapsed.Seconds() }

func (s stats) pct(p float64) time.Duration {
	if len(s.lat) == 0 {
		return 0
	}
	slices.Sort(s.lat)
	return s.lat[min(len(s.lat)-1, int(p*float64(len(s.lat))))]
}

// usPerQuery is the resolver's CPU time per answered query.
func (s stats) usPerQuery() float64 {
	if s.answered == 0 {
		return 0
	}
	return float64(s.cpu.Microseconds()) / float64(s.answered)
}

// packQueries packs one query (RD set, EDNS 1232) per question.
func packQueries(qs []dns.Question) [][]byte {
	out := make([][]byte, len(qs))
	for i, q := range qs {
		m := new(dns.Msg)
		m.Question = []dns.Question{q}
		m.RecursionDesired = true
		m.SetEdns0(1232, false)
		b, err := m.Pack()
		if err != nil {
			panic(err)
		}
		out[i] = b
	}
	return out
}

// load sends queries to addr in a closed loop with window queries
// outstanding over sockets sockets. With cycle set it goes round the query
// list until duration passes; otherwise it sends each query once and
// stops when all are answered or lost (no reply within 2 s).
func load(addr string, queries [][]byte, window, sockets int, duration time.Duration, cycle bool) (stats, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return stats{}, err
	}
	var mu sync.Mutex
	total := stats{rcodes: map[int]int{}}
	var next int
	var nextMu sync.Mutex
	take := func() []byte {
		nextMu.Lock()
		defer nextMu.Unlock()
		if !cycle && next >= len(queries) {
			return nil
		}
		q := queries[next%len(queries)]
		next++
		return q
	}
	start := time.Now()
	end := start.Add(duration)
	var wg sync.WaitGroup
	errc := make(chan error, sockets)
	for s := range sockets {
		w := window / sockets
		if s < window%sockets {
			w++
		}
		if w == 0 {
			continue
		}
		wg.Go(func() {
			st, err := client(raddr, take, w, end, cycle)
			if err != nil {
				errc <- err
				return
			}
			mu.Lock()
			total.sent += st.sent
			total.answered += st.answered
			total.lost += st.lost
			total.lat = append(total.lat, st.lat...)
			for k, v := range st.rcodes {
				total.rcodes[k] += v
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	total.elapsed = time.Since(start)
	select {
	case err := <-errc:
		return total, err
	default:
	}
	return total, nil
}

// client runs one socket's share of the load.
func client(raddr *net.UDPAddr, take func() []byte, window int, end time.Time, cycle bool) (stats, error) {
	conn, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		return stats{}, err
	}
	defer conn.Close()
	st := stats{rcodes: map[int]int{}}
	sentAt := make(map[uint16]time.Time, window*2)
	var id uint16
	buf := make([]byte, 65535)
	out := make([]byte, 0, 512)
	send := func() bool {
		q := take()
		if q == nil {
			return false
		}
		id++
		for {
			if _, busy := sentAt[id]; !busy {
				break
			}
			id++
		}
		out = append(out[:0], q...)
		binary.BigEndian.PutUint16(out, id)
		if _, err := conn.Write(out); err != nil {
			return false
		}
		sentAt[id] = time.Now()
		st.sent++
		return true
	}
	for range window {
		if !send() {
			break
		}
	}
	const lossTimeout = 2 * time.Second
	lastReply := time.Now()
	reads := 0
	for len(sentAt) > 0 {
		if cycle && time.Now().After(end) {
			break
		}
		if reads%256 == 0 {
			conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		}
		reads++
		n, err := conn.Read(buf)
		now := time.Now()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				reads = 0
				if now.Sub(lastReply) > lossTimeout {
					// Count the outstanding queries as lost and refill.
					st.lost += len(sentAt)
					clear(sentAt)
					lastReply = now
					for range window {
						if !send() {
							break
						}
					}
				}
				continue
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			return st, err
		}
		if n < 12 {
			continue
		}
		rid := binary.BigEndian.Uint16(buf)
		t0, ok := sentAt[rid]
		if !ok {
			continue
		}
		delete(sentAt, rid)
		lastReply = now
		st.answered++
		st.rcodes[int(buf[3]&0xF)]++
		st.lat = append(st.lat, now.Sub(t0))
		send()
	}
	return st, nil
}
