// Package origin serves object storage over HTTP to the CDN edges: the
// origin of the blueprint's CDN. It serves only processed outputs (keys
// under videos/), never uploaded sources, with validators (ETag,
// Last-Modified), Range support and cache lifetimes the edges obey:
// segments and images are immutable, playlists are cached for a minute.
package origin

import (
	"errors"
	"net/http"
	"path"
	"strings"

	"github.com/blueprint-media/blueprint/internal/blob"
)

// Prefix is the URL path prefix objects are served under.
const Prefix = "/media/"

// Handler returns the origin's HTTP handler.
func Handler(store blob.Store) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET "+Prefix, func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.URL.Path, Prefix)
		if !strings.HasPrefix(key, "videos/") || blob.CheckKey(key) != nil {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		o, err := blob.OpenHotOrCold(r.Context(), store, key) // idle media live under the cold prefix
		if errors.Is(err, blob.ErrNotFound) {
			w.Header().Set("Cache-Control", "public, max-age=5")
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		if err != nil {
			http.Error(w, "object store unavailable", http.StatusServiceUnavailable)
			return
		}
		defer o.Close()
		info := o.Info()
		h := w.Header()
		h.Set("Content-Type", contentType(key))
		h.Set("Cache-Control", CacheControl(key))
		if info.ETag != "" {
			h.Set("ETag", info.ETag)
		}
		h.Set("X-Content-Type-Options", "nosniff")
		http.ServeContent(w, r, "", info.ModTime, o)
	})
	return mux
}

// CacheControl returns the Cache-Control the origin sends for a key.
func CacheControl(key string) string {
	switch path.Ext(key) {
	case ".m3u8":
		return "public, max-age=60"
	default:
		return "public, max-age=31536000, immutable"
	}
}

func contentType(key string) string {
	switch path.Ext(key) {
	case ".m3u8":
		return "application/vnd.apple.mpegurl"
	case ".ts":
		return "video/mp2t"
	case ".m4s", ".mp4":
		return "video/mp4"
	case ".jpg", ".jpeg":
		return "image/jpeg"
	case ".png":
		return "image/png"
	case ".webp":
		return "image/webp"
	}
	return "application/octet-stream"
}
