// Package upload receives resumable uploads over tus 1.0, with tusd v2 as a
// library (creation, creation-with-upload, termination; concatenation is
// turned off). Every frontend server instance gets its own tusd handler over
// one shared file store and file locker, so the PATCHes of one upload may
// land on different instances.
//
// The upload ID is the ID of the media item the upload becomes, allocated
// at creation. When the last byte arrives, Finish copies the file into
// object storage, creates the media item and enqueues its processing job;
// it is idempotent, so a retried final PATCH does nothing twice.
package upload

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tus/tusd/v2/pkg/filelocker"
	"github.com/tus/tusd/v2/pkg/filestore"
	tushandler "github.com/tus/tusd/v2/pkg/handler"
	expslog "golang.org/x/exp/slog"

	"github.com/blueprint-media/blueprint/internal/account"
	"github.com/blueprint-media/blueprint/internal/blob"
	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/idgen"
	"github.com/blueprint-media/blueprint/internal/media"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// BasePath is where the tus endpoint lives.
const BasePath = "/api/v1/uploads/"

// Limits on client-supplied metadata.
const (
	MaxTitle       = 200
	MaxDescription = 5000
	MaxFilename    = 255
)

// Config configures the service.
type Config struct {
	Dir      string // tus file store directory, shared by all frontend instances of a machine
	MaxBytes int64  // largest upload
}

// Upload is the state of one upload as the API shows it.
type Upload struct {
	ID       string    `json:"id"`
	VideoID  int64     `json:"video_id,string"`
	Filename string    `json:"filename"`
	Title    string    `json:"title"`
	Size     int64     `json:"size"`
	Offset   int64     `json:"offset"`
	State    string    `json:"state"` // uploading | finished
	Created  time.Time `json:"created_at"`
}

// Service implements uploads.
type Service struct {
	cfg    Config
	db     *sqlstore.DB
	blobs  blob.Store
	media  *media.Service
	ids    *idgen.Generator
	store  filestore.FileStore
	locker filelocker.FileLocker
	logger *slog.Logger

	finished prometheus.Counter
	bytes    prometheus.Counter
}

// New returns a Service; reg may be nil.
func New(cfg Config, db *sqlstore.DB, blobs blob.Store, m *media.Service, ids *idgen.Generator, logger *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	s := &Service{
		cfg: cfg, db: db, blobs: blobs, media: m, ids: ids, logger: logger,
		store:  filestore.New(cfg.Dir),
		locker: filelocker.New(cfg.Dir),
		finished: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "upload", Name: "finished_total", Help: "Uploads received completely.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "upload", Name: "finished_bytes_total", Help: "Bytes of uploads received completely.",
		}),
	}
	if reg != nil {
		reg.MustRegister(s.finished, s.bytes)
	}
	return s, nil
}

type ctxKey struct{}

// WithIdentity returns a context carrying the caller's identity; the
// frontend sets it before the tus handler runs.
func WithIdentity(ctx context.Context, id account.Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

func identity(ctx context.Context) account.Identity {
	id, _ := ctx.Value(ctxKey{}).(account.Identity)
	return id
}

// Handler returns a new tus handler for one frontend instance. Requests
// must carry the caller's identity in their context (WithIdentity).
func (s *Service) Handler() (http.Handler, error) {
	composer := tushandler.NewStoreComposer()
	s.store.UseIn(composer)
	s.locker.UseIn(composer)
	h, err := tushandler.NewHandler(tushandler.Config{
		BasePath:                  BasePath,
		StoreComposer:             composer,
		MaxSize:                   s.cfg.MaxBytes,
		RespectForwardedHeaders:   true,
		DisableDownload:           true,
		DisableConcatenation:      true,
		PreUploadCreateCallback:   s.preCreate,
		PreFinishResponseCallback: s.preFinish,
		// tusd logs through golang.org/x/exp/slog; only its warnings and
		// errors are worth a line next to the access log.
		Logger: expslog.New(expslog.NewJSONHandler(os.Stderr, &expslog.HandlerOptions{Level: expslog.LevelWarn})).With("component", "tusd"),
		Cors:   &tushandler.CorsConfig{Disable: true},
	})
	if err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	return s.authorize(http.StripPrefix(BasePath, h)), nil
}

// authorize lets only the creator of an upload touch it.
func (s *Service) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := identity(r.Context())
		if id.UserID == 0 {
			tusError(w, http.StatusUnauthorized, "log in to upload")
			return
		}
		if r.Method != http.MethodPost && r.Method != http.MethodOptions {
			uploadID := strings.TrimPrefix(r.URL.Path, BasePath)
			var owner int64
			err := s.db.R.QueryRowContext(r.Context(), `SELECT user_id FROM uploads WHERE id = ?`, uploadID).Scan(&owner)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				tusError(w, http.StatusServiceUnavailable, "upload store unavailable, try again")
				return
			}
			if err != nil || owner != id.UserID {
				tusError(w, http.StatusNotFound, "no such upload")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func tusError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Tus-Resumable", "1.0.0")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}

func reject(status int, code, msg string) (tushandler.HTTPResponse, tushandler.FileInfoChanges, error) {
	return tushandler.HTTPResponse{}, tushandler.FileInfoChanges{}, tushandler.NewError(code, msg, status)
}

func (s *Service) preCreate(ev tushandler.HookEvent) (tushandler.HTTPResponse, tushandler.FileInfoChanges, error) {
	id := identity(ev.Context)
	if id.UserID == 0 {
		return reject(http.StatusUnauthorized, "ERR_UNAUTHORIZED", "log in to upload")
	}
	up := ev.Upload
	switch {
	case up.SizeIsDeferred:
		return reject(http.StatusBadRequest, "ERR_LENGTH_REQUIRED", "Upload-Length is required")
	case up.Size == 0:
		return reject(http.StatusBadRequest, "ERR_EMPTY_UPLOAD", "the file is empty")
	case up.IsPartial || up.IsFinal:
		return reject(http.StatusBadRequest, "ERR_CONCATENATION", "concatenation is not supported")
	}
	filename := strings.TrimSpace(up.MetaData["filename"])
	if filename == "" {
		filename = strings.TrimSpace(up.MetaData["name"]) // tus-js-client/Uppy spelling
	}
	filename = path.Base(strings.ReplaceAll(filename, `\`, "/"))
	if filename == "" || filename == "." || filename == "/" {
		return reject(http.StatusBadRequest, "ERR_METADATA", "Upload-Metadata must include filename")
	}
	title := strings.TrimSpace(up.MetaData["title"])
	if title == "" {
		title = strings.TrimSuffix(filename, filepath.Ext(filename))
	}
	desc := strings.TrimSpace(up.MetaData["description"])
	for _, f := range []struct {
		name, v string
		max     int
	}{{"filename", filename, MaxFilename}, {"title", title, MaxTitle}, {"description", desc, MaxDescription}} {
		if !utf8.ValidString(f.v) || utf8.RuneCountInString(f.v) > f.max {
			return reject(http.StatusBadRequest, "ERR_METADATA", fmt.Sprintf("%s must be valid UTF-8 of at most %d characters", f.name, f.max))
		}
	}
	videoID, err := s.ids.Next(idgen.Shard(id.UserID))
	if err != nil {
		return reject(http.StatusServiceUnavailable, "ERR_ID", "try again")
	}
	uploadID := strconv.FormatInt(videoID, 10)
	_, err = s.db.W.ExecContext(ev.Context, `INSERT INTO uploads(id, user_id, video_id, filename, title, description, size, state, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, 'uploading', ?)`, uploadID, id.UserID, videoID, filename, title, desc, up.Size, time.Now().Unix())
	if err != nil {
		s.logger.Error("upload: record upload", "err", err)
		return reject(http.StatusServiceUnavailable, "ERR_STORE", "upload store unavailable, try again")
	}
	meta := tushandler.MetaData{"filename": filename, "title": title, "description": desc}
	return tushandler.HTTPResponse{}, tushandler.FileInfoChanges{ID: uploadID, MetaData: meta}, nil
}

func (s *Service) preFinish(ev tushandler.HookEvent) (tushandler.HTTPResponse, error) {
	if err := s.Finish(ev.Context, ev.Upload.ID); err != nil {
		s.logger.Error("upload: finish", "upload", ev.Upload.ID, "err", err)
		return tushandler.HTTPResponse{}, tushandler.NewError("ERR_FINISH", "the upload arrived complete; it will be processed as soon as storage recovers", http.StatusServiceUnavailable)
	}
	return tushandler.HTTPResponse{}, nil
}

// Finish turns a completely received upload into a media item: it copies
// the file into object storage, creates the item and enqueues processing.
// Calling it again for the same upload repeats nothing that succeeded.
func (s *Service) Finish(ctx context.Context, uploadID string) error {
	var u struct {
		userID, videoID, size int64
		title, desc, state    string
	}
	err := s.db.R.QueryRowContext(ctx, `SELECT user_id, video_id, size, title, description, state FROM uploads WHERE id = ?`, uploadID).
		Scan(&u.userID, &u.videoID, &u.size, &u.title, &u.desc, &u.state)
	if err != nil {
		return fmt.Errorf("upload: finish %s: %w", uploadID, err)
	}
	key := "sources/" + strconv.FormatInt(u.videoID, 10)
	if info, err := s.blobs.Stat(ctx, key); err != nil || info.Size != u.size {
		up, err := s.store.GetUpload(ctx, uploadID)
		if err != nil {
			return fmt.Errorf("upload: finish %s: %w", uploadID, err)
		}
		rd, err := up.GetReader(ctx)
		if err != nil {
			return fmt.Errorf("upload: finish %s: %w", uploadID, err)
		}
		_, err = s.blobs.Put(ctx, key, rd)
		rd.Close()
		if err != nil {
			return fmt.Errorf("upload: finish %s: %w", uploadID, err)
		}
	}
	var newlyFinished bool
	err = s.media.Create(ctx, media.NewItem{ID: u.videoID, UserID: u.userID, Title: u.title, Description: u.desc, SourceKey: key, SourceSize: u.size},
		func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, `UPDATE uploads SET state = 'finished', finished_at = ? WHERE id = ? AND state = 'uploading'`, time.Now().Unix(), uploadID)
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			newlyFinished = n == 1
			return nil
		})
	if err != nil {
		return fmt.Errorf("upload: finish %s: %w", uploadID, err)
	}
	if newlyFinished {
		s.finished.Inc()
		s.bytes.Add(float64(u.size))
	}
	return nil
}

// Get returns an upload owned by userID.
func (s *Service) Get(ctx context.Context, uploadID string, userID int64) (Upload, error) {
	var u Upload
	var owner, created int64
	err := s.db.Read(ctx).QueryRowContext(ctx, `SELECT id, user_id, video_id, filename, title, size, state, created_at FROM uploads WHERE id = ?`, uploadID).
		Scan(&u.ID, &owner, &u.VideoID, &u.Filename, &u.Title, &u.Size, &u.State, &created)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && owner != userID) {
		return Upload{}, errs.E(errs.NotFound, "no such upload")
	}
	if err != nil {
		return Upload{}, fmt.Errorf("upload: get: %w", err)
	}
	u.Created = time.Unix(created, 0).UTC()
	u.Offset = u.Size
	if u.State != "finished" {
		u.Offset = 0
		if up, err := s.store.GetUpload(ctx, uploadID); err == nil {
			if info, err := up.GetInfo(ctx); err == nil {
				u.Offset = info.Offset
			}
		}
	}
	return u, nil
}

// Reconcile finishes uploads whose last byte arrived but whose Finish did
// not complete (storage was down, or the process stopped in between).
func (s *Service) Reconcile(ctx context.Context) (int, error) {
	// Only uploads touched in the last week: older unfinished ones are
	// abandoned and swept. Newest first, so a pile of abandoned rows can
	// never hide a fresh upload.
	rows, err := s.db.R.QueryContext(ctx, `SELECT id, size FROM uploads WHERE state = 'uploading' AND created_at >= ? ORDER BY created_at DESC LIMIT 500`,
		time.Now().Add(-7*24*time.Hour).Unix())
	if err != nil {
		return 0, fmt.Errorf("upload: reconcile: %w", err)
	}
	type pending struct {
		id   string
		size int64
	}
	var waiting []pending
	for rows.Next() {
		var p pending
		if err := rows.Scan(&p.id, &p.size); err != nil {
			rows.Close()
			return 0, fmt.Errorf("upload: reconcile: %w", err)
		}
		waiting = append(waiting, p)
	}
	rows.Close()
	n := 0
	var firstErr error
	for _, p := range waiting {
		up, err := s.store.GetUpload(ctx, p.id)
		if err != nil {
			continue // not created on disk yet, or swept
		}
		info, err := up.GetInfo(ctx)
		if err != nil || info.Offset != p.size {
			continue // still uploading
		}
		if err := s.Finish(ctx, p.id); err != nil {
			firstErr = cmp.Or(firstErr, err) // try the others too
			continue
		}
		n++
	}
	return n, firstErr
}

// Sweep deletes the tus files of uploads finished more than age ago (their
// bytes are in object storage by then) and of uploads abandoned for a week.
func (s *Service) Sweep(ctx context.Context, age time.Duration) (int, error) {
	now := time.Now()
	rows, err := s.db.R.QueryContext(ctx, `SELECT id FROM uploads WHERE (state = 'finished' AND finished_at < ?) OR (state = 'uploading' AND created_at < ?)`,
		now.Add(-age).Unix(), now.Add(-7*24*time.Hour).Unix())
	if err != nil {
		return 0, fmt.Errorf("upload: sweep: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		rows.Scan(&id)
		ids = append(ids, id)
	}
	rows.Close()
	n := 0
	for _, id := range ids {
		data := filepath.Join(s.cfg.Dir, id)
		if _, err := os.Stat(data); err != nil {
			continue
		}
		for _, p := range []string{data, data + ".info", data + ".lock"} {
			os.Remove(p)
		}
		n++
	}
	return n, nil
}
