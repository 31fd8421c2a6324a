package realtime

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// channelBook is a test's source of truth for who is subscribed to what.
type channelBook struct {
	mu sync.Mutex
	m  map[int64][]string
}

func (b *channelBook) set(user int64, chans ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m[user] = chans
}

func (b *channelBook) source(_ context.Context, user int64) ([]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.m[user]...), nil
}

// backlog subscribes each stream to the user's channels, as the
// notification stream does.
func (b *channelBook) backlog(ctx context.Context, user int64, _ string) ([]Message, error) {
	return nil, SessionFrom(ctx).SetChannels(ctx, b.source)
}

// expectNext reads s's next event (other than pings) and checks its ID.
func expectNext(t *testing.T, who string, s *stream, id string) {
	t.Helper()
	for {
		e := s.next(t)
		if e.name == "ping" {
			continue
		}
		if e.id != id {
			t.Fatalf("%s: got %+v, want the event with id %s", who, e, id)
		}
		return
	}
}

// TestBroadcastReachesOnlySubscribers: two processes, each with a hub;
// subscribers of channel "creator.1" on both get one broadcast published
// from either process, once; streams not subscribed (other channel, no
// channel) get nothing; a hub without subscribers of the channel does not
// even receive it.
func TestBroadcastReachesOnlySubscribers(t *testing.T) {
	connect := broker(t)
	book := &channelBook{m: map[int64][]string{}}
	p1 := startProcess(t, connect, "frontend-1", HubConfig{}, book.backlog)
	p2 := startProcess(t, connect, "frontend-2", HubConfig{}, book.backlog)
	p3 := startProcess(t, connect, "frontend-3", HubConfig{}, book.backlog)
	book.set(1, "creator.1", "creator.9")
	book.set(2, "creator.2")
	book.set(3, "creator.1")
	streams := map[int64]*stream{}
	for user, p := range map[int64]*process{1: p1, 2: p1, 3: p2, 4: p2, 5: p3} {
		s, resp := open(t, p.srv.URL+"?user="+strconv.FormatInt(user, 10), nil)
		if s == nil {
			t.Fatalf("user %d: status %d", user, resp.StatusCode)
		}
		if e := s.next(t); e.name != "hello" {
			t.Fatalf("user %d: first event %+v", user, e)
		}
		streams[user] = s
	}
	// The hello is written before the backlog subscribes: wait until the
	// hubs hold the subscriptions.
	waitFor(t, "subscriptions", func() bool {
		return p1.hub.Stats().Channels == 3 && p2.hub.Stats().Channels == 1 && p3.hub.Stats().Channels == 0
	})
	waitFor(t, "registries", func() bool {
		return len(p1.reg.Lookup(5)) == 1 && len(p1.reg.Lookup(4)) == 1 && len(p1.reg.Lookup(2)) == 1
	})

	if err := p3.router.Broadcast(context.Background(), "creator.1", msg("upload", "100", `{"video":"7"}`)); err != nil {
		t.Fatal(err)
	}
	for _, u := range []int64{1, 3} {
		e := streams[u].next(t)
		if e.name != "upload" || e.id != "100" || e.data != `{"video":"7"}` {
			t.Fatalf("user %d got %+v", u, e)
		}
	}
	if err := p1.router.Broadcast(context.Background(), "creator.1", msg("upload", "101", `{"video":"8"}`)); err != nil {
		t.Fatal(err)
	}
	for _, u := range []int64{1, 3} {
		expectNext(t, "user "+strconv.FormatInt(u, 10), streams[u], "101")
	}
	// The others' next event is a marker sent to each of them afterwards:
	// neither broadcast reached them.
	for _, u := range []int64{2, 4, 5} {
		if n, err := p1.router.Send(context.Background(), u, msg("marker", "m"+strconv.FormatInt(u, 10), `{}`)); err != nil || n != 1 {
			t.Fatalf("marker to %d: %d, %v", u, n, err)
		}
		expectNext(t, "user "+strconv.FormatInt(u, 10), streams[u], "m"+strconv.FormatInt(u, 10))
	}
	waitFor(t, "process 3's marker counted", func() bool { return p3.hub.Stats().Delivered >= 1 })
	if st := p3.hub.Stats(); st.Delivered != 1 {
		t.Fatalf("process 3 wrote %d messages, want only its marker", st.Delivered)
	}

	// Bad channel names are refused with a clear error.
	for _, bad := range []string{"", "a..b", ".a", "a.", "a b", "a.*", ">", "creator/1", strings.Repeat("x", MaxChannelLen+1)} {
		err := p1.router.Broadcast(context.Background(), bad, msg("upload", "1", `{}`))
		if !errors.Is(err, ErrBadChannel) {
			t.Errorf("Broadcast(%q) = %v, want ErrBadChannel", bad, err)
		}
	}
}

// TestChannelsFollowConnections: the hub subscribes to a channel's subject
// when its first local subscriber joins and unsubscribes when the last
// leaves (disconnects); Router.Resync makes open streams take the channels
// their source now returns.
func TestChannelsFollowConnections(t *testing.T) {
	connect := broker(t)
	book := &channelBook{m: map[int64][]string{}}
	p := startProcess(t, connect, "frontend-1", HubConfig{}, book.backlog)
	book.set(1, "creator.1")
	book.set(2, "creator.1")
	subs := func() int { return p.nc.NumSubscriptions() }
	base := subs()
	a, _ := open(t, p.srv.URL+"?user=1", nil)
	a.next(t)
	b, _ := open(t, p.srv.URL+"?user=2", nil)
	b.next(t)
	waitFor(t, "one channel subscription for two streams", func() bool {
		return p.hub.Stats().Channels == 1 && subs() == base+1 && p.hub.Subscribers("creator.1") == 2
	})
	a.cancel()
	waitFor(t, "the first to leave", func() bool { return p.hub.Stats().Connections == 1 })
	if st := p.hub.Stats(); st.Channels != 1 || subs() != base+1 {
		t.Fatalf("after one of two left: %+v, %d subscriptions", st, subs()-base)
	}
	b.cancel()
	waitFor(t, "the channel's subscription to end with its last subscriber", func() bool {
		return p.hub.Stats().Channels == 0 && subs() == base
	})

	// Resync: user 3 follows someone while connected.
	s, _ := open(t, p.srv.URL+"?user=3", nil)
	s.next(t)
	waitFor(t, "registry", func() bool { return len(p.reg.Lookup(3)) == 1 })
	book.set(3, "creator.5")
	if n, err := p.router.Resync(context.Background(), 3); err != nil || n != 1 {
		t.Fatalf("resync: %d, %v", n, err)
	}
	waitFor(t, "the new channel", func() bool { return p.hub.Stats().Channels == 1 })
	if err := p.router.Broadcast(context.Background(), "creator.5", msg("upload", "5", `{}`)); err != nil {
		t.Fatal(err)
	}
	expectNext(t, "user 3", s, "5")
	// And unfollows: the channel is dropped.
	book.set(3)
	p.router.Resync(context.Background(), 3)
	waitFor(t, "the channel dropped", func() bool { return p.hub.Stats().Channels == 0 })
	if st := p.hub.Stats(); st.Dropped != 0 {
		t.Fatalf("dropped %d", st.Dropped)
	}
}

// TestBroadcastFilterAndKey: a broadcast is encoded once and shared; a
// connection's filter can rewrite it for that connection only, and a
// message whose key was already written on the connection (in the
// backlog) is not written again.
func TestBroadcastFilterAndKey(t *testing.T) {
	connect := broker(t)
	backlog := func(ctx context.Context, user int64, _ string) ([]Message, error) {
		sess := SessionFrom(ctx)
		if user == 1 {
			sess.SetFilter(func(m Message, frame []byte) []byte {
				if m.Channel == "" {
					return frame
				}
				return []byte(strings.Replace(string(frame), "shared", "mine", 1))
			})
		}
		if err := sess.SetChannels(ctx, func(context.Context, int64) ([]string, error) { return []string{"news"}, nil }); err != nil {
			return nil, err
		}
		if got := sess.Channels(); len(got) != 1 || got[0] != "news" {
			t.Errorf("channels %v", got)
		}
		m := msg("note", "1", `{"text":"from the inbox"}`)
		m.Key = "fact:1"
		return []Message{m}, nil
	}
	p := startProcess(t, connect, "frontend-1", HubConfig{}, backlog)
	a, _ := open(t, p.srv.URL+"?user=1", nil)
	b, _ := open(t, p.srv.URL+"?user=2", nil)
	for _, s := range []*stream{a, b} {
		s.next(t) // hello
		if e := s.next(t); e.id != "1" {
			t.Fatalf("backlog %+v", e)
		}
	}
	repeat := msg("note", "2", `{"text":"the same fact"}`)
	repeat.Key = "fact:1"
	if err := p.router.Broadcast(context.Background(), "news", repeat); err != nil {
		t.Fatal(err)
	}
	if err := p.router.Broadcast(context.Background(), "news", msg("note", "3", `{"text":"shared"}`)); err != nil {
		t.Fatal(err)
	}
	if e := a.next(t); e.id != "3" || e.data != `{"text":"mine"}` {
		t.Fatalf("filtered stream got %+v", e)
	}
	if e := b.next(t); e.id != "3" || e.data != `{"text":"shared"}` {
		t.Fatalf("plain stream got %+v", e)
	}
}

// TestBadChannelsAreReported: a source returning invalid names subscribes
// the valid ones and reports the others.
func TestBadChannelsAreReported(t *testing.T) {
	connect := broker(t)
	errc := make(chan error, 1)
	backlog := func(ctx context.Context, user int64, _ string) ([]Message, error) {
		errc <- SessionFrom(ctx).SetChannels(ctx, func(context.Context, int64) ([]string, error) {
			return []string{"ok.1", "not ok", "a.*"}, nil
		})
		return nil, nil
	}
	p := startProcess(t, connect, "frontend-1", HubConfig{}, backlog)
	s, _ := open(t, p.srv.URL+"?user=1", nil)
	s.next(t)
	err := <-errc
	if !errors.Is(err, ErrBadChannel) || !strings.Contains(err.Error(), `"not ok"`) || !strings.Contains(err.Error(), `"a.*"`) {
		t.Fatalf("error %v", err)
	}
	if st := p.hub.Stats(); st.Channels != 1 {
		t.Fatalf("%d channels, want ok.1 only", st.Channels)
	}
}

func TestValidChannel(t *testing.T) {
	for _, good := range []string{"a", "creator.42", "Team_1.room-2", strings.Repeat("x", MaxChannelLen)} {
		if err := ValidChannel(good); err != nil {
			t.Errorf("ValidChannel(%q) = %v", good, err)
		}
	}
	for _, bad := range []string{"", ".", "a..b", "a.", ".a", "a b", "a\n", "é", "a.>", "*"} {
		if err := ValidChannel(bad); !errors.Is(err, ErrBadChannel) {
			t.Errorf("ValidChannel(%q) = %v", bad, err)
		}
	}
}

// FuzzValidChannel: an accepted name is one NATS subject token sequence
// without wildcards or whitespace.
func FuzzValidChannel(f *testing.F) {
	for _, s := range []string{"creator.1", "a..b", "a.*", ">", " ", "x.y.z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidChannel(s) != nil {
			return
		}
		if s == "" || len(s) > MaxChannelLen || strings.ContainsAny(s, "*> \t\r\n\x00") {
			t.Fatalf("accepted %q", s)
		}
		for tok := range strings.SplitSeq(s, ".") {
			if tok == "" {
				t.Fatalf("accepted %q with an empty token", s)
			}
		}
	})
}
