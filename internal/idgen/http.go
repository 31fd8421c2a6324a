package idgen

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/httpx"
)

// MaxHTTPBatch is the largest n the HTTP handler serves in one request.
const MaxHTTPBatch = 1000

// Handler returns an http.Handler that issues IDs to other services:
//
//	GET ?shard=S&n=N  →  200 ["<id>", ...]   (decimal strings, increasing)
//
// shard is required (0..MaxShard); n is optional (1..MaxHTTPBatch, default
// 1). Bad input gets 400 with {"error": reason}, other methods 405, and a
// generator without a lease or with the clock too far behind 503 with
// Retry-After. The handler ignores the path, so mount it where it belongs,
// e.g. mux.Handle("GET /ids", g.Handler()).
func (g *Generator) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET")
			httpx.JSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method " + r.Method + " not allowed; use GET"})
			return
		}
		shard, n, err := parseIDsQuery(r)
		if err != nil {
			httpx.JSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		ids, err := g.NextN(shard, n)
		if err != nil {
			status := errs.HTTPStatus(err)
			if status == http.StatusServiceUnavailable {
				w.Header().Set("Retry-After", "1")
			}
			msg := err.Error()
			if status >= 500 && status != http.StatusServiceUnavailable {
				msg = "internal error"
			}
			httpx.JSON(w, status, map[string]string{"error": msg})
			return
		}
		out := make([]string, len(ids))
		for i, id := range ids {
			out[i] = strconv.FormatInt(id, 10)
		}
		httpx.JSON(w, http.StatusOK, out)
	})
}

// parseIDsQuery reads shard and n, refusing unknown, repeated or malformed
// parameters with a reason.
func parseIDsQuery(r *http.Request) (shard, n int, err error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return 0, 0, fmt.Errorf("malformed query: %w", err)
	}
	for k, vs := range q {
		if k != "shard" && k != "n" {
			return 0, 0, fmt.Errorf("unknown parameter %q (want shard and n)", k)
		}
		if len(vs) > 1 {
			return 0, 0, fmt.Errorf("parameter %q given %d times", k, len(vs))
		}
	}
	if _, ok := q["shard"]; !ok {
		return 0, 0, fmt.Errorf("missing parameter shard (0..%d)", MaxShard)
	}
	if shard, err = smallInt(q["shard"][0], 0, MaxShard); err != nil {
		return 0, 0, fmt.Errorf("shard: %w", err)
	}
	n = 1
	if vs, ok := q["n"]; ok {
		if n, err = smallInt(vs[0], 1, MaxHTTPBatch); err != nil {
			return 0, 0, fmt.Errorf("n: %w", err)
		}
	}
	return shard, n, nil
}

// smallInt parses a plain decimal integer (digits only, no sign, no leading
// zero) in lo..hi.
func smallInt(s string, lo, hi int) (int, error) {
	plain := s != "" && len(s) <= 9 && (len(s) == 1 || s[0] != '0')
	for i := 0; plain && i < len(s); i++ {
		plain = '0' <= s[i] && s[i] <= '9'
	}
	if !plain {
		return 0, fmt.Errorf("%q is not a plain integer in %d..%d", s, lo, hi)
	}
	v, _ := strconv.Atoi(s)
	if v < lo || v > hi {
		return 0, fmt.Errorf("%d out of range %d..%d", v, lo, hi)
	}
	return v, nil
}
