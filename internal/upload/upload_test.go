package upload

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/blueprint-media/blueprint/client"
	"github.com/blueprint-media/blueprint/internal/account"
	"github.com/blueprint-media/blueprint/internal/blob"
	"github.com/blueprint-media/blueprint/internal/idgen/idgentest"
	"github.com/blueprint-media/blueprint/internal/media"
	"github.com/blueprint-media/blueprint/internal/queue"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// flakyBlobs fails Put while down is set, like an object store outage.
type flakyBlobs struct {
	blob.Store
	down atomic.Bool
}

func (f *flakyBlobs) Put(ctx context.Context, key string, r io.Reader) (blob.Info, error) {
	if f.down.Load() {
		return blob.Info{}, errors.New("object store unavailable")
	}
	return f.Store.Put(ctx, key, r)
}

type fixture struct {
	svc   *Service
	db    *sqlstore.DB
	blobs *flakyBlobs
	srv   *httptest.Server
	user  account.Identity
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := sqlstore.Open(ctx, filepath.Join(dir, "bp.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	disk, err := blob.NewDisk(filepath.Join(dir, "objects"))
	if err != nil {
		t.Fatal(err)
	}
	broker := queue.NewBroker(queue.BrokerConfig{StoreDir: filepath.Join(dir, "broker")}, logger)
	if err := broker.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Stop(ctx) })
	q, err := queue.Connect(ctx, "", broker, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	ids := idgentest.New(t)
	accounts := account.New(db, ids, account.Config{SessionTTL: 3600e9, MinPasswordLength: 8})
	u, err := accounts.SignUp(ctx, "ulla", "ulla@example.com", "password1")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{db: db, blobs: &flakyBlobs{Store: disk}, user: account.Identity{UserID: u.ID, Username: u.Username}}
	m := media.New(db, q, "http://edge.test/media/", logger)
	f.svc, err = New(Config{Dir: filepath.Join(dir, "uploads"), MaxBytes: 1 << 20}, db, f.blobs, m, ids, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := f.svc.Handler()
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(BasePath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := account.Identity{}
		if r.Header.Get("X-Test-User") == "1" {
			id = f.user
		}
		h.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
	}))
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) tus(t *testing.T, method, path string, body []byte, hdr map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, bytes.NewReader(body))
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("X-Test-User", "1")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func (f *fixture) create(t *testing.T, size int, meta map[string]string) string {
	t.Helper()
	resp := f.tus(t, "POST", BasePath, nil, map[string]string{"Upload-Length": strconv.Itoa(size), "Upload-Metadata": client.EncodeMetadata(meta)})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d", resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	return loc[strings.LastIndex(loc, "/")+1:]
}

// TestInterruptedFinishIsReconciled: the last PATCH arrives while object
// storage is down; the client is told, and the reconciler finishes the
// upload once storage is back — one media item, one source object.
func TestInterruptedFinishIsReconciled(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	data := bytes.Repeat([]byte("blueprint"), 10000)
	id := f.create(t, len(data), map[string]string{"filename": "clip.mp4", "title": "T"})
	f.blobs.down.Store(true)
	resp := f.tus(t, "PATCH", BasePath+id, data, map[string]string{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("final PATCH during the outage: %d, want 503", resp.StatusCode)
	}
	up, err := f.svc.Get(ctx, id, f.user.UserID)
	if err != nil || up.State != "uploading" || up.Offset != int64(len(data)) {
		t.Fatalf("after the failed finish: %+v %v", up, err)
	}
	if n, err := f.svc.Reconcile(ctx); err == nil || n != 0 {
		t.Fatalf("reconcile during the outage: n=%d err=%v", n, err)
	}
	f.blobs.down.Store(false)
	if n, err := f.svc.Reconcile(ctx); err != nil || n != 1 {
		t.Fatalf("reconcile after the outage: n=%d err=%v", n, err)
	}
	if n, err := f.svc.Reconcile(ctx); err != nil || n != 0 {
		t.Fatalf("second reconcile: n=%d err=%v", n, err)
	}
	up, _ = f.svc.Get(ctx, id, f.user.UserID)
	if up.State != "finished" {
		t.Fatalf("state %q", up.State)
	}
	var videos, uploadedEvents int
	f.db.R.QueryRow(`SELECT COUNT(*) FROM videos WHERE id = ?`, up.VideoID).Scan(&videos)
	f.db.R.QueryRow(`SELECT COUNT(*) FROM events WHERE subject_id = ? AND kind = 'video.uploaded'`, up.VideoID).Scan(&uploadedEvents)
	if videos != 1 || uploadedEvents != 1 {
		t.Fatalf("videos %d, uploaded events %d; want 1 and 1", videos, uploadedEvents)
	}
	o, err := f.blobs.Open(ctx, "sources/"+strconv.FormatInt(up.VideoID, 10))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(o)
	o.Close()
	if !bytes.Equal(got, data) {
		t.Fatal("source object differs from the upload")
	}
}

func TestMetadataRules(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name string
		meta map[string]string
		size int
		want int
	}{
		{"ok", map[string]string{"filename": "a.mp4"}, 10, http.StatusCreated},
		{"path stripped", map[string]string{"filename": "../../etc/passwd"}, 10, http.StatusCreated},
		{"tus-js name key", map[string]string{"name": "b.mp4"}, 10, http.StatusCreated},
		{"no filename", map[string]string{"title": "x"}, 10, http.StatusBadRequest},
		{"title too long", map[string]string{"filename": "a.mp4", "title": strings.Repeat("t", MaxTitle+1)}, 10, http.StatusBadRequest},
		{"empty", map[string]string{"filename": "a.mp4"}, 0, http.StatusBadRequest},
		{"too big", map[string]string{"filename": "a.mp4"}, 2 << 20, http.StatusRequestEntityTooLarge},
	}
	for _, c := range cases {
		resp := f.tus(t, "POST", BasePath, nil, map[string]string{"Upload-Length": strconv.Itoa(c.size), "Upload-Metadata": client.EncodeMetadata(c.meta)})
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d, want %d", c.name, resp.StatusCode, c.want)
		}
	}
	var fn string
	f.db.R.QueryRow(`SELECT filename FROM uploads WHERE filename LIKE '%passwd'`).Scan(&fn)
	if fn != "passwd" {
		t.Errorf("stored filename %q, want the base name only", fn)
	}
	// Anonymous requests are refused before tusd sees them.
	req, _ := http.NewRequest("POST", f.srv.URL+BasePath, nil)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Length", "10")
	resp, _ := http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous create: %d", resp.StatusCode)
	}
}
