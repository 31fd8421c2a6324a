package archive

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/blueprint-media/blueprint/internal/httpx"
)

// PartitionStatus is one row of the manifest.
type PartitionStatus struct {
	Table     string    `json:"table"`
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	State     string    `json:"state"`
	Key       string    `json:"key"`
	Rows      int64     `json:"rows"`
	Bytes     int64     `json:"bytes"`
	Checksum  string    `json:"checksum"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Status returns the newest limit partitions of the manifest, newest
// first.
func Status(ctx context.Context, r *Reader, limit int) ([]PartitionStatus, error) {
	rows, err := r.db.R.QueryContext(ctx, `SELECT table_name, start_at, end_at, state, object_key, row_count, bytes, checksum, updated_at
		FROM archive_partitions ORDER BY start_at DESC, table_name LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("archive: manifest: %w", err)
	}
	defer rows.Close()
	out := []PartitionStatus{}
	for rows.Next() {
		var p PartitionStatus
		var start, end, updated int64
		if err := rows.Scan(&p.Table, &start, &end, &p.State, &p.Key, &p.Rows, &p.Bytes, &p.Checksum, &updated); err != nil {
			return nil, err
		}
		p.Start, p.End, p.UpdatedAt = time.Unix(start, 0).UTC(), time.Unix(end, 0).UTC(), time.Unix(updated, 0).UTC()
		out = append(out, p)
	}
	return out, rows.Err()
}

// AdminRoutes mounts the operator's view on the admin mux:
//
//	GET /archive                                   the manifest (JSON)
//	GET /archive/events?subject=ID&from=T&to=T     events of a subject, both tiers
//	GET /archive/notifications?user=ID&before=ID&limit=N
//	                                               a page of a user's inbox, both tiers
//
// Times are RFC 3339 or Unix seconds; from defaults to the epoch, to to
// now.
func (r *Reader) AdminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /archive", func(w http.ResponseWriter, req *http.Request) {
		st, err := Status(req.Context(), r, 500)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		httpx.JSON(w, http.StatusOK, map[string]any{"partitions": st})
	})
	mux.HandleFunc("GET /archive/events", func(w http.ResponseWriter, req *http.Request) {
		q := req.URL.Query()
		subject, err := strconv.ParseInt(q.Get("subject"), 10, 64)
		if err != nil {
			http.Error(w, "subject: want an integer ID", http.StatusBadRequest)
			return
		}
		from, err := parseTime(q.Get("from"), time.Unix(0, 0))
		if err != nil {
			http.Error(w, "from: "+err.Error(), http.StatusBadRequest)
			return
		}
		to, err := parseTime(q.Get("to"), time.Now().Add(time.Second))
		if err != nil {
			http.Error(w, "to: "+err.Error(), http.StatusBadRequest)
			return
		}
		evs, err := r.Events(req.Context(), subject, from, to)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		httpx.JSON(w, http.StatusOK, map[string]any{"events": evs})
	})
	mux.HandleFunc("GET /archive/notifications", func(w http.ResponseWriter, req *http.Request) {
		q := req.URL.Query()
		user, err := strconv.ParseInt(q.Get("user"), 10, 64)
		if err != nil {
			http.Error(w, "user: want an integer ID", http.StatusBadRequest)
			return
		}
		var before int64
		if s := q.Get("before"); s != "" {
			if before, err = strconv.ParseInt(s, 10, 64); err != nil || before < 0 {
				http.Error(w, "before: want a notification ID", http.StatusBadRequest)
				return
			}
		}
		limit := 20
		if s := q.Get("limit"); s != "" {
			if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > 100 {
				http.Error(w, "limit: want 1..100", http.StatusBadRequest)
				return
			}
		}
		ns, next, err := r.Notifications(req.Context(), user, before, limit)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		httpx.JSON(w, http.StatusOK, map[string]any{"notifications": ns, "next": strconv.FormatInt(next, 10)})
	})
}

func parseTime(s string, def time.Time) (time.Time, error) {
	if s == "" {
		return def, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return t, fmt.Errorf("want RFC 3339 or Unix seconds")
	}
	return t, nil
}
