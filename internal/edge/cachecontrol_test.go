package edge

import (
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseCacheControl(t *testing.T) {
	tests := []struct {
		in   []string
		want directives
	}{
		{[]string{"max-age=60"}, directives{"max-age": "60"}},
		{[]string{"Max-Age=60, NO-STORE"}, directives{"max-age": "60", "no-store": ""}},
		{[]string{`private="Set-Cookie, Foo", max-age=5`}, directives{"private": "Set-Cookie, Foo", "max-age": "5"}},
		{[]string{`max-age="30"`}, directives{"max-age": "30"}},
		{[]string{"max-age=10, max-age=20"}, directives{"max-age": "10"}},
		{[]string{"max-age=abc, max-age=20"}, directives{"max-age": "abc"}},
		{[]string{"max-age=, s-maxage=5"}, directives{"s-maxage": "5"}},
		{[]string{"  ,, no-cache ,"}, directives{"no-cache": ""}},
		{[]string{"max-age=60 junk, public"}, directives{"public": ""}},
		{[]string{`foo="unterminated, max-age=5`}, directives{}},
		{[]string{`a="x\"y\\", b`}, directives{"a": `x"y\`, "b": ""}},
		{[]string{`a="1,2", b=3`}, directives{"a": "1,2", "b": "3"}},
		{[]string{"max-age = 60"}, directives{"max-age": "60"}},
		{[]string{"max-age=1", "max-age=2, no-cache"}, directives{"max-age": "1", "no-cache": ""}},
		{[]string{"@foo, max-age=3"}, directives{"max-age": "3"}},
		{[]string{`max-age=3"x", public`}, directives{"public": ""}},
		{[]string{"\tmust-revalidate\t"}, directives{"must-revalidate": ""}},
		{[]string{""}, directives{}},
		{nil, directives{}},
	}
	for _, tt := range tests {
		got := parseCacheControl(tt.in)
		if !maps.Equal(got, tt.want) {
			t.Errorf("parseCacheControl(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestDirectiveSeconds(t *testing.T) {
	tests := []struct {
		value string
		want  int64
		ok    bool
	}{
		{"0", 0, true},
		{"60", 60, true},
		{"007", 7, true},
		{"2147483648", 1 << 31, true},
		{"99999999999999999999999", 1 << 31, true},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"abc", 0, false},
		{"", 0, false},
		{" 5", 0, false},
	}
	for _, tt := range tests {
		n, ok := directives{"max-age": tt.value}.seconds("max-age")
		if n != tt.want || ok != tt.ok {
			t.Errorf("seconds(%q) = %d, %v; want %d, %v", tt.value, n, ok, tt.want, tt.ok)
		}
	}
	if _, ok := (directives{}).seconds("max-age"); ok {
		t.Error("absent directive reported ok")
	}
}

// formatDirectives serialises d so that parsing the result gives d back.
func formatDirectives(d directives) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(d)) {
		v := d[k]
		switch {
		case v == "":
			parts = append(parts, k)
		case strings.IndexFunc(v, func(r rune) bool { return r > 0x7f || !isTchar(byte(r)) }) < 0:
			parts = append(parts, k+"="+v)
		default:
			q := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v)
			parts = append(parts, k+`="`+q+`"`)
		}
	}
	return strings.Join(parts, ", ")
}

func FuzzParseCacheControl(f *testing.F) {
	for _, s := range []string{
		"max-age=60",
		"public, max-age=31536000, immutable",
		"no-cache, no-store, must-revalidate",
		`private="Set-Cookie", s-maxage=600, stale-if-error=86400`,
		`max-age="30", MAX-AGE=40`,
		"max-age=99999999999999999999",
		`a="unterminated\`,
		",,, ,=, =x, x=, \"\"",
		"max-age=-5, s-maxage=1e3",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := parseCacheControl([]string{s})
		for k := range d {
			if k == "" || k != strings.ToLower(k) || strings.IndexFunc(k, func(r rune) bool { return r > 0x7f || !isTchar(byte(r)) }) >= 0 {
				t.Fatalf("bad directive name %q from %q", k, s)
			}
		}
		for _, name := range []string{"max-age", "s-maxage", "stale-if-error", "stale-while-revalidate"} {
			if n, ok := d.seconds(name); ok && (n < 0 || n > maxDeltaSeconds) {
				t.Fatalf("%s = %d from %q", name, n, s)
			}
		}
		// Parsing is stable: the canonical form parses to the same directives.
		if again := parseCacheControl([]string{formatDirectives(d)}); !maps.Equal(again, d) {
			t.Fatalf("round trip of %q: %v, then %v", s, d, again)
		}
		// Freshness computed from any header values is never negative.
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		h := http.Header{"Cache-Control": {s}, "Expires": {s}, "Age": {s}, "Last-Modified": {s}, "Date": {s}}
		m := newMeta(200, h, now, now)
		if m.lifetime < 0 || m.initialAge < 0 || m.age(now) < 0 {
			t.Fatalf("negative freshness from %q: %+v", s, m)
		}
	})
}
