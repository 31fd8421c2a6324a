// Package client is the Go SDK for Blueprint's public HTTP API. The CLI and
// the end-to-end tests use it; so can anyone.
//
//	c := client.New("http://localhost:8080")
//	if err := c.Login(ctx, "alice", "password"); err != nil { ... }
//	up, err := c.Upload(ctx, "clip.mp4", client.UploadOptions{Title: "My clip"})
//	v, err := c.WaitReady(ctx, up.VideoID, time.Second)
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client talks to one Blueprint gateway.
type Client struct {
	BaseURL string
	Token   string
	HTTP    *http.Client
}

// New returns a Client for the gateway at baseURL.
func New(baseURL string) *Client {
	return &Client{BaseURL: strings.TrimSuffix(baseURL, "/"), HTTP: &http.Client{Timeout: 0}}
}

// Error is an API error response.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// User is an account.
type User struct {
	ID        string    `json:"id"`
	Username  string    `json:"username"`
	Email     string    `json:"email"`
	CreatedAt time.Time `json:"created_at"`
}

// Rendition is one processed output of a video or image.
type Rendition struct {
	Name      string `json:"name"`
	Width     int    `json:"width"`
	Height    int    `json:"height"`
	Bandwidth int    `json:"bandwidth"`
	URL       string `json:"url"`
}

// Video is a media item.
type Video struct {
	ID           string      `json:"id"`
	UserID       string      `json:"user_id"`
	Username     string      `json:"username"`
	Kind         string      `json:"kind"`
	Title        string      `json:"title"`
	Description  string      `json:"description"`
	Status       string      `json:"status"`
	Error        string      `json:"error"`
	Progress     float64     `json:"progress"`
	Duration     float64     `json:"duration"`
	Width        int         `json:"width"`
	Height       int         `json:"height"`
	HLSURL       string      `json:"hls_url"`
	ThumbnailURL string      `json:"thumbnail_url"`
	Renditions   []Rendition `json:"renditions"`
	CreatedAt    time.Time   `json:"created_at"`
}

// Do sends an API request with the client's token and decodes a JSON
// answer into out (when non-nil). Non-2xx answers become *Error.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return responseError(resp)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

func (c *Client) send(req *http.Request) (*http.Response, error) {
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return c.HTTP.Do(req)
}

func responseError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var e struct{ Error string }
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	return &Error{Status: resp.StatusCode, Message: msg}
}

// SignUp creates an account.
func (c *Client) SignUp(ctx context.Context, username, email, password string) (User, error) {
	var u User
	err := c.Do(ctx, http.MethodPost, "/api/v1/users", map[string]string{"username": username, "email": email, "password": password}, &u)
	return u, err
}

// Login opens a session and keeps its token in the client.
func (c *Client) Login(ctx context.Context, username, password string) error {
	var out struct{ Token string }
	if err := c.Do(ctx, http.MethodPost, "/api/v1/sessions", map[string]string{"username": username, "password": password}, &out); err != nil {
		return err
	}
	c.Token = out.Token
	return nil
}

// Logout ends the client's session.
func (c *Client) Logout(ctx context.Context) error {
	err := c.Do(ctx, http.MethodDelete, "/api/v1/sessions", nil, nil)
	if err == nil {
		c.Token = ""
	}
	return err
}

// Me returns the logged-in account.
func (c *Client) Me(ctx context.Context) (User, error) {
	var u User
	err := c.Do(ctx, http.MethodGet, "/api/v1/me", nil, &u)
	return u, err
}

// Video returns one media item.
func (c *Client) Video(ctx context.Context, id string) (Video, error) {
	var v Video
	err := c.Do(ctx, http.MethodGet, "/api/v1/videos/"+url.PathEscape(id), nil, &v)
	return v, err
}

// Videos returns a page of ready media, newest first, and the next cursor.
func (c *Client) Videos(ctx context.Context, cursor string, limit int) ([]Video, string, error) {
	q := url.Values{}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	var out struct {
		Videos     []Video
		NextCursor string `json:"next_cursor"`
	}
	err := c.Do(ctx, http.MethodGet, "/api/v1/videos?"+q.Encode(), nil, &out)
	return out.Videos, out.NextCursor, err
}

// WaitReady polls a media item until it is ready or failed, or ctx ends.
// A failed item returns the item and an error with its reason. For its
// first minute it waits through 404s too: an upload whose finish the
// server could not complete at once becomes an item a little later.
func (c *Client) WaitReady(ctx context.Context, id string, every time.Duration) (Video, error) {
	start := time.Now()
	for {
		v, err := c.Video(ctx, id)
		var apiErr *Error
		if errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound && time.Since(start) < time.Minute {
			err = nil
			v.Status = "processing"
		}
		if err != nil {
			return v, err
		}
		switch v.Status {
		case "ready":
			return v, nil
		case "failed":
			return v, fmt.Errorf("processing failed: %s", v.Error)
		}
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(every):
		}
	}
}
