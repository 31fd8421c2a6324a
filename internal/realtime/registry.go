package realtime

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// Registry knows which frontend instances hold a live connection of which
// user. It is kept by the presence messages the hubs publish; every entry
// carries an expiry (three presence intervals of its instance) that each
// refresh pushes forward, so entries of an instance that died without
// saying so disappear on their own.
type Registry struct {
	nc  *nats.Conn
	m   *Metrics
	log *slog.Logger
	now func() time.Time

	mu        sync.RWMutex
	byUser    map[int64]map[string]time.Time // user → instance → expiry
	instances map[string]*instance

	sub    *nats.Subscription
	cancel context.CancelFunc
	done   chan struct{}
}

type instance struct {
	name    string
	expires time.Time
	users   map[int64]struct{}
}

// NewRegistry returns a Registry; Start fills it.
func NewRegistry(nc *nats.Conn, m *Metrics, logger *slog.Logger) *Registry {
	if m == nil {
		m = NewMetrics(nil)
	}
	return &Registry{nc: nc, m: m, log: logger, now: time.Now,
		byUser: map[int64]map[string]time.Time{}, instances: map[string]*instance{}}
}

// Start subscribes to presence, asks every hub for a full refresh (so a
// registry that starts late learns the connections already open), and
// sweeps expired entries until Stop.
func (r *Registry) Start(ctx context.Context) error {
	sub, err := r.nc.Subscribe(subjectPresence, func(msg *nats.Msg) {
		var p presence
		if err := json.Unmarshal(msg.Data, &p); err != nil || p.Instance == "" {
			r.log.Warn("realtime: malformed presence message dropped")
			return
		}
		r.apply(p)
	})
	if err != nil {
		return fmt.Errorf("realtime: subscribe presence: %w", err)
	}
	r.sub = sub
	if err := r.nc.Publish(subjectSync, nil); err != nil {
		sub.Unsubscribe()
		return fmt.Errorf("realtime: presence sync: %w", err)
	}
	if err := r.nc.Flush(); err != nil {
		sub.Unsubscribe()
		return fmt.Errorf("realtime: flush: %w", err)
	}
	ctx, r.cancel = context.WithCancel(ctx)
	r.done = make(chan struct{})
	go func() {
		defer close(r.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				r.sweep()
			}
		}
	}()
	return nil
}

// Stop stops following presence.
func (r *Registry) Stop() {
	if r.cancel == nil {
		return
	}
	r.sub.Unsubscribe()
	r.cancel()
	<-r.done
}

// apply updates the map with one presence message.
func (r *Registry) apply(p presence) {
	ttl := time.Duration(p.TTLMilli) * time.Millisecond
	if ttl <= 0 || ttl > time.Hour {
		ttl = 30 * time.Second
	}
	exp := r.now().Add(ttl)
	r.mu.Lock()
	defer r.mu.Unlock()
	inst := r.instances[p.Instance]
	if p.Op == opGone {
		if inst != nil {
			for u := range inst.users {
				r.unsetLocked(u, p.Instance)
			}
			delete(r.instances, p.Instance)
		}
		r.m.entries.Set(float64(r.countLocked()))
		return
	}
	if inst == nil {
		inst = &instance{name: p.Name, users: map[int64]struct{}{}}
		r.instances[p.Instance] = inst
	}
	switch p.Op {
	case opAdd, opRefresh:
		inst.expires = exp
		for _, u := range p.Users {
			if u <= 0 {
				continue
			}
			m := r.byUser[u]
			if m == nil {
				m = map[string]time.Time{}
				r.byUser[u] = m
			}
			m[p.Instance] = exp
			inst.users[u] = struct{}{}
		}
	case opDel:
		for _, u := range p.Users {
			r.unsetLocked(u, p.Instance)
			delete(inst.users, u)
		}
	}
	r.m.entries.Set(float64(r.countLocked()))
}

func (r *Registry) unsetLocked(user int64, inst string) {
	if m := r.byUser[user]; m != nil {
		delete(m, inst)
		if len(m) == 0 {
			delete(r.byUser, user)
		}
	}
}

func (r *Registry) countLocked() int {
	n := 0
	for _, inst := range r.instances {
		n += len(inst.users)
	}
	return n
}

// sweep removes expired entries and instances.
func (r *Registry) sweep() {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, inst := range r.instances {
		for u := range inst.users {
			if exp, ok := r.byUser[u][id]; !ok || now.After(exp) {
				r.unsetLocked(u, id)
				delete(inst.users, u)
			}
		}
		if now.After(inst.expires) && len(inst.users) == 0 {
			delete(r.instances, id)
		}
	}
	r.m.entries.Set(float64(r.countLocked()))
}

// Lookup returns the IDs of the instances holding a live connection of
// user, sorted.
func (r *Registry) Lookup(user int64) []string {
	now := r.now()
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []string
	for id, exp := range r.byUser[user] {
		if !now.After(exp) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// InstanceInfo describes one instance the registry knows.
type InstanceInfo struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Users   int       `json:"users"`
	Expires time.Time `json:"expires"`
}

// Instances returns the instances the registry knows, by ID.
func (r *Registry) Instances() []InstanceInfo {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]InstanceInfo, 0, len(r.instances))
	for id, inst := range r.instances {
		out = append(out, InstanceInfo{ID: id, Name: inst.name, Users: len(inst.users), Expires: inst.expires})
	}
	slices.SortFunc(out, func(a, b InstanceInfo) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out
}

// Router sends messages to the instances holding the recipient.
type Router struct {
	nc  *nats.Conn
	reg *Registry
	m   *Metrics
}

// NewRouter returns a Router over reg.
func NewRouter(nc *nats.Conn, reg *Registry, m *Metrics) *Router {
	if m == nil {
		m = reg.m
	}
	return &Router{nc: nc, reg: reg, m: m}
}

// Send publishes msg for user on the subject of every instance that holds
// one of the user's live connections, and returns how many that was (0
// when the user is not connected anywhere; nothing is published then).
// Delivery is at most once: live messages are hints, the caller's store is
// the truth that reconnecting clients resume from.
func (r *Router) Send(ctx context.Context, user int64, msg Message) (int, error) {
	msg.UserID = user
	if err := msg.Validate(); err != nil {
		return 0, err
	}
	insts := r.reg.Lookup(user)
	if len(insts) == 0 {
		r.m.unrouted.Inc()
		return 0, nil
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return 0, fmt.Errorf("realtime: encode: %w", err)
	}
	return r.publishTo(ctx, insts, b, r.m.routed)
}

// Broadcast publishes msg once on the channel's subject. Every hub with a
// local subscriber of the channel receives it, encodes the event once and
// writes it to each subscriber; hubs without one do not receive it. msg's
// UserID is ignored. Delivery is at most once, as for Send: a connection
// subscribed after the publish, or one that is too slow, misses it.
func (r *Router) Broadcast(ctx context.Context, channel string, msg Message) error {
	if err := ValidChannel(channel); err != nil {
		return err
	}
	msg.UserID, msg.Channel = 0, channel
	if err := msg.validateEvent(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("realtime: encode: %w", err)
	}
	if err := r.nc.Publish(subjectChannel+channel, b); err != nil {
		return fmt.Errorf("realtime: publish to channel %s: %w", channel, err)
	}
	r.m.broadcasts.Inc()
	return nil
}

// Resync asks every instance holding a connection of user to recompute
// the channels of the user's connections (their Session's ChannelSource
// is asked again), e.g. after the user followed or unfollowed someone. It
// returns the number of instances asked.
func (r *Router) Resync(ctx context.Context, user int64) (int, error) {
	if user <= 0 {
		return 0, fmt.Errorf("%w: user id %d", ErrBadMessage, user)
	}
	insts := r.reg.Lookup(user)
	if len(insts) == 0 {
		return 0, nil
	}
	b, err := json.Marshal(envelope{Message: Message{UserID: user}, Ctl: ctlResync})
	if err != nil {
		return 0, fmt.Errorf("realtime: encode: %w", err)
	}
	return r.publishTo(ctx, insts, b, r.m.resyncs)
}

// publishTo publishes b on the subject of each instance in insts, counting
// each publish in c, and returns how many were published.
func (r *Router) publishTo(ctx context.Context, insts []string, b []byte, c prometheus.Counter) (int, error) {
	n := 0
	for _, id := range insts {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if err := r.nc.Publish(subjectPrefix+id, b); err != nil {
			return n, fmt.Errorf("realtime: publish to %s: %w", id, err)
		}
		n++
		c.Inc()
	}
	return n, nil
}
