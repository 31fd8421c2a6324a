package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// AnalyticsSession is a view session: one page load's token for sending
// events.
type AnalyticsSession struct {
	Tracking         bool   `json:"tracking"` // false when the server treats the caller as a bot
	Session          string `json:"session"`
	HeartbeatSeconds int    `json:"heartbeat_seconds"`
	MaxBatchEvents   int    `json:"max_batch_events"`
}

// AnalyticsEvent is one player or page event. Seq numbers the events of a
// session 1, 2, 3… in sending order; an event whose Seq is not above the
// session's highest so far is ignored as a replay.
type AnalyticsEvent struct {
	Type      string   `json:"type"` // view_start, heartbeat, quality, stall, page_view
	Seq       int64    `json:"seq"`
	Session   string   `json:"session,omitempty"`
	Pos       *float64 `json:"pos,omitempty"`    // playback position, seconds
	Played    float64  `json:"played,omitempty"` // seconds played since the previous event
	Rendition string   `json:"rendition,omitempty"`
	StallMs   int64    `json:"stall_ms,omitempty"`
	Referrer  string   `json:"referrer,omitempty"`
	Path      string   `json:"path,omitempty"`
}

// AnalyticsBatch is a batch of events. Retrying a batch with the same
// BatchID stores it once.
type AnalyticsBatch struct {
	BatchID string           `json:"batch_id"`
	Session string           `json:"session,omitempty"`
	Events  []AnalyticsEvent `json:"events"`
}

// AnalyticsAck is the ingest's answer: the events are durably queued.
type AnalyticsAck struct {
	Accepted  int    `json:"accepted"`
	Duplicate bool   `json:"duplicate"`
	Dropped   int    `json:"dropped"`
	Reason    string `json:"reason"`
}

// AnalyticsStats are the numbers of a video or a creator.
type AnalyticsStats struct {
	From              string  `json:"from"`
	To                string  `json:"to"`
	Views             int64   `json:"views"`
	UniqueViewers     int64   `json:"unique_viewers"`
	WatchSeconds      float64 `json:"watch_seconds"`
	AvgViewSeconds    float64 `json:"avg_view_seconds"`
	AvgPercentWatched float64 `json:"avg_percent_watched"`
	Stalls            int64   `json:"stalls"`
	StallSeconds      float64 `json:"stall_seconds"`
	Daily             []struct {
		Date          string  `json:"date"`
		Views         int64   `json:"views"`
		UniqueViewers int64   `json:"unique_viewers"`
		WatchSeconds  float64 `json:"watch_seconds"`
		Stalls        int64   `json:"stalls"`
	} `json:"daily"`
	Hourly []struct {
		Hour         time.Time `json:"hour"`
		Views        int64     `json:"views"`
		WatchSeconds float64   `json:"watch_seconds"`
	} `json:"hourly"`
	Referrers []struct {
		Name  string `json:"name"`
		Views int64  `json:"views"`
	} `json:"referrers"`
	Renditions []struct {
		Name         string  `json:"name"`
		Switches     int64   `json:"switches"`
		WatchSeconds float64 `json:"watch_seconds"`
	} `json:"renditions"`
	Retention []float64 `json:"retention"`
	Videos    []struct {
		ID           string  `json:"id"`
		Title        string  `json:"title"`
		Views        int64   `json:"views"`
		WatchSeconds float64 `json:"watch_seconds"`
	} `json:"videos"`
}

// AnalyticsSession opens a view session for a page load of videoID ("" for
// pages that are not watch pages). Keep a cookie jar in c.HTTP to be the
// same viewer across sessions, as a browser is.
func (c *Client) AnalyticsSession(ctx context.Context, videoID string) (AnalyticsSession, error) {
	var s AnalyticsSession
	body := map[string]string{}
	if videoID != "" {
		body["video_id"] = videoID
	}
	err := c.Do(ctx, http.MethodPost, "/api/v1/analytics/sessions", body, &s)
	return s, err
}

// SendAnalytics sends a batch of events. A nil error means they are
// durably queued; on an error, retry the same batch.
func (c *Client) SendAnalytics(ctx context.Context, b AnalyticsBatch) (AnalyticsAck, error) {
	var ack AnalyticsAck
	err := c.Do(ctx, http.MethodPost, "/api/v1/analytics/events", b, &ack)
	return ack, err
}

func daysQuery(days int) string {
	if days <= 0 {
		return ""
	}
	return "?days=" + url.QueryEscape(strconv.Itoa(days))
}

// VideoAnalytics returns one of the caller's videos' numbers over the last
// days (0: the server's default), with its retention curve.
func (c *Client) VideoAnalytics(ctx context.Context, videoID string, days int) (AnalyticsStats, error) {
	var s AnalyticsStats
	err := c.Do(ctx, http.MethodGet, fmt.Sprintf("/api/v1/analytics/videos/%s%s", url.PathEscape(videoID), daysQuery(days)), nil, &s)
	return s, err
}

// CreatorAnalytics returns the caller's numbers as a creator over the last
// days (0: the server's default).
func (c *Client) CreatorAnalytics(ctx context.Context, days int) (AnalyticsStats, error) {
	var s AnalyticsStats
	err := c.Do(ctx, http.MethodGet, "/api/v1/analytics/creators/me"+daysQuery(days), nil, &s)
	return s, err
}
