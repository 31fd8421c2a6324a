package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blueprint-media/blueprint/internal/blob"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// Reader answers queries over both tiers of a table: the rows still in the
// database and the files of archived partitions. Each query reads the hot
// rows first and the manifest after: the archiver deletes a partition's
// rows in the transaction that marks it archived, so a partition not yet
// archived when the manifest is read still had its rows in the table when
// they were read, and one archived in between is found in its file (a row
// seen in both is returned once, the database's version winning). Files of
// partitions exported but not archived are never read.
type Reader struct {
	db    *sqlstore.DB
	blobs blob.Store

	// groupsRead counts Parquet row groups read and bytesRead the bytes
	// read from files (tests check pruning).
	groupsRead, bytesRead atomic.Int64
}

// NewReader returns a Reader.
func NewReader(db *sqlstore.DB, blobs blob.Store) *Reader { return &Reader{db: db, blobs: blobs} }

// Event is one row of the events table.
type Event struct {
	ID          int64  `json:"id,string"`
	Kind        string `json:"kind"`
	SubjectID   int64  `json:"subject_id,string"`
	Payload     string `json:"payload"`
	CreatedAt   int64  `json:"created_at"`
	PublishedAt *int64 `json:"published_at,omitempty"`
}

func eventOf(r Row) Event {
	e := Event{ID: r[0].(int64), Kind: r[1].(string), SubjectID: r[2].(int64), Payload: r[3].(string), CreatedAt: r[4].(int64)}
	if v, ok := r[5].(int64); ok {
		e.PublishedAt = &v
	}
	return e
}

// Notification is one row of the notifications table.
type Notification struct {
	ID        int64  `json:"id,string"`
	UserID    int64  `json:"user_id,string"`
	Type      string `json:"type"`
	ActorID   int64  `json:"actor_id,string"`
	SubjectID int64  `json:"subject_id,string"`
	DedupKey  string `json:"dedup_key"`
	Body      string `json:"body"`
	InApp     bool   `json:"in_app"`
	CreatedAt int64  `json:"created_at"`
	ReadAt    *int64 `json:"read_at,omitempty"`
	// Archived is set when the row was read from the file of an archived
	// partition: its read state is frozen (see Reader.Notifications).
	Archived bool `json:"archived,omitempty"`
}

func notificationOf(r Row) Notification {
	n := Notification{ID: r[0].(int64), UserID: r[1].(int64), Type: r[2].(string), ActorID: r[3].(int64), SubjectID: r[4].(int64),
		DedupKey: r[5].(string), Body: r[6].(string), InApp: r[7].(int64) != 0, CreatedAt: r[8].(int64)}
	if v, ok := r[9].(int64); ok {
		n.ReadAt = &v
	}
	return n
}

// filePart is an archived partition as the manifest lists it.
type filePart struct {
	key          string
	start, end   int64
	minID, maxID int64
}

// files lists t's archived partitions overlapping the
// creation-time range [from, to), newest first.
func (r *Reader) files(ctx context.Context, t Table, from, to int64) ([]filePart, error) {
	rows, err := r.db.R.QueryContext(ctx, `SELECT object_key, start_at, end_at, min_id, max_id FROM archive_partitions
		WHERE table_name = ? AND state = ? AND end_at > ? AND start_at < ? ORDER BY start_at DESC`,
		t.Name, StateArchived, from, to)
	if err != nil {
		return nil, fmt.Errorf("archive: manifest: %w", err)
	}
	defer rows.Close()
	var out []filePart
	for rows.Next() {
		var f filePart
		if err := rows.Scan(&f.key, &f.start, &f.end, &f.minID, &f.maxID); err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// readCold calls fn with the rows of the file whose SortBy column equals
// eq. It reads the parts of the file it needs (footer, bloom filters, the
// row groups that may hold eq), by range.
func (r *Reader) readCold(ctx context.Context, t Table, f filePart, eq int64, fn func(Row) error) error {
	o, err := r.blobs.Open(ctx, f.key)
	if err != nil {
		return fmt.Errorf("archive: open %s: %w", f.key, err)
	}
	defer o.Close()
	ra := &countingReaderAt{r: readerAt(o), n: &r.bytesRead}
	n, err := readFileAt(ra, o.Info().Size, t, &eq, fn)
	r.groupsRead.Add(int64(n))
	if err != nil {
		return fmt.Errorf("archive: %s: %w", f.key, err)
	}
	return nil
}

// readerAt returns o as an io.ReaderAt: itself when it is one (a file of
// the disk store), else reads after seeks, one at a time.
func readerAt(o blob.Object) io.ReaderAt {
	if ra, ok := o.(io.ReaderAt); ok {
		return ra
	}
	return &seekReaderAt{o: o}
}

// seekReaderAt reads at an offset of an io.ReadSeeker.
type seekReaderAt struct {
	mu sync.Mutex
	o  io.ReadSeeker
}

func (s *seekReaderAt) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.o.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	n, err := io.ReadFull(s.o, p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF // io.ReaderAt's end of input
	}
	return n, err
}

// countingReaderAt adds the bytes read through it to n.
type countingReaderAt struct {
	r io.ReaderAt
	n *atomic.Int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

func (r *Reader) hot(ctx context.Context, t Table, where string, args []any, fn func(Row)) error {
	rows, err := r.db.R.QueryContext(ctx, `SELECT `+t.columnList()+` FROM `+t.Name+` WHERE `+where, args...)
	if err != nil {
		return fmt.Errorf("archive: read %s: %w", t.Name, err)
	}
	defer rows.Close()
	dest, row := t.scanner()
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("archive: read %s: %w", t.Name, err)
		}
		fn(row())
	}
	return rows.Err()
}

// Events returns the events of subject created in [from, to), oldest
// first (by ID), from both tiers.
func (r *Reader) Events(ctx context.Context, subject int64, from, to time.Time) ([]Event, error) {
	lo, hi := from.Unix(), to.Unix()
	byID := map[int64]Event{}
	if err := r.hot(ctx, Events, `subject_id = ? AND created_at >= ? AND created_at < ?`, []any{subject, lo, hi},
		func(row Row) { byID[row[0].(int64)] = eventOf(row) }); err != nil {
		return nil, err
	}
	files, err := r.files(ctx, Events, lo, hi)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if err := r.readCold(ctx, Events, f, subject, func(row Row) error {
			e := eventOf(row)
			if _, hot := byID[e.ID]; !hot && e.CreatedAt >= lo && e.CreatedAt < hi {
				byID[e.ID] = e
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	out := make([]Event, 0, len(byID))
	for _, e := range byID {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Event) int { return cmpInt(a.ID, b.ID) })
	return out, nil
}

// Notifications returns a page of user's in-app notifications, newest
// first (by ID, as notify.Service.List pages them): those with an ID below
// before (0: from the newest), at most limit, and the cursor of the next
// page (0 at the end). Notifications read from the file of an archived
// partition have Archived set and keep the read state they had when they
// were archived.
func (r *Reader) Notifications(ctx context.Context, user, before int64, limit int) ([]Notification, int64, error) {
	if limit <= 0 {
		limit = 20
	}
	if before <= 0 {
		before = 1<<63 - 1
	}
	byID := map[int64]Notification{}
	if err := r.hot(ctx, Notifications, `user_id = ? AND in_app = 1 AND id < ? ORDER BY id DESC LIMIT ?`, []any{user, before, limit + 1},
		func(row Row) { byID[row[0].(int64)] = notificationOf(row) }); err != nil {
		return nil, 0, err
	}
	files, err := r.files(ctx, Notifications, -1<<62, 1<<62)
	if err != nil {
		return nil, 0, err
	}
	// Newest files by ID first; stop once limit+1 candidates are newer
	// than anything a remaining file could hold.
	slices.SortFunc(files, func(a, b filePart) int { return cmpInt(b.maxID, a.maxID) })
	for _, f := range files {
		if f.minID >= before {
			continue
		}
		if len(byID) > limit && kthLargest(byID, limit+1) > f.maxID {
			break
		}
		if err := r.readCold(ctx, Notifications, f, user, func(row Row) error {
			n := notificationOf(row)
			n.Archived = true
			if _, hot := byID[n.ID]; !hot && n.InApp && n.ID < before {
				byID[n.ID] = n
			}
			return nil
		}); err != nil {
			return nil, 0, err
		}
	}
	out := make([]Notification, 0, len(byID))
	for _, n := range byID {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b Notification) int { return cmpInt(b.ID, a.ID) })
	var next int64
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].ID
	}
	return out, next, nil
}

// kthLargest returns the k-th largest ID of m (len(m) >= k).
func kthLargest(m map[int64]Notification, k int) int64 {
	ids := make([]int64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b int64) int { return cmpInt(b, a) })
	return ids[k-1]
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
