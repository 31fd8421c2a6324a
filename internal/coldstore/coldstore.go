// Package coldstore moves the objects of media nobody watches to cold
// storage, and keeps them served (blueprint section 6, hot/cold).
//
// An item is idle when it has not been viewed for IdleAfter (its
// last_viewed_at, set by the view counter's flush, or its ready time). The
// Mover copies each of its objects from key to ColdPrefix+key, verifies
// every copy byte for byte (SHA-256 of both), records the item as cold,
// and only then deletes the hot copies. The origin serves a key from the
// cold prefix when the hot copy is gone (origin.Handler with a fallback),
// so an item is served at every step of a move.
//
// A move survives being killed at any step: the item is marked "moving"
// before the first copy; a later run resumes every "moving" item first,
// re-verifies existing cold copies (copying again what does not match),
// deletes a hot copy only after every object of the item has a verified
// cold copy, and marks the item "cold" last.
// Running it twice does nothing twice. It runs under the maintenance
// leader's lock, one process at a time.
package coldstore

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/blueprint-media/blueprint/internal/blob"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// ColdPrefix is where cold objects live in the object store.
const ColdPrefix = blob.ColdPrefix

// Config configures a Mover.
type Config struct {
	IdleAfter time.Duration // default 30 days
	Batch     int           // items per run (default 20)
}

// Mover moves idle media to cold storage.
type Mover struct {
	db     *sqlstore.DB
	blobs  blob.Store
	cfg    Config
	logger *slog.Logger
	now    func() time.Time

	// crashAt, when set (tests), fails the move at the named step as a
	// crash would.
	crashAt func(step string) error

	moved  prometheus.Counter
	copied prometheus.Counter
}

// New returns a Mover; reg may be nil.
func New(db *sqlstore.DB, blobs blob.Store, cfg Config, logger *slog.Logger, reg prometheus.Registerer) *Mover {
	if cfg.IdleAfter <= 0 {
		cfg.IdleAfter = 30 * 24 * time.Hour
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 20
	}
	m := &Mover{db: db, blobs: blobs, cfg: cfg, logger: logger, now: time.Now,
		moved: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "coldstore", Name: "items_moved_total", Help: "Media items moved to cold storage.",
		}),
		copied: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "coldstore", Name: "bytes_copied_total", Help: "Bytes copied to cold storage and verified.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.moved, m.copied)
	}
	return m
}

func (m *Mover) step(name string) error {
	if m.crashAt != nil {
		return m.crashAt(name)
	}
	return nil
}

// RunOnce resumes interrupted moves, then moves up to Batch idle items.
// It returns how many items it finished.
func (m *Mover) RunOnce(ctx context.Context) (int, error) {
	cutoff := m.now().Add(-m.cfg.IdleAfter).Unix()
	rows, err := m.db.R.QueryContext(ctx, `SELECT id FROM videos WHERE storage = 'moving'
		UNION ALL
		SELECT id FROM (SELECT id FROM videos WHERE status = 'ready' AND storage = 'hot'
			AND COALESCE(last_viewed_at, ready_at, created_at) < ? ORDER BY id LIMIT ?) AS idle`, cutoff, m.cfg.Batch)
	if err != nil {
		return 0, fmt.Errorf("coldstore: select: %w", err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	done := 0
	for _, id := range ids {
		if err := m.move(ctx, id); err != nil {
			return done, fmt.Errorf("coldstore: video %d: %w", id, err)
		}
		done++
	}
	return done, nil
}

func (m *Mover) setStorage(ctx context.Context, id int64, from, to string) error {
	_, err := m.db.W.ExecContext(ctx, `UPDATE videos SET storage = ? WHERE id = ? AND storage IN (?, ?)`, to, id, from, to)
	return err
}

func (m *Mover) move(ctx context.Context, id int64) error {
	prefix := "videos/" + strconv.FormatInt(id, 10) + "/"
	step := func(name string) error { return m.step(prefix + " " + name) }
	if err := m.setStorage(ctx, id, "hot", "moving"); err != nil {
		return err
	}
	if err := step("marked"); err != nil {
		return err
	}
	// Objects already moved by an interrupted run are no longer listed;
	// their verified cold copies exist.
	hot, err := m.blobs.List(ctx, prefix)
	if err != nil {
		return err
	}
	for _, o := range hot {
		if err := m.copyVerified(ctx, o.Key, ColdPrefix+o.Key); err != nil {
			return err
		}
		if err := step("copied " + o.Key); err != nil {
			return err
		}
	}
	// Every object has a verified cold copy: the hot ones may go.
	for _, o := range hot {
		if err := m.blobs.Delete(ctx, o.Key); err != nil {
			return err
		}
		if err := step("deleted " + o.Key); err != nil {
			return err
		}
	}
	if err := m.setStorage(ctx, id, "moving", "cold"); err != nil {
		return err
	}
	m.moved.Inc()
	m.logger.Info("moved an idle item to cold storage", "video", id, "objects", len(hot))
	return nil
}

// copyVerified makes dst a verified copy of src; an existing dst that
// matches is kept.
func (m *Mover) copyVerified(ctx context.Context, src, dst string) error {
	want, size, err := m.digest(ctx, src)
	if err != nil {
		return err
	}
	if got, _, err := m.digest(ctx, dst); err == nil && got == want {
		return nil // copied by an earlier, interrupted run
	}
	o, err := m.blobs.Open(ctx, src)
	if err != nil {
		return err
	}
	_, err = m.blobs.Put(ctx, dst, o)
	o.Close()
	if err != nil {
		return err
	}
	got, _, err := m.digest(ctx, dst)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("copy of %s does not match: %x vs %x", src, got, want)
	}
	m.copied.Add(float64(size))
	return nil
}

func (m *Mover) digest(ctx context.Context, key string) ([32]byte, int64, error) {
	o, err := m.blobs.Open(ctx, key)
	if err != nil {
		return [32]byte{}, 0, err
	}
	defer o.Close()
	h := sha256.New()
	n, err := io.Copy(h, o)
	if err != nil {
		return [32]byte{}, 0, err
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, n, nil
}
