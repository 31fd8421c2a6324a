package resolver

import (
	"encoding/binary"
	"errors"

	"github.com/miekg/dns"
)

// Wire-format constants of the DNS header (RFC 1035 section 4.1.1).
const (
	headerLen = 12

	flagQR = 1 << 15
	flagAA = 1 << 10
	flagTC = 1 << 9
	flagRD = 1 << 8
	flagRA = 1 << 7
	flagAD = 1 << 5
	flagCD = 1 << 4

	// optLen is the size of the OPT record we append: root name, type,
	// class (UDP size), TTL (extended rcode, version, flags), RDLENGTH 0.
	optLen = 11
)

// query is a client query as read from the wire by parseQuery.
type query struct {
	id      uint16
	flags   uint16 // header flags as received
	opcode  int
	name    string // canonical
	qtype   uint16
	qclass  uint16
	qname   []byte // the question's name in wire form, as sent (case kept)
	edns    bool
	ednsVer uint8
	udpSize int  // the client's advertised size, 512 without EDNS
	dnssec  bool // DO bit
}

// Reasons parseQuery rejects a packet.
var (
	errShort    = errors.New("resolver: packet shorter than a header")
	errResponse = errors.New("resolver: packet is a response")
	errFormat   = errors.New("resolver: malformed query")
	errOpcode   = errors.New("resolver: unsupported opcode (NOTIMP)")
)

// parseQuery reads a client query. It accepts what a resolver should
// answer: one question, empty answer and authority sections, and at most
// one additional record, an OPT. On errFormat and errOpcode the header
// fields of q (id, flags, opcode) are set, and the question when it was
// readable, so that an error reply can be built; on errShort and
// errResponse the packet must be dropped.
func parseQuery(pkt []byte) (q query, err error) {
	if len(pkt) < headerLen {
		return q, errShort
	}
	q.id = binary.BigEndian.Uint16(pkt[0:])
	q.flags = binary.BigEndian.Uint16(pkt[2:])
	q.opcode = int(q.flags>>11) & 0xF
	q.udpSize = 512
	if q.flags&flagQR != 0 {
		return q, errResponse
	}
	qd := binary.BigEndian.Uint16(pkt[4:])
	an := binary.BigEndian.Uint16(pkt[6:])
	ns := binary.BigEndian.Uint16(pkt[8:])
	ar := binary.BigEndian.Uint16(pkt[10:])
	if qd != 1 {
		if q.opcode != dns.OpcodeQuery {
			return q, errOpcode
		}
		return q, errFormat
	}
	off := headerLen
	end, ok := nameEnd(pkt, off, false)
	if !ok || end+4 > len(pkt) {
		return q, errFormat
	}
	q.qname = pkt[off:end]
	q.name = decodeName(q.qname)
	q.qtype = binary.BigEndian.Uint16(pkt[end:])
	q.qclass = binary.BigEndian.Uint16(pkt[end+2:])
	off = end + 4
	if q.opcode != dns.OpcodeQuery {
		return q, errOpcode
	}
	if an != 0 || ns != 0 || ar > 1 {
		return q, errFormat
	}
	if ar == 1 {
		// The only additional record accepted is an OPT with the root name.
		if off+optLen > len(pkt) || pkt[off] != 0 || binary.BigEndian.Uint16(pkt[off+1:]) != dns.TypeOPT {
			return q, errFormat
		}
		q.edns = true
		q.udpSize = max(int(binary.BigEndian.Uint16(pkt[off+3:])), 512)
		q.ednsVer = pkt[off+6]
		q.dnssec = pkt[off+7]&0x80 != 0
		rdlen := int(binary.BigEndian.Uint16(pkt[off+9:]))
		off += optLen
		if off+rdlen > len(pkt) {
			return q, errFormat
		}
		// Walk the options only to check their lengths.
		for o, oend := off, off+rdlen; o < oend; {
			if o+4 > oend {
				return q, errFormat
			}
			o += 4 + int(binary.BigEndian.Uint16(pkt[o+2:]))
			if o > oend {
				return q, errFormat
			}
		}
	}
	return q, nil
}

// decodeName returns the canonical presentation form of an uncompressed
// wire-format name that nameEnd accepted: lowercased, escaped exactly as
// miekg/dns escapes (so that it equals canonical(UnpackDomainName)), in
// one allocation.
func decodeName(w []byte) string {
	if len(w) == 1 {
		return "."
	}
	var buf [4 * 256]byte
	n := 0
	for i := 0; i < len(w) && w[i] != 0; {
		l := int(w[i])
		for _, b := range w[i+1 : i+1+l] {
			switch {
			case b >= 'A' && b <= 'Z':
				buf[n] = b + 'a' - 'A'
				n++
			case b == '.' || b == ' ' || b == '\'' || b == '@' || b == ';' || b == '(' || b == ')' || b == '"' || b == '\\':
				buf[n], buf[n+1] = '\\', b
				n += 2
			case b < ' ' || b > '~':
				buf[n], buf[n+1], buf[n+2], buf[n+3] = '\\', '0'+b/100, '0'+b/10%10, '0'+b%10
				n += 4
			default:
				buf[n] = b
				n++
			}
		}
		buf[n] = '.'
		n++
		i += 1 + l
	}
	return string(buf[:n])
}

// nameEnd returns the offset just past the wire-format name at off. With
// pointers false, a compression pointer is an error (questions are sent
// uncompressed); with pointers true, the name ends after the first pointer.
func nameEnd(b []byte, off int, pointers bool) (int, bool) {
	total := 0
	for {
		if off >= len(b) {
			return 0, false
		}
		c := int(b[off])
		switch c & 0xC0 {
		case 0x00:
			if c == 0 {
				return off + 1, total+1 <= 255
			}
			total += c + 1
			if total > 255 {
				return 0, false
			}
			off += c + 1
		case 0xC0:
			if !pointers || off+2 > len(b) {
				return 0, false
			}
			return off + 2, true
		default:
			return 0, false
		}
	}
}

// template is an answer packed once as a reply, so that a cache hit only
// copies it and patches the ID, a few flags, the question's case and type,
// and the TTLs.
type template struct {
	wire   []byte   // the reply with ID 0, RD 0, no OPT
	qname  [2]int   // start and end of the question's name
	ttlOff []int    // offset of each record's TTL field
	ttls   []uint32 // each record's TTL as stored
}

// buildTemplate packs a as a reply.
func buildTemplate(a *answer) (*template, error) {
	m := new(dns.Msg)
	m.Response = true
	m.RecursionAvailable = true
	m.Rcode = a.rcode
	m.Compress = true
	qt := a.qtype
	if qt == typeNXDOMAIN {
		qt = dns.TypeA // patched per query
	}
	m.Question = []dns.Question{{Name: a.qname, Qtype: qt, Qclass: dns.ClassINET}}
	m.Answer = a.answer
	m.Ns = a.ns
	wire, err := m.Pack()
	if err != nil {
		return nil, err
	}
	t := &template{wire: wire}
	qend, ok := nameEnd(wire, headerLen, false)
	if !ok {
		return nil, errors.New("resolver: packed question unreadable")
	}
	t.qname = [2]int{headerLen, qend}
	offs, ok := ttlOffsets(wire)
	if !ok {
		return nil, errors.New("resolver: packed records unreadable")
	}
	t.ttlOff = offs
	for _, o := range offs {
		t.ttls = append(t.ttls, binary.BigEndian.Uint32(wire[o:]))
	}
	return t, nil
}

// ttlOffsets returns the offset of the TTL field of every record of the
// packed message, and false if the message does not parse.
func ttlOffsets(b []byte) ([]int, bool) {
	if len(b) < headerLen {
		return nil, false
	}
	qd := int(binary.BigEndian.Uint16(b[4:]))
	rr := int(binary.BigEndian.Uint16(b[6:])) + int(binary.BigEndian.Uint16(b[8:])) + int(binary.BigEndian.Uint16(b[10:]))
	off := headerLen
	for range qd {
		end, ok := nameEnd(b, off, true)
		if !ok || end+4 > len(b) {
			return nil, false
		}
		off = end + 4
	}
	offs := make([]int, 0, min(rr, len(b)/11))
	for range rr {
		end, ok := nameEnd(b, off, true)
		if !ok || end+10 > len(b) {
			return nil, false
		}
		offs = append(offs, end+4)
		off = end + 10 + int(binary.BigEndian.Uint16(b[end+8:]))
		if off > len(b) {
			return nil, false
		}
	}
	return offs, true
}

// render writes the reply to q from t into buf and returns it. age is the
// seconds since the answer was stored; with stale set every TTL is
// staleTTL instead. The reply may be larger than q allows; the caller
// checks.
func (t *template) render(buf []byte, q *query, age uint32, stale bool, staleTTL uint32, udpSize int) []byte {
	b := append(buf[:0], t.wire...)
	binary.BigEndian.PutUint16(b[0:], q.id)
	flags := binary.BigEndian.Uint16(b[2:])
	flags |= q.flags & (flagRD | flagCD)
	binary.BigEndian.PutUint16(b[2:], flags)
	if len(q.qname) == t.qname[1]-t.qname[0] {
		copy(b[t.qname[0]:], q.qname) // the client's case (RFC 4343)
	}
	binary.BigEndian.PutUint16(b[t.qname[1]:], q.qtype)
	for i, o := range t.ttlOff {
		ttl := staleTTL
		if !stale {
			ttl = 0
			if t.ttls[i] > age {
				ttl = t.ttls[i] - age
			}
		}
		binary.BigEndian.PutUint32(b[o:], ttl)
	}
	if q.edns {
		b = appendOPT(b, udpSize, 0)
	}
	return b
}

// appendOPT appends an OPT record (no options, DO clear) with the given
// UDP size and extended rcode bits to the reply b and counts it.
func appendOPT(b []byte, udpSize int, extRcode uint8) []byte {
	b = append(b, 0, 0, byte(dns.TypeOPT), 0, 0, extRcode, 0, 0, 0, 0, 0)
	n := len(b)
	binary.BigEndian.PutUint16(b[n-8:], uint16(udpSize))
	binary.BigEndian.PutUint16(b[10:], binary.BigEndian.Uint16(b[10:])+1)
	return b
}

// errorReply builds a reply to q carrying only the rcode: the header, the
// question when parseQuery read it, and an OPT when the client sent one.
func errorReply(q *query, rcode int, udpSize int) []byte {
	b := make([]byte, headerLen, headerLen+len(q.qname)+4+optLen)
	binary.BigEndian.PutUint16(b[0:], q.id)
	flags := uint16(flagQR|flagRA) | q.flags&(flagRD|flagCD) | uint16(q.opcode&0xF)<<11 | uint16(rcode&0xF)
	binary.BigEndian.PutUint16(b[2:], flags)
	if q.qname != nil {
		binary.BigEndian.PutUint16(b[4:], 1)
		b = append(b, q.qname...)
		b = binary.BigEndian.AppendUint16(b, q.qtype)
		b = binary.BigEndian.AppendUint16(b, q.qclass)
	}
	if q.edns {
		b = appendOPT(b, udpSize, uint8(rcode>>4))
	}
	return b
}
