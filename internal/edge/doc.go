// Package edge is Blueprint's CDN edge cache: an HTTP caching reverse proxy
// that sits in front of the object-storage origin and serves HLS playlists,
// segments and thumbnails to players.
//
// An Edge answers GET and HEAD. The cache key is the request path plus the
// raw query. A fresh stored object is served without contacting the origin;
// otherwise the Edge fetches the whole object from the origin with a plain
// GET (never a Range), stores it if HTTP caching rules allow (RFC 9111, for
// a shared cache), and answers from the stored copy. Serving a stored copy
// goes through http.ServeContent, so Range requests (206, multipart, 416)
// and conditional requests (304) work against the stored ETag and
// Last-Modified.
//
// Freshness follows the origin's Cache-Control: s-maxage, then max-age, then
// Expires, then a heuristic of 10% of the time since Last-Modified (at most a
// day); Age and Date from the origin count. Responses marked no-store or
// private, responses that vary on anything but Accept-Encoding, and statuses
// other than 200 are not stored, except that a 404 with explicit freshness
// is kept for at most five seconds. A stored response that is stale, or marked
// no-cache, is revalidated with If-None-Match and If-Modified-Since before it
// is used again: a 304 refreshes the stored headers and freshness, a 200
// replaces the object. Request Cache-Control directives are ignored, so a
// browser reload cannot push load through to the origin.
//
// Consistency: concurrent requests for a key that needs the origin are
// collapsed into one origin request, the fill. Its result is stored before
// the waiters are released, so a key is fetched once per expiry however many
// clients ask. A waiter whose client goes away stops waiting; the fill goes
// on. A fill is not bound to any one client: it runs until it completes or
// Config.OriginTimeout passes. Every version of an object lives in its own
// file, so a reader never sees a body that does not match the headers it
// was served with. Responses that cannot be stored are relayed as they
// stream, never buffered whole; their collapsed waiters each fetch their own
// copy, except for small non-200 responses, which are shared.
//
// Storage has two tiers, each bounded in bytes and evicted least recently
// used first: every stored object lives in a file in Config.CacheDir, and
// objects up to Config.MemoryObjectBytes are also kept in memory. Evicting
// from memory keeps the object on disk; evicting from disk deletes it. A
// disk hit on a small object promotes it back to memory. Objects larger than
// Config.MaxObjectBytes are relayed without being stored.
//
// Every response carries a Cache-Status field (RFC 9211) and CORS headers so
// that a browser player on another origin can read it.
//
// Failure modes: when the origin cannot be reached, times out, breaks off a
// body, or answers 5xx, a stale copy is served if there is one and its
// directives allow it (stale-if-error bounds how stale; must-revalidate,
// proxy-revalidate, s-maxage and no-cache forbid it, as RFC 9111 requires of
// a shared cache); otherwise the client gets 502 (unreachable) or the
// origin's own 5xx. Failed fills are never stored. If CacheDir cannot take a
// new file, responses are relayed without being stored; a write error in the
// middle of a fill fails that fill. Every failure is logged. The cache does
// not survive a restart: Start deletes what a previous run left in CacheDir.
//
// Life cycle: New validates the configuration and starts nothing; Start
// prepares the cache directory; Stop waits for fills in progress.
package edge
