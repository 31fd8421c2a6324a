package resolver

import (
	"net/netip"
	"sync/atomic"

	"github.com/miekg/dns"

	"github.com/blueprint-media/blueprint/internal/cache"
)

// key identifies a cached answer: a canonical name and a query type.
// typeNXDOMAIN marks an NXDOMAIN that covers every type of the name
// (RFC 2308 section 5).
type key struct {
	name  string
	qtype uint16
	// part marks an answer that stops at a CNAME into another zone: a
	// piece of a client's answer, never one itself.
	part bool
}

// typeNXDOMAIN is the key type of name-wide NXDOMAIN entries. Type 0 is
// reserved and never asked for.
const typeNXDOMAIN = 0

// answer is a resolved (or cached) response to one question: the rcode,
// the answer section (a CNAME chain, then the RRset asked for) and, for a
// negative answer, the SOA in the authority section. Answers are immutable
// once built, except for the atomics.
type answer struct {
	qname  string // canonical
	qtype  uint16
	rcode  int
	answer []dns.RR
	ns     []dns.RR
	// dangling is the target of the chain's last CNAME when the answer
	// stops there (the target is in another zone); "" when it is complete.
	dangling string
	// ttl is the answer's time to live in seconds: the least TTL of its
	// records, capped; for a negative answer min(SOA TTL, SOA MINIMUM).
	ttl     uint32
	stored  int64 // unix nanoseconds
	expires int64 // stored + ttl

	// retryAfter is the end of the RFC 8767 failure recheck window: after a
	// refresh of this expired answer failed, it is served stale without
	// another attempt until then.
	retryAfter atomic.Int64
	// tpl is the packed reply, built on first use.
	tpl atomic.Pointer[template]
}

// fresh reports whether the answer has not expired at now.
func (a *answer) fresh(now int64) bool { return now < a.expires }

// delegation is a zone cut learned from a referral: the zone's name
// servers and whatever glue came with them.
type delegation struct {
	zone    string
	ns      []string                // canonical NS target names
	glue    map[string][]netip.Addr // addresses per NS name, in bailiwick only
	servers []netip.AddrPort        // fixed addresses (root hints); with ns empty
	expires int64
}

// newAnswerCache returns the bounded cache of answers.
func newAnswerCache(cfg Config) (*cache.Cache[key, *answer], error) {
	return cache.New(cache.Config[key, *answer]{
		MaxEntries: cfg.CacheEntries,
		Now:        cfg.Now,
	})
}

// newDelegationCache returns the bounded cache of zone cuts, a quarter of
// the answer bound (at least 1024).
func newDelegationCache(cfg Config) (*cache.Cache[string, *delegation], error) {
	return cache.New(cache.Config[string, *delegation]{
		MaxEntries: max(cfg.CacheEntries/4, 1024),
		Now:        cfg.Now,
	})
}

// store caches a until it is useless: its expiry plus the stale window.
// The cache itself is given no TTL, so that its Get need not read the
// clock; lookupAt checks the time (and deletes what is past use).
func (r *Resolver) store(k key, a *answer) {
	if r.until(a) <= r.now() {
		return
	}
	r.answers.Set(k, a, 1)
}

// until returns the end of a's use: its expiry plus the stale window
// (remembered failures are never served stale).
func (r *Resolver) until(a *answer) int64 {
	if r.cfg.StaleWindow > 0 && a.rcode != dns.RcodeServerFailure {
		return a.expires + int64(r.cfg.StaleWindow)
	}
	return a.expires
}

// getAt returns the entry of k unless it is past use at now.
func (r *Resolver) getAt(k key, now int64) *answer {
	a, ok := r.answers.Get(k)
	if !ok {
		return nil
	}
	if now >= r.until(a) {
		r.answers.Delete(k)
		return nil
	}
	return a
}

// lookupAt returns the cached complete answer for name and qtype: the
// entry for the type, or a name-wide NXDOMAIN. It may be expired (stale);
// the caller checks.
func (r *Resolver) lookupAt(name string, qtype uint16, now int64) *answer {
	if a := r.getAt(key{name: name, qtype: qtype}, now); a != nil {
		return a
	}
	return r.getAt(key{name: name, qtype: typeNXDOMAIN}, now)
}

// lookup is lookupAt now.
func (r *Resolver) lookup(name string, qtype uint16) *answer { return r.lookupAt(name, qtype, r.now()) }

// lookupPiece returns a fresh cached answer for name and qtype, complete
// or a piece (see key.part), or nil.
func (r *Resolver) lookupPiece(name string, qtype uint16) *answer {
	now := r.now()
	if a := r.lookupAt(name, qtype, now); a != nil && a.fresh(now) && a.rcode != dns.RcodeServerFailure {
		return a
	}
	if a := r.getAt(key{name: name, qtype: qtype, part: true}, now); a != nil && a.fresh(now) {
		return a
	}
	return nil
}
