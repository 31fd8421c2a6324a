package realtime

import (
	"context"
	"slices"
)

// ChannelSource returns the channels a user's connection should be
// subscribed to, typically read from the source of truth (for
// notifications: the creators the user follows).
type ChannelSource func(ctx context.Context, user int64) ([]string, error)

// Filter sees every message before it is written to one connection — the
// backlog's and the live ones, for the user or broadcast to a channel —
// together with its encoded event, and returns the bytes to write, or nil
// to skip the message. frame may be shared by many connections: a filter
// must not modify it; to change it, return new bytes. A filter runs on the
// connection's own goroutine, one message at a time, so it can keep
// per-connection state (e.g. an unread count to add to broadcasts) without
// locking.
type Filter func(m Message, frame []byte) []byte

type sessionKey struct{}

// Session is a live connection as its Backlog sees it: the backlog uses it
// to subscribe the connection to channels and to set its filter before
// anything else is written.
type Session struct {
	h    *Hub
	c    *conn
	user int64
}

// SessionFrom returns the connection a Backlog runs for, or nil when ctx
// is not a backlog's.
func SessionFrom(ctx context.Context) *Session {
	s, _ := ctx.Value(sessionKey{}).(*Session)
	return s
}

// SetChannels makes source decide the connection's channels: it is asked
// now, and again whenever Router.Resync reaches this user's connections
// (e.g. after a follow). The connection is subscribed to exactly the
// valid names returned; the hub subscribes to a channel's subject while
// it has at least one local subscriber. Invalid names, names beyond
// HubConfig.MaxChannels and a failing source are reported in the error;
// the valid names are subscribed all the same. When SetChannels returns,
// broadcasts published from then on reach the connection.
func (s *Session) SetChannels(ctx context.Context, source ChannelSource) error {
	s.c.source = source
	names, err := source(ctx, s.user)
	if err != nil {
		return err
	}
	return s.h.setChannels(s.c, names)
}

// SetFilter sets the connection's filter (nil: write every message as
// encoded).
func (s *Session) SetFilter(f Filter) { s.c.filter = f }

// Channels returns the channels the connection is subscribed to, sorted.
func (s *Session) Channels() []string {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	out := make([]string, 0, len(s.c.chans))
	for n := range s.c.chans {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Subscribers returns the number of this hub's connections subscribed to
// channel.
func (h *Hub) Subscribers(channel string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if hc := h.chans[channel]; hc != nil {
		return len(hc.conns)
	}
	return 0
}
