package analytics

import (
	"strconv"
)

// fastBatch parses a batch body of the usual shape without reflection —
// encoding/json costs several microseconds per event, most of the ingest's
// CPU. It handles plain ASCII strings without escapes, the known keys in
// their exact spelling, each at most once, and numbers; anything else
// (escapes, non-ASCII, null, unknown or differently-cased keys, trailing
// data) makes it report !ok, and the caller parses the body with
// encoding/json, which also words the errors. Whenever it reports ok, its
// result equals encoding/json's (FuzzParseBatch checks this).
func fastBatch(b []byte) (Batch, bool) {
	p := scanner{b: b}
	var out Batch
	if !p.object(func(key string) bool {
		switch key {
		case "batch_id":
			return p.str(&out.BatchID)
		case "session":
			return p.str(&out.Session)
		case "events":
			out.Events = make([]EventIn, 0, 64)
			return p.array(func() bool {
				var e EventIn
				if !p.object(func(key string) bool { return p.eventField(&e, key) }) {
					return false
				}
				out.Events = append(out.Events, e)
				return true
			})
		}
		return false
	}) {
		return Batch{}, false
	}
	p.space()
	return out, p.i == len(p.b)
}

type scanner struct {
	b    []byte
	i    int
	last string // the last string parsed: session tokens repeat
}

func (p *scanner) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *scanner) consume(c byte) bool {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// object parses {"key": value, ...}, calling field for each key with the
// scanner at the value; a key seen twice fails.
func (p *scanner) object(field func(key string) bool) bool {
	if !p.consume('{') {
		return false
	}
	if p.consume('}') {
		return true
	}
	var seen [16]string // more keys than this cannot all be known ones
	n := 0
	for {
		var key string
		p.space()
		if !p.str(&key) || !p.consume(':') || n == len(seen) {
			return false
		}
		for _, k := range seen[:n] {
			if k == key {
				return false
			}
		}
		seen[n] = key
		n++
		p.space()
		if !field(key) {
			return false
		}
		if p.consume(',') {
			continue
		}
		return p.consume('}')
	}
}

// array parses [elem, ...] (an empty one too).
func (p *scanner) array(elem func() bool) bool {
	if !p.consume('[') {
		return false
	}
	if p.consume(']') {
		return true
	}
	for {
		p.space()
		if !elem() {
			return false
		}
		if p.consume(',') {
			continue
		}
		return p.consume(']')
	}
}

// str parses a string of printable ASCII without escapes.
func (p *scanner) str(dst *string) bool {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return false
	}
	start := p.i + 1
	for j := start; j < len(p.b); j++ {
		c := p.b[j]
		switch {
		case c == '"':
			if raw := p.b[start:j]; string(raw) == p.last {
				*dst = p.last
			} else {
				*dst = string(raw)
				if len(raw) > 16 {
					p.last = *dst
				}
			}
			p.i = j + 1
			return true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return false
		}
	}
	return false
}

// number returns the text of a JSON number; integer reports it has no
// fraction or exponent.
func (p *scanner) number() (text []byte, integer bool, ok bool) {
	b, i := p.b, p.i
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return nil, false, false
	}
	integer = true
	if i < len(b) && b[i] == '.' {
		integer = false
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return nil, false, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		integer = false
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return nil, false, false
		}
	}
	p.i = i
	return b[start:i], integer, true
}

func (p *scanner) int64(dst *int64) bool {
	text, integer, ok := p.number()
	if !ok || !integer {
		return false
	}
	neg := text[0] == '-'
	if neg {
		text = text[1:]
	}
	if len(text) > 18 { // may not fit: leave it to strconv
		n, err := strconv.ParseInt(string(p.b[p.i-len(text)-btoi(neg):p.i]), 10, 64)
		if err != nil {
			return false
		}
		*dst = n
		return true
	}
	var n int64
	for _, c := range text {
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	*dst = n
	return true
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (p *scanner) float(dst *float64) bool {
	text, _, ok := p.number()
	if !ok {
		return false
	}
	f, err := strconv.ParseFloat(string(text), 64)
	if err != nil {
		return false
	}
	*dst = f
	return true
}

func (p *scanner) eventField(e *EventIn, key string) bool {
	switch key {
	case "type":
		return p.str(&e.Type)
	case "seq":
		return p.int64(&e.Seq)
	case "session":
		return p.str(&e.Session)
	case "pos":
		var f float64
		if !p.float(&f) {
			return false
		}
		e.Pos = &f
		return true
	case "played":
		return p.float(&e.Played)
	case "rendition":
		return p.str(&e.Rendition)
	case "stall_ms":
		return p.int64(&e.StallMs)
	case "referrer":
		return p.str(&e.Referrer)
	case "path":
		return p.str(&e.Path)
	case "t":
		return p.int64(&e.T)
	}
	return false
}
