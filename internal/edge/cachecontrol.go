package edge

import "strings"

// directives holds the parsed Cache-Control directives of a message: the
// lower-cased directive name mapped to its argument, unquoted, or "" when the
// directive has no argument. Only the first occurrence of a name is kept
// (RFC 9111 §4.2.1 lets a cache use the first of several values).
type directives map[string]string

// maxDeltaSeconds is the value RFC 9111 §1.2.2 tells a cache to use for a
// delta-seconds value too large to represent: 2^31.
const maxDeltaSeconds = 1 << 31

// parseCacheControl parses Cache-Control field lines (RFC 9111 §5.2), each a
// comma-separated list (RFC 9110 §5.6.1) of `token [ "=" ( token /
// quoted-string ) ]`. Directive names are case-insensitive. Parsing never
// fails: a malformed member is skipped up to the next comma outside a quoted
// string, and the rest of the list is still read. Whitespace around "=" is
// tolerated.
func parseCacheControl(lines []string) directives {
	d := directives{}
	for _, line := range lines {
		parseDirectives(line, d)
	}
	return d
}

func parseDirectives(s string, d directives) {
	i := 0
	for i < len(s) {
		// Empty list elements and optional whitespace.
		for i < len(s) && (s[i] == ',' || isOWS(s[i])) {
			i++
		}
		if i == len(s) {
			return
		}
		start := i
		for i < len(s) && isTchar(s[i]) {
			i++
		}
		name := strings.ToLower(s[start:i])
		value, ok := "", name != ""
		i = skipOWS(s, i)
		if ok && i < len(s) && s[i] == '=' {
			i = skipOWS(s, i+1)
			if i < len(s) && s[i] == '"' {
				value, i, ok = parseQuoted(s, i)
			} else {
				vstart := i
				for i < len(s) && isTchar(s[i]) {
					i++
				}
				value, ok = s[vstart:i], i > vstart
			}
			i = skipOWS(s, i)
		}
		if i < len(s) && s[i] != ',' {
			// Junk after the member: drop the whole member.
			ok = false
			i = skipMember(s, i)
		}
		if _, dup := d[name]; ok && !dup {
			d[name] = value
		}
	}
}

// parseQuoted reads the quoted-string that starts at s[i] (a '"') and returns
// its unescaped content and the index just past the closing quote. An
// unterminated string is reported as not ok and consumes the rest of s.
func parseQuoted(s string, i int) (value string, next int, ok bool) {
	var b strings.Builder
	for i++; i < len(s); i++ {
		switch s[i] {
		case '"':
			return b.String(), i + 1, true
		case '\\':
			i++
			if i == len(s) {
				return "", i, false
			}
		}
		b.WriteByte(s[i])
	}
	return "", i, false
}

// skipMember advances from s[i] to the next comma that is not inside a quoted
// string, or to the end of s.
func skipMember(s string, i int) int {
	quoted := false
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == ',':
			return i
		}
	}
	return i
}

func skipOWS(s string, i int) int {
	for i < len(s) && isOWS(s[i]) {
		i++
	}
	return i
}

func isOWS(c byte) bool { return c == ' ' || c == '\t' }

// isTchar reports whether c may appear in an RFC 9110 token.
func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// has reports whether the directive is present, with or without an argument.
func (d directives) has(name string) bool {
	_, ok := d[name]
	return ok
}

// seconds returns the delta-seconds argument of a directive such as max-age.
// It reports false when the directive is absent or its argument is not a
// plain decimal number; such a directive is ignored as a whole. Values above
// 2^31 are capped at 2^31, so the result is never negative.
func (d directives) seconds(name string) (int64, bool) {
	v, ok := d[name]
	if !ok {
		return 0, false
	}
	return deltaSeconds(v)
}

// deltaSeconds parses 1*DIGIT (RFC 9111 §1.2.2), capping at 2^31.
func deltaSeconds(v string) (int64, bool) {
	if v == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < maxDeltaSeconds {
			n = n*10 + int64(c-'0')
		}
	}
	return min(n, maxDeltaSeconds), true
}
