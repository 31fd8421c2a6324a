// Package realtime is the real-time half of the dispatcher: it holds the
// users' live connections on the frontend servers and routes a message for
// a user to exactly the frontend instances that hold one of that user's
// connections.
//
// Three parts:
//
//   - A Hub per frontend instance holds server-sent-event (SSE) streams per
//     user, with limits per user and in total, heartbeats, a bounded send
//     queue per connection (a slow client is disconnected, never waited
//     for) and a resume point: the client's Last-Event-ID is handed to the
//     caller's backlog function so missed messages are replayed from the
//     source of truth (the notification inbox).
//   - A Registry per process knows which instance holds which user. Hubs
//     publish presence on core NATS ("rt.presence": add, del, a full
//     refresh every presence interval, gone on stop); every Registry applies
//     it to an in-memory map whose entries expire after three intervals
//     without a refresh, so a crashed instance drops out by itself.
//   - A Router sends a message for a user: it looks the user up in the
//     Registry and publishes on the subject "rt.<instance ID>" of each
//     instance that holds the user, and nowhere else. Each Hub subscribes
//     to its own subject.
//   - Channels: a connection can be subscribed to named channels (e.g.
//     "creator.42"). Router.Broadcast publishes a message once, on the
//     subject "rt.ch.<channel>"; a Hub subscribes to that subject while it
//     holds at least one subscriber of the channel, encodes the event once
//     and writes the same bytes to each of them.
//
// Instance IDs are unique across processes and restarts: the instance
// name, the host, the process ID and random bits.
package realtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Subjects on core NATS.
const (
	subjectPrefix   = "rt."
	subjectPresence = "rt.presence"
	subjectSync     = "rt.presence.sync"
	subjectChannel  = "rt.ch."
)

// Limits of a message's fields.
const (
	maxEventLen = 64
	maxIDLen    = 64
	// MaxDataBytes bounds a message's data; NATS refuses payloads over
	// 1 MiB anyway, and a notification is a few hundred bytes.
	MaxDataBytes = 64 << 10
)

// Message is one real-time message for one user. On the wire to the
// browser it is one server-sent event: "event: <Event>", "id: <ID>" (when
// set; the browser sends it back as Last-Event-ID when it reconnects) and
// the JSON Data.
type Message struct {
	UserID int64           `json:"user_id,string,omitempty"`
	Event  string          `json:"event"`
	ID     string          `json:"id,omitempty"`
	Data   json.RawMessage `json:"data"`
	// Channel is set on messages broadcast to a channel (Router.Broadcast)
	// and empty on messages for one user.
	Channel string `json:"channel,omitempty"`
	// Key, when set, identifies the fact the message tells about, for
	// de-duplication: a connection writes at most one message per key
	// (and per ID), so a broadcast that repeats an entry of the backlog
	// under another ID is written once. It is not sent to the client.
	Key string `json:"key,omitempty"`
}

// envelope is a message on a hub's subject: a message for a user, or a
// control request about the user's connections.
type envelope struct {
	Message
	Ctl string `json:"ctl,omitempty"` // ctlResync
}

// ctlResync asks a hub to recompute the channels of a user's connections.
const ctlResync = "resync"

// ErrBadMessage is returned for a message that cannot be sent as an event.
var ErrBadMessage = errors.New("realtime: bad message")

// Validate checks that m can be written as one server-sent event for one
// user.
func (m Message) Validate() error {
	if m.UserID <= 0 {
		return fmt.Errorf("%w: user id %d", ErrBadMessage, m.UserID)
	}
	return m.validateEvent()
}

// validateEvent checks everything but the recipient.
func (m Message) validateEvent() error {
	if m.Event == "" || len(m.Event) > maxEventLen {
		return fmt.Errorf("%w: event name length %d", ErrBadMessage, len(m.Event))
	}
	for _, c := range m.Event {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf("%w: event name %q", ErrBadMessage, m.Event)
		}
	}
	if len(m.ID) > maxIDLen || strings.ContainsAny(m.ID, "\r\n\x00") {
		return fmt.Errorf("%w: id %q", ErrBadMessage, m.ID)
	}
	if len(m.Key) > maxIDLen {
		return fmt.Errorf("%w: key of %d bytes", ErrBadMessage, len(m.Key))
	}
	if len(m.Data) > MaxDataBytes {
		return fmt.Errorf("%w: data of %d bytes", ErrBadMessage, len(m.Data))
	}
	if len(m.Data) > 0 && !json.Valid(m.Data) {
		return fmt.Errorf("%w: data is not JSON", ErrBadMessage)
	}
	return nil
}

// MaxChannelLen bounds a channel name.
const MaxChannelLen = 128

// ErrBadChannel is returned for a channel name that is not allowed.
var ErrBadChannel = errors.New("realtime: bad channel name")

// ValidChannel checks a channel name: 1 to 128 bytes, tokens of ASCII
// letters, digits, '-' and '_' separated by single dots (e.g.
// "creator.42"), so that it is one NATS subject below "rt.ch." and never
// a wildcard.
func ValidChannel(name string) error {
	if name == "" || len(name) > MaxChannelLen {
		return fmt.Errorf("%w: length %d, want 1..%d", ErrBadChannel, len(name), MaxChannelLen)
	}
	prev := byte('.')
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		case c == '.':
			if prev == '.' {
				return fmt.Errorf("%w: %q has an empty token", ErrBadChannel, name)
			}
		default:
			return fmt.Errorf("%w: %q has the character %q (allowed: letters, digits, '-', '_', '.')", ErrBadChannel, name, c)
		}
		prev = c
	}
	if prev == '.' {
		return fmt.Errorf("%w: %q ends with a dot", ErrBadChannel, name)
	}
	return nil
}

// EncodeSSE returns m as one server-sent event (text/event-stream), ending
// with the blank line that dispatches it. Data containing line breaks is
// split over several data lines, as the format requires.
func EncodeSSE(m Message) []byte {
	var b bytes.Buffer
	b.WriteString("event: ")
	b.WriteString(m.Event)
	b.WriteByte('\n')
	if m.ID != "" {
		b.WriteString("id: ")
		b.WriteString(m.ID)
		b.WriteByte('\n')
	}
	data := m.Data
	if len(data) == 0 {
		data = []byte("{}")
	}
	// The format ends lines at CRLF, LF or a lone CR; JSON allows any of
	// them as whitespace, so all become LF first.
	data = bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
	data = bytes.ReplaceAll(data, []byte("\r"), []byte("\n"))
	for line := range bytes.Lines(data) {
		line = bytes.TrimSuffix(line, []byte("\n"))
		b.WriteString("data: ")
		b.Write(line)
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	return b.Bytes()
}

// presence is what hubs publish about the users they hold.
type presence struct {
	Instance string  `json:"instance"`
	Name     string  `json:"name"`
	Op       string  `json:"op"` // add, del, refresh, gone
	Users    []int64 `json:"users,omitempty"`
	TTLMilli int64   `json:"ttl_ms"`
}

// Presence operations.
const (
	opAdd     = "add"
	opDel     = "del"
	opRefresh = "refresh"
	opGone    = "gone"
)

// presenceChunk bounds the users listed in one refresh message.
const presenceChunk = 2000
