// Package archive tiers high-volume tables (blueprint section 6, hot/cold,
// the table half): rows are grouped into time partitions by their creation
// time; a closed partition older than Config.After is exported to a
// Parquet file in object storage at cold/tables/<table>/<date>.parquet,
// verified (row count and an order-independent checksum over a canonical
// encoding of the rows, compared with the database), recorded in the
// archive_partitions manifest, and only then deleted from the table.
// A Reader answers queries from both tiers with the same results as before
// the move.
//
// Partitions are logical — ranges of an indexed created_at column — so
// that the job works the same on SQLite and PostgreSQL (see README.md for
// how declarative partitions would slot in on PostgreSQL).
//
// The job survives being killed at any step: the manifest records each
// partition's state (exporting, exported, archived); a later run redoes an
// export that had not been verified and recorded, re-verifies a recorded
// file against the rows before deleting them, and deletes the rows in one
// transaction that checks the deleted rows against the verified file
// (DELETE … RETURNING), so rows that changed or arrived after the export
// are never lost. Runs are serialised by a lease in the database
// (archive_lease) on top of the maintenance leader's lock.
package archive

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/blueprint-media/blueprint/internal/blob"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// Prefix is where archived partitions live in the object store.
const Prefix = blob.ColdPrefix + "tables/"

// Partition states in archive_partitions.
const (
	StateExporting = "exporting"
	StateExported  = "exported"
	StateArchived  = "archived"
)

// ErrBusy is returned by RunOnce when another run holds the lease.
var ErrBusy = errors.New("archive: another run holds the lease")

// Config configures an Archiver.
type Config struct {
	After         time.Duration // a partition is archived once it ended this long ago (default 90 days)
	Partition     time.Duration // partition length: a divisor or multiple of 24h (default 24h)
	Tables        []Table       // default Events and Notifications
	MaxPartitions int           // partitions archived per run (default 30)
	LeaseTTL      time.Duration // how long a killed run keeps the lease (default 10m)
	RowGroupRows  int64         // rows per Parquet row group (default 8192)
	// Now is the clock the cutoff and the lease are computed from
	// (default time.Now; tests of other packages set it).
	Now func() time.Time
}

func (c *Config) defaults() error {
	if c.After <= 0 {
		c.After = 90 * 24 * time.Hour
	}
	if c.Partition <= 0 {
		c.Partition = 24 * time.Hour
	}
	day := 24 * time.Hour
	if c.Partition%time.Second != 0 || (day%c.Partition != 0 && c.Partition%day != 0) {
		return fmt.Errorf("archive: partition %s is neither a divisor nor a multiple of 24h", c.Partition)
	}
	if c.Tables == nil {
		c.Tables = []Table{Events, Notifications}
	}
	for _, t := range c.Tables {
		if err := t.validate(); err != nil {
			return err
		}
	}
	if c.MaxPartitions <= 0 {
		c.MaxPartitions = 30
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 10 * time.Minute
	}
	if c.RowGroupRows <= 0 {
		c.RowGroupRows = 8192
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Metrics are the archiver's counters.
type Metrics struct {
	Partitions *prometheus.CounterVec
	Rows       *prometheus.CounterVec
	Bytes      *prometheus.CounterVec
	Redone     *prometheus.CounterVec
}

// NewMetrics returns the archiver's metrics, registered on reg when it is
// not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Partitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "archive", Name: "partitions_total",
			Help: "Table partitions archived to Parquet in object storage and deleted from the table.",
		}, []string{"table"}),
		Rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "archive", Name: "rows_total",
			Help: "Rows archived to Parquet and deleted from their table.",
		}, []string{"table"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "archive", Name: "bytes_total",
			Help: "Bytes of verified Parquet files of archived partitions.",
		}, []string{"table"}),
		Redone: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "archive", Name: "exports_redone_total",
			Help: "Exports redone because a recorded file no longer matched its rows (rows changed or arrived, or the file is damaged).",
		}, []string{"table"}),
	}
	if reg != nil {
		reg.MustRegister(m.Partitions, m.Rows, m.Bytes, m.Redone)
	}
	return m
}

// Archiver moves closed partitions of tables to Parquet files.
type Archiver struct {
	db     *sqlstore.DB
	blobs  blob.Store
	cfg    Config
	logger *slog.Logger
	m      *Metrics
	holder string
	now    func() time.Time

	// crashAt, when set (tests), fails the run at the named step as a
	// crash would: the lease is then not released.
	crashAt func(step string) error
	crashed bool
}

// New returns an Archiver; m may be nil (metrics not exported).
func New(db *sqlstore.DB, blobs blob.Store, cfg Config, logger *slog.Logger, m *Metrics) (*Archiver, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	var id [8]byte
	rand.Read(id[:])
	return &Archiver{db: db, blobs: blobs, cfg: cfg, logger: logger, m: m, holder: hex.EncodeToString(id[:]), now: cfg.Now}, nil
}

// Result says what one run did.
type Result struct {
	Partitions int   // partitions archived (rows deleted)
	Rows       int64 // rows archived
	Bytes      int64 // bytes of the files of those partitions
	Skipped    int   // closed partitions left for later (rows not ready, or changed during the run)
}

func (a *Archiver) step(name string) error {
	if a.crashAt != nil {
		if err := a.crashAt(name); err != nil {
			a.crashed = true
			return err
		}
	}
	return nil
}

// partition is one time range of one table.
type partition struct {
	t          Table
	start, end int64
}

func (p partition) label() string {
	start := time.Unix(p.start, 0).UTC()
	if (p.end-p.start)%86400 == 0 {
		return start.Format("2006-01-02")
	}
	return start.Format("2006-01-02T1504")
}

// Key returns the object key of the partition's file.
func (p partition) Key() string { return Prefix + p.t.Name + "/" + p.label() + ".parquet" }

func (p partition) tmpKey() string { return Prefix + p.t.Name + "/" + p.label() + ".parquet.tmp" }

// RunOnce resumes interrupted partitions, then archives up to
// MaxPartitions closed partitions older than After. It returns ErrBusy
// when another run holds the lease.
func (a *Archiver) RunOnce(ctx context.Context) (Result, error) {
	var res Result
	a.crashed = false
	if err := a.acquire(ctx); err != nil {
		return res, err
	}
	defer func() {
		if !a.crashed {
			a.release(context.WithoutCancel(ctx))
		}
	}()
	width := int64(a.cfg.Partition / time.Second)
	cutoff := a.now().Add(-a.cfg.After).Unix()
	cutoff -= mod(cutoff, width) // partitions ending at or before this are closed

	// Interrupted partitions first.
	pending, err := a.pending(ctx)
	if err != nil {
		return res, err
	}
	type id struct {
		table string
		start int64
	}
	done := map[id]bool{}
	for _, p := range pending {
		done[id{p.t.Name, p.start}] = true
		if err := a.archive(ctx, p, &res); err != nil {
			return res, err
		}
	}
	for _, t := range a.cfg.Tables {
		if err := a.exists(ctx, t); err != nil {
			a.logger.Warn("archive: table skipped", "table", t.Name, "err", err)
			continue
		}
		from := int64(0)
		for res.Partitions+res.Skipped < a.cfg.MaxPartitions {
			var first sql.NullInt64
			if err := a.db.R.QueryRowContext(ctx, `SELECT MIN(`+t.Time+`) FROM `+t.Name+` WHERE `+t.Time+` >= ? AND `+t.Time+` < ?`,
				from, cutoff).Scan(&first); err != nil {
				return res, fmt.Errorf("archive: %s: %w", t.Name, err)
			}
			if !first.Valid {
				break
			}
			start := first.Int64 - mod(first.Int64, width)
			p := partition{t: t, start: start, end: start + width}
			from = p.end
			if done[id{t.Name, p.start}] {
				continue
			}
			if err := a.archive(ctx, p, &res); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

func (a *Archiver) exists(ctx context.Context, t Table) error {
	rows, err := a.db.R.QueryContext(ctx, `SELECT `+t.columnList()+` FROM `+t.Name+` WHERE 1 = 0`)
	if err != nil {
		return err
	}
	return rows.Close()
}

// acquire takes the lease, or returns ErrBusy.
func (a *Archiver) acquire(ctx context.Context) error {
	now := a.now().Unix()
	res, err := a.db.W.ExecContext(ctx, `UPDATE archive_lease SET holder = ?, expires_at = ? WHERE name = 'archive' AND (holder = ? OR holder = '' OR expires_at < ?)`,
		a.holder, now+int64(a.cfg.LeaseTTL/time.Second), a.holder, now)
	if err != nil {
		return fmt.Errorf("archive: lease: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrBusy
	}
	return nil
}

// renew extends the lease; it fails when the lease was lost.
func (a *Archiver) renew(ctx context.Context) error {
	if err := a.acquire(ctx); err != nil {
		return fmt.Errorf("archive: lease lost: %w", err)
	}
	return nil
}

func (a *Archiver) release(ctx context.Context) {
	if _, err := a.db.W.ExecContext(ctx, `UPDATE archive_lease SET holder = '', expires_at = 0 WHERE name = 'archive' AND holder = ?`, a.holder); err != nil {
		a.logger.Warn("archive: release lease", "err", err)
	}
}

// pending returns the partitions an interrupted run left exporting or
// exported.
func (a *Archiver) pending(ctx context.Context) ([]partition, error) {
	rows, err := a.db.R.QueryContext(ctx, `SELECT table_name, start_at, end_at FROM archive_partitions WHERE state IN (?, ?) ORDER BY table_name, start_at`,
		StateExporting, StateExported)
	if err != nil {
		return nil, fmt.Errorf("archive: manifest: %w", err)
	}
	defer rows.Close()
	var out []partition
	for rows.Next() {
		var name string
		var p partition
		if err := rows.Scan(&name, &p.start, &p.end); err != nil {
			return nil, err
		}
		for _, t := range a.cfg.Tables {
			if t.Name == name {
				p.t = t
				out = append(out, p)
			}
		}
	}
	return out, rows.Err()
}

// manifest is a partition's row in archive_partitions.
type manifest struct {
	state, key, checksum string
	rows, bytes          int64
}

func (a *Archiver) manifest(ctx context.Context, p partition) (manifest, bool, error) {
	var m manifest
	err := a.db.W.QueryRowContext(ctx, `SELECT state, object_key, checksum, row_count, bytes FROM archive_partitions WHERE table_name = ? AND start_at = ?`,
		p.t.Name, p.start).Scan(&m.state, &m.key, &m.checksum, &m.rows, &m.bytes)
	if errors.Is(err, sql.ErrNoRows) {
		return m, false, nil
	}
	if err != nil {
		return m, false, fmt.Errorf("archive: manifest: %w", err)
	}
	return m, true, nil
}

// archive takes one partition as far as it can: export, verify, record,
// delete. Errors that a later run may resolve (rows not ready, rows that
// changed during the run) skip the partition; other errors end the run.
func (a *Archiver) archive(ctx context.Context, p partition, res *Result) error {
	if err := a.renew(ctx); err != nil {
		return err
	}
	log := a.logger.With("table", p.t.Name, "partition", p.label())
	step := func(name string) error { return a.step(p.t.Name + "/" + p.label() + " " + name) }
	m, found, err := a.manifest(ctx, p)
	if err != nil {
		return err
	}
	if found && m.state == StateArchived {
		// Rows created inside an archived range after it was archived stay
		// hot (readers see both tiers); they are not merged into the file.
		log.Warn("archive: rows arrived in an archived partition; they stay in the table")
		res.Skipped++
		return nil
	}
	if p.t.Ready != "" {
		var notReady int64
		if err := a.db.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+p.t.Name+` WHERE `+p.t.Time+` >= ? AND `+p.t.Time+` < ? AND NOT (`+p.t.Ready+`)`,
			p.start, p.end).Scan(&notReady); err != nil {
			return fmt.Errorf("archive: %s: %w", p.t.Name, err)
		}
		if notReady > 0 {
			log.Info("archive: partition not ready; left for a later run", "rows", notReady, "condition", p.t.Ready)
			res.Skipped++
			return nil
		}
	}
	if found && m.state == StateExported {
		// A file was verified and recorded before the interruption: check
		// it again against the rows as they are now.
		d, err := a.dbDigest(ctx, p)
		if err != nil {
			return err
		}
		if ok, err := a.verify(ctx, p, p.Key(), d); err != nil {
			return err
		} else if !ok || d.Sum() != m.checksum || d.Rows != m.rows {
			log.Warn("archive: recorded file no longer matches the rows; exporting again")
			a.m.Redone.WithLabelValues(p.t.Name).Inc()
			found = false
		}
	}
	if !found || m.state == StateExporting {
		var ok bool
		if m, ok, err = a.export(ctx, p, step); err != nil || !ok {
			return err
		}
	}
	if err := a.blobs.Delete(ctx, p.tmpKey()); err != nil {
		return fmt.Errorf("archive: %s: %w", p.tmpKey(), err)
	}
	if err := step("tmp deleted"); err != nil {
		return err
	}
	// Delete the rows, checking in the same transaction that exactly the
	// verified rows go.
	var d Digest
	mismatch := false
	err = a.db.Tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `DELETE FROM `+p.t.Name+` WHERE `+p.t.Time+` >= ? AND `+p.t.Time+` < ? RETURNING `+p.t.columnList(),
			p.start, p.end)
		if err != nil {
			return err
		}
		dest, row := p.t.scanner()
		for rows.Next() {
			if err := rows.Scan(dest...); err != nil {
				rows.Close()
				return err
			}
			d.Add(p.t, row())
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if err := step("deleting"); err != nil { // rolled back
			return err
		}
		if d.Rows != m.rows || d.Sum() != m.checksum {
			mismatch = true
			return errMismatch
		}
		_, err = tx.ExecContext(ctx, `UPDATE archive_partitions SET state = ?, updated_at = ? WHERE table_name = ? AND start_at = ? AND state = ?`,
			StateArchived, a.now().Unix(), p.t.Name, p.start, StateExported)
		return err
	})
	if mismatch {
		// Rows changed or arrived after the export: nothing was deleted.
		// Export again on the next run.
		log.Warn("archive: rows changed after the export; nothing deleted, exporting again next run", "rows", d.Rows, "exported", m.rows)
		a.m.Redone.WithLabelValues(p.t.Name).Inc()
		if _, err := a.db.W.ExecContext(ctx, `UPDATE archive_partitions SET state = ?, updated_at = ? WHERE table_name = ? AND start_at = ?`,
			StateExporting, a.now().Unix(), p.t.Name, p.start); err != nil {
			return fmt.Errorf("archive: manifest: %w", err)
		}
		res.Skipped++
		return nil
	}
	if err != nil {
		return fmt.Errorf("archive: delete %s %s: %w", p.t.Name, p.label(), err)
	}
	if err := step("deleted"); err != nil {
		return err
	}
	a.m.Partitions.WithLabelValues(p.t.Name).Inc()
	a.m.Rows.WithLabelValues(p.t.Name).Add(float64(m.rows))
	a.m.Bytes.WithLabelValues(p.t.Name).Add(float64(m.bytes))
	res.Partitions++
	res.Rows += m.rows
	res.Bytes += m.bytes
	log.Info("archive: partition archived", "rows", m.rows, "bytes", m.bytes, "key", p.Key())
	return nil
}

var errMismatch = errors.New("archive: deleted rows do not match the verified file")

// export writes the partition's file: manifest exporting, file to the
// temporary key, verified, copied to the final key, verified, manifest
// exported. It reports false when the partition has no rows (any manifest
// row is then removed).
func (a *Archiver) export(ctx context.Context, p partition, step func(string) error) (manifest, bool, error) {
	m := manifest{state: StateExporting, key: p.Key()}
	now := a.now().Unix()
	if _, err := a.db.W.ExecContext(ctx, `INSERT INTO archive_partitions(table_name, start_at, end_at, state, object_key, updated_at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT(table_name, start_at) DO UPDATE SET state = excluded.state, row_count = 0, bytes = 0, checksum = '', updated_at = excluded.updated_at`,
		p.t.Name, p.start, p.end, StateExporting, p.Key(), now); err != nil {
		return m, false, fmt.Errorf("archive: manifest: %w", err)
	}
	if err := step("begun"); err != nil {
		return m, false, err
	}
	var buf bytes.Buffer
	fw := newFileWriter(&buf, p.t, a.cfg.RowGroupRows)
	if err := a.scan(ctx, p, fw.write); err != nil {
		return m, false, err
	}
	if err := fw.close(); err != nil {
		return m, false, err
	}
	d := fw.digest
	if d.Rows == 0 {
		_, err := a.db.W.ExecContext(ctx, `DELETE FROM archive_partitions WHERE table_name = ? AND start_at = ? AND state = ?`, p.t.Name, p.start, StateExporting)
		return m, false, err
	}
	data := buf.Bytes()
	for _, key := range []string{p.tmpKey(), p.Key()} {
		if _, err := a.blobs.Put(ctx, key, bytes.NewReader(data)); err != nil {
			return m, false, fmt.Errorf("archive: put %s: %w", key, err)
		}
		if err := step("uploaded " + key); err != nil {
			return m, false, err
		}
		ok, err := a.verify(ctx, p, key, d)
		if err != nil {
			return m, false, err
		}
		if !ok {
			return m, false, fmt.Errorf("archive: %s does not read back as written", key)
		}
		if err := step("verified " + key); err != nil {
			return m, false, err
		}
	}
	m = manifest{state: StateExported, key: p.Key(), checksum: d.Sum(), rows: d.Rows, bytes: int64(len(data))}
	if _, err := a.db.W.ExecContext(ctx, `UPDATE archive_partitions SET state = ?, row_count = ?, bytes = ?, checksum = ?, min_id = ?, max_id = ?, updated_at = ?
		WHERE table_name = ? AND start_at = ?`, StateExported, d.Rows, m.bytes, m.checksum, d.MinID, d.MaxID, a.now().Unix(), p.t.Name, p.start); err != nil {
		return m, false, fmt.Errorf("archive: manifest: %w", err)
	}
	if err := step("recorded"); err != nil {
		return m, false, err
	}
	return m, true, nil
}

// scan calls fn with each row of the partition, sorted by SortBy then key.
func (a *Archiver) scan(ctx context.Context, p partition, fn func(Row) error) error {
	rows, err := a.db.R.QueryContext(ctx, `SELECT `+p.t.columnList()+` FROM `+p.t.Name+` WHERE `+p.t.Time+` >= ? AND `+p.t.Time+` < ? ORDER BY `+p.t.SortBy+`, `+p.t.key(),
		p.start, p.end)
	if err != nil {
		return fmt.Errorf("archive: read %s: %w", p.t.Name, err)
	}
	defer rows.Close()
	dest, row := p.t.scanner()
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("archive: read %s: %w", p.t.Name, err)
		}
		if err := fn(row()); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("archive: read %s: %w", p.t.Name, err)
	}
	return nil
}

func (a *Archiver) dbDigest(ctx context.Context, p partition) (Digest, error) {
	var d Digest
	err := a.scan(ctx, p, func(r Row) error { d.Add(p.t, r); return nil })
	return d, err
}

// verify reads the object at key back and reports whether its rows match
// want (count and checksum). A missing or unreadable object does not
// match.
func (a *Archiver) verify(ctx context.Context, p partition, key string, want Digest) (bool, error) {
	data, err := readObject(ctx, a.blobs, key)
	if errors.Is(err, blob.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var got Digest
	if _, err := readFile(data, p.t, nil, func(r Row) error { got.Add(p.t, r); return nil }); err != nil {
		if errors.Is(err, errBadFile) {
			return false, nil
		}
		return false, err
	}
	return got.Rows == want.Rows && got.Sum() == want.Sum(), nil
}

func readObject(ctx context.Context, blobs blob.Store, key string) ([]byte, error) {
	o, err := blobs.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer o.Close()
	data, err := io.ReadAll(o)
	if err != nil {
		return nil, fmt.Errorf("archive: read %s: %w", key, err)
	}
	return data, nil
}
