package notify

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
)

// TestUploadBroadcastDeliveredOnce: a new upload reaches the connected
// followers live as one broadcast on the creator's channel — also a
// follower who followed while connected — once each, with each stream's
// own unread count; a connected non-follower gets nothing; the upload
// reported again is not broadcast again; a stream that resumes from the
// broadcast's ID is not replayed the upload, one that resumes from before
// it gets the inbox copy once; unfollowing drops the channel.
func TestUploadBroadcastDeliveredOnce(t *testing.T) {
	e := newEnv(t, options{page: 2})
	ctx := context.Background()
	creator := e.user(t, "creator")
	fan, fan2, fan3 := e.user(t, "fan"), e.user(t, "fan2"), e.user(t, "fan3")
	stranger, late := e.user(t, "stranger"), e.user(t, "late")
	for _, f := range []int64{fan, fan2, fan3} {
		e.follow(t, f, creator)
	}
	// The fan has one unread notification already.
	e.handle(t, "comment.created", 1, map[string]string{"comment_id": "1", "video_id": "1", "user_id": strconv.FormatInt(stranger, 10), "video_owner_id": strconv.FormatInt(fan, 10), "body": "hi"})
	drain(t, e.svc.routeLive) // its live hint: nobody connected yet

	streams := map[int64]*sse{}
	for _, u := range []int64{fan, stranger, late} {
		s := e.stream(t, u, "")
		if ev := s.next(t); ev.name != "hello" {
			t.Fatalf("first event %+v", ev)
		}
		if ev := s.next(t); ev.name != "unread" {
			t.Fatalf("second event %+v", ev)
		}
		streams[u] = s
		waitFor(t, "the registry", func() bool { return len(e.reg.Lookup(u)) == 1 })
	}
	if st := e.hub.Stats(); st.Channels != 1 || e.hub.Subscribers(CreatorChannel(creator)) != 1 {
		t.Fatalf("hub channels %d, want the creator's only, with the fan", st.Channels)
	}
	// Late follows while connected: the follow event resubscribes the
	// stream.
	e.follow(t, late, creator)
	e.handle(t, "user.followed", creator, map[string]string{"follower_id": strconv.FormatInt(late, 10), "followee_id": strconv.FormatInt(creator, 10)})
	waitFor(t, "late's stream resubscribed", func() bool { return e.hub.Subscribers(CreatorChannel(creator)) == 2 })
	e.run(t)

	video := e.video(t, creator, "Night train")
	e.emit(t, "video.ready", video, nil)
	e.publish(t)

	var ids []string
	for u, wantUnread := range map[int64]int{fan: 2, late: 1} {
		ev := streams[u].next(t)
		var d liveData
		if err := json.Unmarshal([]byte(ev.data), &d); err != nil {
			t.Fatal(err)
		}
		if ev.name != "notification" || d.Notification.Type != TypeNewUpload || d.Notification.Title != "creator uploaded a new video" ||
			d.Unread != wantUnread || ev.id != strconv.FormatInt(d.Notification.ID, 10) {
			t.Fatalf("user %d got %+v %+v", u, ev, d)
		}
		ids = append(ids, ev.id)
	}
	if ids[0] != ids[1] {
		t.Fatalf("one broadcast, two IDs: %v", ids)
	}
	// No per-user live hint for the upload (a routed copy would also show
	// up on the streams below, before the unread counts).
	if n := e.count(t, `SELECT COUNT(*) FROM notify_live l JOIN notifications n ON n.id = l.notification_id WHERE n.type = ?`, TypeNewUpload); n != 0 {
		t.Fatalf("%d per-user live hints for the upload", n)
	}
	waitFor(t, "the fan-out to finish", func() bool { return e.count(t, `SELECT COUNT(*) FROM notify_fanout`) == 0 })
	for _, u := range []int64{fan, fan2, fan3, late} {
		if n := e.count(t, `SELECT COUNT(*) FROM notifications WHERE user_id = ? AND type = ?`, u, TypeNewUpload); n != 1 {
			t.Fatalf("user %d has %d inbox rows for the upload", u, n)
		}
	}

	// The same upload reported again: deduplicated, not broadcast again.
	e.emit(t, "video.ready", video, nil)
	e.publish(t)
	waitFor(t, "the duplicate event consumed", func() bool {
		return e.count(t, `SELECT COUNT(*) FROM processed_events WHERE consumer = 'notify'`) == 2
	})
	waitFor(t, "the second fan-out", func() bool { return e.count(t, `SELECT COUNT(*) FROM notify_fanout`) == 0 })
	// Each stream's next event is the unread count a mark-read sends:
	// no second notification, and nothing for the stranger.
	for _, u := range []int64{fan, stranger, late} {
		if _, err := e.svc.MarkRead(ctx, u, nil, true); err != nil {
			t.Fatal(err)
		}
		if ev := streams[u].next(t); ev.name != "unread" || ev.data != `{"unread":0}` {
			t.Fatalf("user %d: got %+v, want the unread count", u, ev)
		}
	}

	// Resuming from the broadcast's ID replays nothing; from before it,
	// the inbox copy once.
	r := e.stream(t, late, ids[0])
	r.next(t) // hello
	if ev := r.next(t); ev.name != "unread" {
		t.Fatal(ev)
	}
	r2 := e.stream(t, fan3, "1")
	r2.next(t)
	r2.next(t)
	// fan3's first stream: the registry learns of it from the hub's
	// presence message, asynchronously; the unfollow below resyncs only
	// streams the registry knows.
	waitFor(t, "the registry", func() bool { return len(e.reg.Lookup(fan3)) == 1 })
	if ev := r2.next(t); ev.name != "notification" || ev.id == ids[0] {
		t.Fatalf("resumed stream got %+v, want the inbox copy", ev)
	}
	if _, err := e.svc.MarkRead(ctx, late, nil, true); err != nil {
		t.Fatal(err)
	}
	if ev := r.next(t); ev.name != "unread" {
		t.Fatalf("stream resumed from the broadcast got %+v", ev)
	}

	// Unfollowing drops the channel once no stream wants it.
	for _, u := range []int64{fan, late, fan3} {
		if _, err := e.db.W.Exec(`DELETE FROM follows WHERE follower_id = ? AND followee_id = ?`, u, creator); err != nil {
			t.Fatal(err)
		}
		e.handle(t, "user.unfollowed", creator, map[string]string{"follower_id": strconv.FormatInt(u, 10), "followee_id": strconv.FormatInt(creator, 10)})
	}
	waitFor(t, "the creator's channel dropped", func() bool { return e.hub.Stats().Channels == 0 })
}

// TestUnreadFilter: broadcast notifications get the stream's count, one
// more each; routed events set it.
func TestUnreadFilter(t *testing.T) {
	f := unreadFilter()
	routed := liveMessage(Notification{ID: 5, Type: TypeComment}, 3)
	if got := f(routed, []byte("x")); string(got) != "x" {
		t.Fatalf("routed event rewritten: %q", got)
	}
	b := routed
	b.Channel, b.Data = "creator.1", json.RawMessage(`{"notification":{"id":"9"}}`)
	frame := []byte("event: notification\nid: 9\ndata: {\"notification\":{\"id\":\"9\"}}\n\n")
	if got := string(f(b, frame)); got != "event: notification\nid: 9\ndata: {\"notification\":{\"id\":\"9\"},\"unread\":4}\n\n" {
		t.Fatalf("broadcast %q", got)
	}
	if got := string(f(b, frame)); got != "event: notification\nid: 9\ndata: {\"notification\":{\"id\":\"9\"},\"unread\":5}\n\n" {
		t.Fatalf("second broadcast %q", got)
	}
	f(unreadMessage(0), nil)
	if got := string(f(b, frame)); got != "event: notification\nid: 9\ndata: {\"notification\":{\"id\":\"9\"},\"unread\":1}\n\n" {
		t.Fatalf("after a reset %q", got)
	}
}
