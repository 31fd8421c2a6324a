package resolver

import (
	"strings"

	"github.com/miekg/dns"
)

// canonical returns name lowercased (ASCII only) and fully qualified, the
// form every name takes inside the resolver.
func canonical(name string) string {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c >= 'A' && c <= 'Z' {
			return dns.CanonicalName(name)
		}
	}
	return dns.Fqdn(name)
}

// isSub reports whether child is parent or below it. Both must be
// canonical. It splits on label boundaries, so escaped dots are handled.
func isSub(parent, child string) bool {
	if parent == "." || parent == child {
		return true
	}
	if len(child) <= len(parent) || !strings.HasSuffix(child, parent) {
		return false
	}
	for _, i := range dns.Split(child) {
		if len(child)-i == len(parent) {
			return true
		}
		if len(child)-i < len(parent) {
			return false
		}
	}
	return false
}

// labels returns the number of labels of a canonical name ("." has 0).
func labels(name string) int {
	if name == "." {
		return 0
	}
	return dns.CountLabel(name)
}

// ancestorWithLabels returns the ancestor of name (or name itself) that has
// n labels; n is clamped to [0, labels(name)].
func ancestorWithLabels(name string, n int) string {
	if n <= 0 {
		return "."
	}
	idx := dns.Split(name)
	if n >= len(idx) {
		return name
	}
	return name[idx[len(idx)-n]:]
}
