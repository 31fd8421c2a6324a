package tier

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
)

// NATS is an Invalidator over core NATS subjects cache.inv.<name>. Core
// NATS delivers at most once: a process disconnected while a key changed
// keeps its copy until the L1 TTL ends, which is why L1 TTLs of shared
// data stay short.
type NATS struct {
	nc     *nats.Conn
	origin string // this process's ID: its own messages are not applied
}

// NewNATS returns an Invalidator on nc.
func NewNATS(nc *nats.Conn) *NATS {
	b := make([]byte, 8)
	rand.Read(b)
	return &NATS{nc: nc, origin: hex.EncodeToString(b)}
}

func subject(name string) string { return "cache.inv." + name }

// Publish implements Invalidator.
func (n *NATS) Publish(ctx context.Context, name, key string) error {
	if err := n.nc.Publish(subject(name), []byte(n.origin+"\x00"+key)); err != nil {
		return fmt.Errorf("tier: invalidate %s %q: %w", name, key, err)
	}
	return nil
}

// Subscribe implements Invalidator.
func (n *NATS) Subscribe(name string, drop func(key string)) (func(), error) {
	sub, err := n.nc.Subscribe(subject(name), func(m *nats.Msg) {
		origin, key, ok := strings.Cut(string(m.Data), "\x00")
		if ok && origin != n.origin {
			drop(key)
		}
	})
	if err != nil {
		return nil, err
	}
	if err := n.nc.Flush(); err != nil { // the subscription is live on the server when Subscribe returns
		sub.Unsubscribe()
		return nil, err
	}
	return func() { sub.Unsubscribe() }, nil
}
