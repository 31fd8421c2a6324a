package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Notification is one entry of the caller's inbox.
type Notification struct {
	ID        string     `json:"id"`
	Type      string     `json:"type"`
	ActorID   string     `json:"actor_id"`
	SubjectID string     `json:"subject_id"`
	Title     string     `json:"title"`
	Text      string     `json:"text"`
	URL       string     `json:"url"`
	CreatedAt time.Time  `json:"created_at"`
	ReadAt    *time.Time `json:"read_at"`
}

// NotificationPage is a page of the inbox, newest first.
type NotificationPage struct {
	Notifications []Notification `json:"notifications"`
	Unread        int            `json:"unread"`
	Next          string         `json:"next"` // cursor of the next page; empty at the end
}

// Notifications returns a page of the caller's notifications (before: a
// cursor from the previous page or empty; limit 0 means the server's
// default).
func (c *Client) Notifications(ctx context.Context, before string, limit int, unreadOnly bool) (NotificationPage, error) {
	q := url.Values{}
	if before != "" {
		q.Set("before", before)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if unreadOnly {
		q.Set("unread", "true")
	}
	path := "/api/v1/notifications"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var p NotificationPage
	err := c.Do(ctx, http.MethodGet, path, nil, &p)
	return p, err
}

// MarkRead marks notifications read and returns the unread count left.
func (c *Client) MarkRead(ctx context.Context, ids ...string) (int, error) {
	var out struct{ Unread int }
	err := c.Do(ctx, http.MethodPost, "/api/v1/notifications/read", map[string]any{"ids": ids}, &out)
	return out.Unread, err
}

// MarkAllRead marks every notification read.
func (c *Client) MarkAllRead(ctx context.Context) error {
	return c.Do(ctx, http.MethodPost, "/api/v1/notifications/read", map[string]any{"all": true}, nil)
}

// NotificationPreferences are the caller's choices per type and channel
// ("web", "email", "push") and the email mode ("instant", "hourly",
// "daily"). EmailEnabled and PushEnabled say what the server offers.
type NotificationPreferences struct {
	EmailDigest  string                     `json:"email_digest,omitempty"`
	Types        map[string]map[string]bool `json:"types,omitempty"`
	EmailEnabled bool                       `json:"email_enabled,omitempty"`
	PushEnabled  bool                       `json:"push_enabled,omitempty"`
}

// NotificationPreferences returns the caller's choices.
func (c *Client) NotificationPreferences(ctx context.Context) (NotificationPreferences, error) {
	var p NotificationPreferences
	err := c.Do(ctx, http.MethodGet, "/api/v1/notifications/preferences", nil, &p)
	return p, err
}

// SetNotificationPreferences changes the email mode (when not empty) and
// the switches given; the others keep their value.
func (c *Client) SetNotificationPreferences(ctx context.Context, digest string, types map[string]map[string]bool) (NotificationPreferences, error) {
	in := map[string]any{}
	if digest != "" {
		in["email_digest"] = digest
	}
	if types != nil {
		in["types"] = types
	}
	var p NotificationPreferences
	err := c.Do(ctx, http.MethodPut, "/api/v1/notifications/preferences", in, &p)
	return p, err
}

// PushKey returns the server's VAPID public key (base64url), the
// applicationServerKey browsers subscribe with.
func (c *Client) PushKey(ctx context.Context) (string, error) {
	var out struct{ Key string }
	err := c.Do(ctx, http.MethodGet, "/api/v1/push/key", nil, &out)
	return out.Key, err
}

// SubscribePush registers a Web Push subscription (a browser's
// PushSubscription: endpoint, p256dh and auth keys, base64url).
func (c *Client) SubscribePush(ctx context.Context, endpoint, p256dh, auth string) error {
	return c.Do(ctx, http.MethodPost, "/api/v1/push/subscriptions", map[string]any{
		"endpoint": endpoint, "keys": map[string]string{"p256dh": p256dh, "auth": auth},
	}, nil)
}

// UnsubscribePush removes a Web Push subscription.
func (c *Client) UnsubscribePush(ctx context.Context, endpoint string) error {
	return c.Do(ctx, http.MethodDelete, "/api/v1/push/subscriptions", map[string]string{"endpoint": endpoint}, nil)
}

// Event is one server-sent event of the notification stream: "hello"
// (Data has the frontend instance holding the stream), "unread" ({"unread":
// n}), "notification" ({"notification": {...}, "unread": n}) or "ping".
type Event struct {
	Name string
	ID   string
	Data []byte
}

// Notification decodes a "notification" event.
func (e Event) Notification() (Notification, int, error) {
	var d struct {
		Notification Notification `json:"notification"`
		Unread       int          `json:"unread"`
	}
	if e.Name != "notification" {
		return d.Notification, 0, fmt.Errorf("client: %q is not a notification event", e.Name)
	}
	err := json.Unmarshal(e.Data, &d)
	return d.Notification, d.Unread, err
}

// Stream is an open notification stream.
type Stream struct {
	resp *http.Response
	r    *EventReader
	// Instance is the ID of the frontend instance holding the stream
	// (the X-Realtime-Instance header).
	Instance string
}

// NotificationStream opens the caller's live notification stream. With
// lastEventID set, notifications after it are replayed first.
func (c *Client) NotificationStream(ctx context.Context, lastEventID string) (*Stream, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+"/api/v1/notifications/stream", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, responseError(resp)
	}
	return &Stream{resp: resp, r: NewEventReader(resp.Body), Instance: resp.Header.Get("X-Realtime-Instance")}, nil
}

// Next returns the next event; io.EOF when the server closed the stream.
func (s *Stream) Next() (Event, error) { return s.r.Next() }

// Close closes the stream.
func (s *Stream) Close() error { return s.resp.Body.Close() }

// EventReader parses a text/event-stream as the HTML standard defines it:
// lines end in CRLF, LF or CR; "field: value" with one optional space;
// comments start with ":"; an empty line dispatches the event; events
// without data are not dispatched. Lines are bounded (1 MiB).
type EventReader struct {
	sc     *bufio.Scanner
	lastID string
}

// maxEventLine bounds one line of the stream.
const maxEventLine = 1 << 20

// NewEventReader returns a reader of the stream r.
func NewEventReader(r io.Reader) *EventReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxEventLine)
	sc.Split(scanSSELines)
	return &EventReader{sc: sc}
}

// scanSSELines splits at CRLF, LF or a lone CR.
func scanSSELines(data []byte, atEOF bool) (int, []byte, error) {
	for i, b := range data {
		switch b {
		case '\n':
			return i + 1, data[:i], nil
		case '\r':
			if i+1 < len(data) {
				if data[i+1] == '\n' {
					return i + 2, data[:i], nil
				}
				return i + 1, data[:i], nil
			}
			if atEOF {
				return i + 1, data[:i], nil
			}
			return 0, nil, nil // need one more byte to tell CR from CRLF
		}
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// Next returns the next dispatched event, or io.EOF at the end.
func (r *EventReader) Next() (Event, error) {
	var name string
	var data bytes.Buffer
	hasData := false
	first := true
	for r.sc.Scan() {
		line := r.sc.Bytes()
		if first {
			line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf"))
			first = false
		}
		if len(line) == 0 {
			if !hasData {
				name = ""
				continue
			}
			if name == "" {
				name = "message"
			}
			return Event{Name: name, ID: r.lastID, Data: bytes.TrimSuffix(data.Bytes(), []byte("\n"))}, nil
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			name = string(value)
		case "data":
			data.Write(value)
			data.WriteByte('\n')
			hasData = true
		case "id":
			if !bytes.ContainsRune(value, 0) {
				r.lastID = string(value)
			}
		}
	}
	if err := r.sc.Err(); err != nil {
		return Event{}, err
	}
	return Event{}, io.EOF
}

// WaitNotification reads the stream until a notification event arrives
// and returns it (other events are skipped).
func (s *Stream) WaitNotification() (Notification, int, error) {
	for {
		e, err := s.Next()
		if err != nil {
			return Notification{}, 0, err
		}
		if e.Name == "notification" {
			return e.Notification()
		}
	}
}
