package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/blueprint-media/blueprint/internal/idgen"
	"github.com/blueprint-media/blueprint/internal/outbox"
	"github.com/blueprint-media/blueprint/internal/realtime"
)

// Live new-upload notifications go out as one broadcast per upload on the
// creator's channel ("creator.<id>"), not one routed message per follower:
// every notification stream is subscribed to the channels of the creators
// its user follows, when the user wants new uploads in the app.

// maxLiveChannels bounds the creators whose uploads one stream receives
// live (the followed creators with the smallest IDs; uploads of the others
// are still in the inbox).
const maxLiveChannels = 4096

// qLiveFollowees lists the creators a user follows, for the channels of
// the user's notification stream.
const qLiveFollowees = `SELECT followee_id FROM follows WHERE follower_id = ? ORDER BY followee_id LIMIT ?`

// CreatorChannel is the realtime channel of creator's new uploads.
func CreatorChannel(creator int64) string { return "creator." + strconv.FormatInt(creator, 10) }

// uploadKey identifies the new-upload notification of a video in every
// inbox: the de-duplication key of the stored rows and the Key of the
// broadcast, so a stream writes it once even when it is both in the
// backlog and broadcast.
func uploadKey(video int64) string { return "upload:" + strconv.FormatInt(video, 10) }

// LiveChannels returns the channels of user's notification stream: the
// channels of the creators the user follows, or none when the user turned
// new uploads off in the app (realtime.ChannelSource).
func (s *Service) LiveChannels(ctx context.Context, user int64) ([]string, error) {
	p, err := loadPrefs(ctx, s.db.R, user)
	if err != nil {
		return nil, fmt.Errorf("notify: live channels: %w", err)
	}
	if !p.enabled(TypeNewUpload, ChannelWeb) {
		return nil, nil
	}
	rows, err := s.db.R.QueryContext(ctx, qLiveFollowees, user, maxLiveChannels)
	if err != nil {
		return nil, fmt.Errorf("notify: live channels: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("notify: live channels: %w", err)
		}
		out = append(out, CreatorChannel(id))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("notify: live channels: %w", err)
	}
	return out, nil
}

// setupLive subscribes the stream the backlog runs for to its channels and
// gives it the unread filter. It runs before the backlog is read, so an
// upload broadcast meanwhile is either in the backlog or arrives live
// (and the stream writes it once, by key).
func (s *Service) setupLive(ctx context.Context, user int64) {
	sess := realtime.SessionFrom(ctx)
	if sess == nil {
		return
	}
	sess.SetFilter(unreadFilter())
	if err := sess.SetChannels(ctx, s.LiveChannels); err != nil && ctx.Err() == nil {
		s.log.Warn("notify: live channels not (all) subscribed; uploads are still in the inbox", "user", user, "err", err)
	}
}

// unreadFilter keeps a stream's unread count and adds it to broadcast
// notifications, which are encoded once for all their subscribers and so
// carry no count of their own: the count is set by every "unread" and
// routed "notification" event (they carry the exact count) and goes up by
// one with each broadcast notification. Only the broadcast's last bytes
// are rewritten; the notification is not encoded again.
func unreadFilter() realtime.Filter {
	unread := 0
	return func(m realtime.Message, frame []byte) []byte {
		if m.Event != "notification" && m.Event != "unread" {
			return frame
		}
		if m.Channel == "" {
			var d struct {
				Unread *int `json:"unread"`
			}
			if json.Unmarshal(m.Data, &d) == nil && d.Unread != nil {
				unread = *d.Unread
			}
			return frame
		}
		// A broadcast's data is {"notification":{…}} on one line.
		if m.Event != "notification" || !bytes.HasSuffix(frame, []byte("}\n\n")) {
			return frame
		}
		unread++
		out := make([]byte, 0, len(frame)+24)
		out = append(out, frame[:len(frame)-3]...)
		out = append(out, `,"unread":`...)
		out = strconv.AppendInt(out, int64(unread), 10)
		return append(out, "}\n\n"...)
	}
}

// fanoutJob is the stored body of an upload fan-out job: the notification
// body, and whether a page already created a notification (then the job
// ends with a live broadcast; a replayed job that only finds duplicates
// does not broadcast again).
type fanoutJob struct {
	body
	Created bool `json:"created,omitempty"`
}

// broadcastUpload sends the live new-upload notification to the creator's
// channel, once, after the fan-out stored every follower's inbox row. Its
// event ID is a fresh ID, larger than the IDs of those rows (IDs grow with
// time, and the highest shard sorts last within a millisecond), so a
// client that resumes from it is not replayed the upload from its inbox;
// its key is the rows' de-duplication key. Live messages are hints: a
// failure is logged, the inboxes have the notification.
func (s *Service) broadcastUpload(ctx context.Context, actor, subject int64, b body) {
	if s.router == nil {
		return
	}
	id, err := s.ids.Next(idgen.MaxShard)
	if err != nil {
		s.log.Warn("notify: upload not broadcast live", "video", subject, "err", err)
		return
	}
	n := Notification{ID: id, Type: TypeNewUpload, ActorID: actor, SubjectID: subject,
		Title: b.Title, Text: b.Text, URL: b.URL, CreatedAt: s.now().UTC().Truncate(time.Second)}
	data, _ := json.Marshal(struct {
		Notification Notification `json:"notification"`
	}{n})
	msg := realtime.Message{Event: "notification", ID: strconv.FormatInt(id, 10), Key: uploadKey(subject), Data: data}
	if err := s.router.Broadcast(ctx, CreatorChannel(actor), msg); err != nil {
		s.log.Warn("notify: upload not broadcast live", "video", subject, "err", err)
	}
}

// resyncLive asks the frontends holding the follower of a follow or
// unfollow event to recompute the channels of the follower's streams.
func (s *Service) resyncLive(ctx context.Context, e outbox.Event) {
	if s.router == nil {
		return
	}
	var p struct {
		FollowerID string `json:"follower_id"`
	}
	if err := json.Unmarshal(e.Payload, &p); err != nil {
		return
	}
	follower, err := strconv.ParseInt(p.FollowerID, 10, 64)
	if err != nil || follower <= 0 {
		return
	}
	if _, err := s.router.Resync(ctx, follower); err != nil && !errors.Is(err, context.Canceled) {
		s.log.Warn("notify: live channels not resynced", "user", follower, "err", err)
	}
}
