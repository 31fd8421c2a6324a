package client

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// UploadOptions describe an upload.
type UploadOptions struct {
	Title       string
	Description string
	ChunkSize   int64                   // bytes per PATCH; default 8 MiB
	Resume      string                  // upload URL of an earlier, interrupted upload of the same file
	OnCreate    func(uploadURL string)  // called once the upload exists, to remember it for resuming
	Progress    func(sent, total int64) // called after every chunk
	Retries     int                     // retries per chunk after a network error; default 5
}

// UploadResult is a finished upload.
type UploadResult struct {
	URL     string // the tus upload URL
	ID      string
	VideoID string
}

// Upload sends a file with the tus 1.0 protocol. With opts.Resume set it
// asks the server how much it already has and sends only the rest; a chunk
// cut off by a network error is retried from the server's offset.
func (c *Client) Upload(ctx context.Context, path string, opts UploadOptions) (UploadResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return UploadResult{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return UploadResult{}, err
	}
	return c.UploadReader(ctx, f, fi.Size(), filepath.Base(path), opts)
}

// UploadReader is Upload for any seekable source of size bytes.
func (c *Client) UploadReader(ctx context.Context, r io.ReadSeeker, size int64, filename string, opts UploadOptions) (UploadResult, error) {
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = 8 << 20
	}
	if opts.Retries == 0 {
		opts.Retries = 5
	}
	loc := opts.Resume
	var offset int64
	if loc != "" {
		off, err := c.tusOffset(ctx, loc)
		if err != nil {
			var apiErr *Error
			if errors.As(err, &apiErr) && (apiErr.Status == http.StatusNotFound || apiErr.Status == http.StatusGone) {
				loc = "" // expired or unknown: start over
			} else {
				return UploadResult{}, err
			}
		}
		offset = off
	}
	if loc == "" {
		meta := map[string]string{"filename": filename, "title": opts.Title, "description": opts.Description}
		var err error
		loc, err = c.tusCreate(ctx, size, meta)
		if err != nil {
			return UploadResult{}, err
		}
		offset = 0
		if opts.OnCreate != nil {
			opts.OnCreate(loc)
		}
	}
	failures := 0
	for offset < size {
		n := min(opts.ChunkSize, size-offset)
		if _, err := r.Seek(offset, io.SeekStart); err != nil {
			return UploadResult{}, err
		}
		newOff, err := c.tusPatch(ctx, loc, offset, io.LimitReader(r, n), n)
		if err != nil {
			var apiErr *Error
			if ctx.Err() != nil || (errors.As(err, &apiErr) && apiErr.Status/100 == 4 && apiErr.Status != http.StatusConflict) || failures >= opts.Retries {
				return UploadResult{URL: loc}, err
			}
			failures++
			select {
			case <-ctx.Done():
				return UploadResult{URL: loc}, ctx.Err()
			case <-time.After(time.Duration(failures) * 500 * time.Millisecond):
			}
			if newOff, err = c.tusOffset(ctx, loc); err != nil {
				continue
			}
		} else {
			failures = 0
		}
		offset = newOff
		if opts.Progress != nil {
			opts.Progress(offset, size)
		}
	}
	id := loc[strings.LastIndex(strings.TrimSuffix(loc, "/"), "/")+1:]
	var up struct {
		VideoID string `json:"video_id"`
	}
	if err := c.Do(ctx, http.MethodGet, "/api/v1/uploads/"+url.PathEscape(id), nil, &up); err != nil {
		return UploadResult{URL: loc, ID: id}, err
	}
	return UploadResult{URL: loc, ID: id, VideoID: up.VideoID}, nil
}

func (c *Client) tusRequest(ctx context.Context, method, u string, body io.Reader) (*http.Request, error) {
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		u = c.BaseURL + u
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	return req, nil
}

func (c *Client) tusCreate(ctx context.Context, size int64, meta map[string]string) (string, error) {
	req, err := c.tusRequest(ctx, http.MethodPost, "/api/v1/uploads/", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Upload-Length", strconv.FormatInt(size, 10))
	req.Header.Set("Upload-Metadata", EncodeMetadata(meta))
	resp, err := c.send(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return "", responseError(resp)
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", errors.New("upload created without a Location")
	}
	base, _ := url.Parse(c.BaseURL + "/api/v1/uploads/")
	ref, err := url.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("bad upload Location %q", loc)
	}
	return base.ResolveReference(ref).String(), nil
}

func (c *Client) tusOffset(ctx context.Context, loc string) (int64, error) {
	req, err := c.tusRequest(ctx, http.MethodHead, loc, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.send(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, &Error{Status: resp.StatusCode, Message: "upload offset unavailable"}
	}
	return strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
}

func (c *Client) tusPatch(ctx context.Context, loc string, offset int64, body io.Reader, n int64) (int64, error) {
	req, err := c.tusRequest(ctx, http.MethodPatch, loc, body)
	if err != nil {
		return 0, err
	}
	req.ContentLength = n
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set("Upload-Offset", strconv.FormatInt(offset, 10))
	resp, err := c.send(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return 0, responseError(resp)
	}
	return strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
}

// EncodeMetadata writes tus Upload-Metadata: comma-separated "key base64"
// pairs, keys sorted, empty values left out.
func EncodeMetadata(meta map[string]string) string {
	keys := make([]string, 0, len(meta))
	for k, v := range meta {
		if v != "" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " " + base64.StdEncoding.EncodeToString([]byte(meta[k]))
	}
	return strings.Join(parts, ",")
}
