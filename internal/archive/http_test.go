package archive

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"
)

// TestAdminRoutes: the operator's endpoints answer from both tiers as the
// Reader does, list the manifest, and refuse bad parameters with 400.
func TestAdminRoutes(t *testing.T) {
	f := setup(t)
	f.runToEnd(t)
	r := NewReader(f.db, f.blobs)
	mux := http.NewServeMux()
	r.AdminRoutes(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(path string, v any) int {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if v != nil && resp.StatusCode == 200 {
			if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode
	}
	var st struct{ Partitions []PartitionStatus }
	if code := get("/archive", &st); code != 200 || len(st.Partitions) != 10 || st.Partitions[0].State != StateArchived || st.Partitions[0].Rows == 0 {
		t.Fatalf("GET /archive: %d %+v", code, st)
	}
	var evs struct{ Events []Event }
	from, to := base.Add(-43*day), base.Add(time.Hour)
	if code := get("/archive/events?subject=2&from="+from.Format(time.RFC3339)+"&to="+to.Format(time.RFC3339), &evs); code != 200 {
		t.Fatalf("GET /archive/events: %d", code)
	}
	want, err := r.Events(context.Background(), 2, from, to)
	if err != nil || len(want) == 0 || !reflect.DeepEqual(want, evs.Events) {
		t.Fatalf("events over HTTP differ from the reader's: %d vs %d, %v", len(evs.Events), len(want), err)
	}
	var page struct {
		Notifications []Notification
		Next          string
	}
	if code := get("/archive/notifications?user=1&limit=5", &page); code != 200 || len(page.Notifications) != 5 || page.Next == "0" {
		t.Fatalf("GET /archive/notifications: %d %+v", code, page)
	}
	for _, bad := range []string{
		"/archive/events?subject=x", "/archive/events?subject=1&from=yesterday",
		"/archive/notifications?user=", "/archive/notifications?user=1&limit=0", "/archive/notifications?user=1&before=-3",
	} {
		if code := get(bad, nil); code != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400", bad, code)
		}
	}
}
