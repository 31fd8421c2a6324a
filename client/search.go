package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// SearchOptions select what Search looks for and which page it returns.
type SearchOptions struct {
	Type string // "videos" (default) or "creators"
	Page int    // from 1 (default 1)
	Size int    // hits per page, 1–50 (default 20)
}

// SearchHit is one search result.
type SearchHit struct {
	Type         string    `json:"type"` // "video" or "creator"
	ID           string    `json:"id"`
	Title        string    `json:"title"` // a creator's username for creators
	Snippet      string    `json:"snippet"`
	Tags         []string  `json:"tags"`
	Creator      string    `json:"creator"`
	CreatorID    string    `json:"creator_id"`
	URL          string    `json:"url"`
	ThumbnailURL string    `json:"thumbnail_url"`
	CreatedAt    time.Time `json:"created_at"`
	Popularity   int64     `json:"popularity"`
	Score        float64   `json:"score"`
}

// SearchResult is one page of search results.
type SearchResult struct {
	Query  string      `json:"q"`
	Type   string      `json:"type"`
	Page   int         `json:"page"`
	Size   int         `json:"size"`
	Total  int         `json:"total"`
	More   bool        `json:"more"`
	Hits   []SearchHit `json:"hits"`
	TookMS float64     `json:"took_ms"`
}

// Search finds videos or creators by title, description, #tags and
// creator name; misspelled words and a last word still being typed match
// too. Invalid queries (empty, over 200 characters, over 10 words) are
// *Error with status 400.
func (c *Client) Search(ctx context.Context, query string, opts SearchOptions) (SearchResult, error) {
	v := url.Values{"q": {query}}
	if opts.Type != "" {
		v.Set("type", opts.Type)
	}
	if opts.Page > 0 {
		v.Set("page", strconv.Itoa(opts.Page))
	}
	if opts.Size > 0 {
		v.Set("size", strconv.Itoa(opts.Size))
	}
	var out SearchResult
	err := c.Do(ctx, http.MethodGet, "/api/v1/search?"+v.Encode(), nil, &out)
	return out, err
}
