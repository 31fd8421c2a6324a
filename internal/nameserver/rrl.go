package nameserver

import (
	"errors"
	"hash/maphash"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// RRLConfig configures response rate limiting (RRL), the defence of
// authoritative servers against reflection: a spoofed source gets at most
// Rate identical responses per second. It applies to UDP only (TCP
// proves the source address).
type RRLConfig struct {
	// Rate is responses per second per key, where a key is the client's
	// network and the kind of answer (the same name and type, the same
	// NXDOMAIN zone, or an error). 0 turns RRL off.
	Rate float64
	// Burst is the bucket size (default: Rate, at least 1).
	Burst int
	// Slip sends every Slip-th limited response truncated (TC set, no
	// records) instead of dropping it, so a real client behind a spoofed
	// flood can retry over TCP. Default 2; 1 slips every one.
	Slip int
	// IPv4Prefix and IPv6Prefix group clients into networks (defaults 24
	// and 56).
	IPv4Prefix, IPv6Prefix int
	// Exempt lists networks never limited.
	Exempt []netip.Prefix
	// MaxEntries bounds the table of keys (default 100000).
	MaxEntries int
}

type rrlAction int

const (
	rrlAllow rrlAction = iota
	rrlSlip
	rrlDrop
)

const rrlShards = 32

type rrl struct {
	cfg    RRLConfig
	seed   maphash.Seed
	shards [rrlShards]rrlShard
	now    func() time.Time
}

type rrlShard struct {
	mu      sync.Mutex
	buckets map[rrlKey]*rrlBucket
}

type rrlKey struct {
	net  [16]byte
	hash uint64
}

type rrlBucket struct {
	tokens float64
	last   int64 // unix nanoseconds of the last refill
	slip   int
}

func newRRL(cfg RRLConfig) (*rrl, error) {
	if cfg.Rate < 0 {
		return nil, errors.New("nameserver: rrl: negative rate")
	}
	if cfg.Rate == 0 {
		return nil, nil
	}
	if cfg.Burst <= 0 {
		cfg.Burst = max(int(cfg.Rate), 1)
	}
	if cfg.Slip <= 0 {
		cfg.Slip = 2
	}
	if cfg.IPv4Prefix <= 0 || cfg.IPv4Prefix > 32 {
		cfg.IPv4Prefix = 24
	}
	if cfg.IPv6Prefix <= 0 || cfg.IPv6Prefix > 128 {
		cfg.IPv6Prefix = 56
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 100_000
	}
	r := &rrl{cfg: cfg, seed: maphash.MakeSeed(), now: time.Now}
	for i := range r.shards {
		r.shards[i].buckets = make(map[rrlKey]*rrlBucket)
	}
	return r, nil
}

// check decides what to do with response m to src.
func (r *rrl) check(src netip.Addr, m *dns.Msg, zone string) rrlAction {
	if r == nil {
		return rrlAllow
	}
	src = src.Unmap()
	for _, p := range r.cfg.Exempt {
		if p.Contains(src) {
			return rrlAllow
		}
	}
	bits := r.cfg.IPv4Prefix
	if src.Is6() {
		bits = r.cfg.IPv6Prefix
	}
	pfx, _ := src.Prefix(bits)
	k := rrlKey{net: pfx.Addr().As16()}
	var h maphash.Hash
	h.SetSeed(r.seed)
	switch {
	case m.Rcode == dns.RcodeNameError:
		h.WriteString("nx\x00")
		h.WriteString(zone)
	case m.Rcode != dns.RcodeSuccess:
		h.WriteString("err\x00")
	default:
		if len(m.Question) == 1 {
			h.WriteString(m.Question[0].Name)
			var t [2]byte
			t[0], t[1] = byte(m.Question[0].Qtype>>8), byte(m.Question[0].Qtype)
			h.Write(t[:])
		}
	}
	k.hash = h.Sum64()
	sh := &r.shards[k.hash%rrlShards]
	now := r.now().UnixNano()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.buckets[k]
	if b == nil {
		if len(sh.buckets) >= r.cfg.MaxEntries/rrlShards {
			r.sweep(sh, now)
		}
		b = &rrlBucket{tokens: float64(r.cfg.Burst), last: now}
		sh.buckets[k] = b
	}
	b.tokens = min(float64(r.cfg.Burst), b.tokens+float64(now-b.last)/1e9*r.cfg.Rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return rrlAllow
	}
	b.slip++
	if b.slip%r.cfg.Slip == 0 {
		return rrlSlip
	}
	return rrlDrop
}

// sweep drops buckets that have refilled (they hold no state worth
// keeping); if the shard is still full it is cleared.
func (r *rrl) sweep(sh *rrlShard, now int64) {
	full := int64(float64(r.cfg.Burst) / r.cfg.Rate * 1e9)
	for k, b := range sh.buckets {
		if now-b.last >= full {
			delete(sh.buckets, k)
		}
	}
	if len(sh.buckets) >= r.cfg.MaxEntries/rrlShards {
		clear(sh.buckets)
	}
}
