package edge

import (
	"testing"
	"time"
)

func TestCacheStatusFormat(t *testing.T) {
	tests := []struct {
		cs   cacheStatus
		want string
	}{
		{cacheStatus{}, "blueprint-edge"},
		{cacheStatus{hit: true, ttl: 55 * time.Second, hasTTL: true}, "blueprint-edge; hit; ttl=55"},
		{cacheStatus{hit: true, ttl: 1500 * time.Millisecond, hasTTL: true}, "blueprint-edge; hit; ttl=1"},
		{cacheStatus{fwd: "miss", stored: true}, "blueprint-edge; fwd=miss; stored"},
		{cacheStatus{fwd: "miss", stored: true, collapsed: true}, "blueprint-edge; fwd=miss; stored; collapsed"},
		{cacheStatus{fwd: "stale", fwdStatus: 304}, "blueprint-edge; fwd=stale; fwd-status=304"},
		{cacheStatus{fwd: "uri-miss"}, "blueprint-edge; fwd=uri-miss"},
		{cacheStatus{fwd: "miss", detail: "origin-error"}, "blueprint-edge; fwd=miss; detail=origin-error"},
		{cacheStatus{fwd: "stale", ttl: -90 * time.Second, hasTTL: true}, "blueprint-edge; fwd=stale; ttl=-90"},
		{cacheStatus{hit: true, ttl: 1 << 62, hasTTL: true}, "blueprint-edge; hit; ttl=4611686018"},
		{cacheStatus{detail: "two words"}, `blueprint-edge; detail="two words"`},
	}
	for _, tt := range tests {
		if got := tt.cs.format("blueprint-edge"); got != tt.want {
			t.Errorf("format(%+v) = %q, want %q", tt.cs, got, tt.want)
		}
	}
}

func TestSFItem(t *testing.T) {
	tests := map[string]string{
		"blueprint-edge":   "blueprint-edge",
		"edge:eu-1/a":      "edge:eu-1/a",
		"*star":            "*star",
		"1edge":            `"1edge"`,
		"edge 1":           `"edge 1"`,
		`say "hi" \ there`: `"say \"hi\" \\ there"`,
		"":                 `""`,
	}
	for in, want := range tests {
		if got := sfItem(in); got != want {
			t.Errorf("sfItem(%q) = %s, want %s", in, got, want)
		}
	}
}
