package edge

import (
	"strconv"
	"strings"
	"time"
)

// cacheStatus describes how the edge handled one request. It serialises as
// one member of the Cache-Status field (RFC 9211), a Structured Field list
// (RFC 8941): the cache's name followed by parameters, e.g.
//
//	blueprint-edge; hit; ttl=55
//	blueprint-edge; fwd=stale; fwd-status=304
type cacheStatus struct {
	hit       bool          // served from cache without contacting the origin
	fwd       string        // why the request went to the origin: "miss", "uri-miss" or "stale"
	fwdStatus int           // the origin's status code; 0 = not sent
	stored    bool          // the origin's response was stored
	collapsed bool          // this request waited on another request's fill
	ttl       time.Duration // remaining freshness, sent when hasTTL
	hasTTL    bool
	detail    string // free-form extra detail, e.g. "origin-error"
}

// maxSFInteger bounds an RFC 8941 Integer (15 decimal digits).
const maxSFInteger = 999_999_999_999_999

// format serialises cs as a list member for the cache identified by name,
// which must already be a serialised sf-token or sf-string (see sfItem).
// Parameters are separated by "; ", which RFC 8941 parsers accept and which
// matches the examples in RFC 9211.
func (cs cacheStatus) format(name string) string {
	var b strings.Builder
	b.WriteString(name)
	if cs.hit {
		b.WriteString("; hit")
	}
	if cs.fwd != "" {
		b.WriteString("; fwd=")
		b.WriteString(cs.fwd) // always one of our fixed tokens
	}
	if cs.fwdStatus != 0 {
		b.WriteString("; fwd-status=")
		b.WriteString(strconv.Itoa(cs.fwdStatus))
	}
	if cs.stored {
		b.WriteString("; stored")
	}
	if cs.collapsed {
		b.WriteString("; collapsed")
	}
	if cs.hasTTL {
		secs := int64(cs.ttl / time.Second)
		b.WriteString("; ttl=")
		b.WriteString(strconv.FormatInt(max(-maxSFInteger, min(secs, maxSFInteger)), 10))
	}
	if cs.detail != "" {
		b.WriteString("; detail=")
		b.WriteString(sfItem(cs.detail))
	}
	return b.String()
}

// sfItem serialises s as an RFC 8941 Token when it is one, and otherwise as a
// String. s must be printable ASCII (validName checks the configured name;
// details are our own constants).
func sfItem(s string) string {
	if isSFToken(s) {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// isSFToken reports whether s matches sf-token = ( ALPHA / "*" ) *( tchar /
// ":" / "/" ).
func isSFToken(s string) bool {
	if s == "" {
		return false
	}
	if c := s[0]; c != '*' && !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isTchar(c) && c != ':' && c != '/' {
			return false
		}
	}
	return true
}

// isPrintableASCII reports whether s can be carried in an sf-string.
func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
