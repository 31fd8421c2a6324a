package lock

import (
	"context"
	crand "crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// Options configures a Locker. The zero value is usable.
type Options struct {
	// TTL is how long a lease survives without a keepalive. The keepalive
	// renews it every TTL/3. Default 10s. The etcd backend rounds it up to
	// whole seconds (etcd lease granularity).
	TTL time.Duration
	// MaxPoll caps the jittered backoff between acquisition attempts of the
	// SQL backends. Default 100ms.
	MaxPoll time.Duration
	// MaxConns caps the connections NewPostgres opens. Default 4.
	MaxConns int
	// Metrics receives lock metrics; nil records nothing.
	Metrics *Metrics
}

func (o Options) withDefaults() Options {
	if o.TTL <= 0 {
		o.TTL = 10 * time.Second
	}
	if o.MaxPoll <= 0 {
		o.MaxPoll = 100 * time.Millisecond
	}
	return o
}

// dialect holds the SQL that differs between SQLite and PostgreSQL.
type dialect struct {
	name   string
	now    string // current time in milliseconds since the Unix epoch
	schema []string
	bind   func(q string) string
}

var numberedParam = regexp.MustCompile(`\$(\d+)`)

func sqliteDialect() dialect {
	return dialect{
		name: "sqlite",
		// The SQLite backend runs in the calling process, so this is the
		// local clock of the machine that shares the database file.
		now: `CAST(unixepoch('subsec') * 1000 AS INTEGER)`,
		schema: []string{
			`CREATE TABLE IF NOT EXISTS lock_leases (
				name TEXT PRIMARY KEY,
				holder TEXT NOT NULL DEFAULT '',
				token INTEGER NOT NULL DEFAULT 0,
				expires_at INTEGER NOT NULL DEFAULT 0)`,
			FenceSchema,
		},
		bind: func(q string) string { return numberedParam.ReplaceAllString(q, "?$1") },
	}
}

func postgresDialect() dialect {
	return dialect{
		name: "postgres",
		// The database server's clock: every client sees the same time.
		now: `(extract(epoch from clock_timestamp()) * 1000)::bigint`,
		schema: []string{
			`CREATE TABLE IF NOT EXISTS lock_leases (
				name TEXT PRIMARY KEY,
				holder TEXT NOT NULL DEFAULT '',
				token BIGINT NOT NULL DEFAULT 0,
				expires_at BIGINT NOT NULL DEFAULT 0)`,
			FenceSchema,
		},
		bind: func(q string) string { return q },
	}
}

// errNoRow reports that a query returned no row.
var errNoRow = errors.New("lock: no row")

// leaseStore runs the lease-table statements; database/sql for SQLite and
// a small pgx pool for PostgreSQL.
type leaseStore interface {
	queryInt(ctx context.Context, q string, args ...any) (int64, error) // errNoRow if none
	exec(ctx context.Context, q string, args ...any) (int64, error)     // rows affected
	close() error
}

type sqlDBStore struct{ db *sql.DB }

func (s sqlDBStore) queryInt(ctx context.Context, q string, args ...any) (int64, error) {
	var v int64
	err := s.db.QueryRowContext(ctx, q, args...).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, errNoRow
	}
	return v, err
}

func (s sqlDBStore) exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (s sqlDBStore) close() error { return nil } // the caller owns the *sql.DB

// sqlLocker is the lease-table backend shared by SQLite and PostgreSQL.
type sqlLocker struct {
	db     leaseStore
	d      dialect
	opts   Options
	holder string
	q      *queue
	seq    uint64
	mu     sync.Mutex
	closed bool

	acquireQ, renewQ, releaseQ string
}

// NewSQLite returns the embedded Locker: a lease table in the shared SQLite
// database, so every process that opens the same data directory sees the
// same locks. Expiry uses the local clock of those processes, which must
// therefore run on one machine. Across processes waiters poll with jittered
// backoff, so FIFO order holds within a process but is approximate between
// processes.
func NewSQLite(ctx context.Context, db *sqlstore.DB, opts Options) (Locker, error) {
	for _, s := range sqliteDialect().schema {
		if _, err := db.W.ExecContext(ctx, s); err != nil {
			return nil, fmt.Errorf("lock: create sqlite schema: %w", err)
		}
	}
	return newSQLLocker(sqlDBStore{db.W}, sqliteDialect(), opts)
}

func newSQLLocker(db leaseStore, d dialect, opts Options) (*sqlLocker, error) {
	var b [8]byte
	if _, err := crand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("lock: holder id: %w", err)
	}
	now := d.now
	l := &sqlLocker{
		db: db, d: d, opts: opts.withDefaults(), holder: hex.EncodeToString(b[:]), q: newQueue(),
		acquireQ: d.bind(`INSERT INTO lock_leases (name, holder, token, expires_at) VALUES ($1, $2, 1, ` + now + ` + $3)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, token = lock_leases.token + 1, expires_at = excluded.expires_at
			WHERE lock_leases.holder = '' OR lock_leases.expires_at <= ` + now + `
			RETURNING token`),
		renewQ: d.bind(`UPDATE lock_leases SET expires_at = ` + now + ` + $4
			WHERE name = $1 AND holder = $2 AND token = $3 AND expires_at > ` + now),
		releaseQ: d.bind(`UPDATE lock_leases SET holder = '', expires_at = 0
			WHERE name = $1 AND holder = $2 AND token = $3`),
	}
	return l, nil
}

func (l *sqlLocker) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// Close marks the Locker closed and closes connections it opened itself.
func (l *sqlLocker) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	return l.db.close()
}

// holderFor returns a holder string unique to one acquisition attempt.
func (l *sqlLocker) holderFor() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	return fmt.Sprintf("%s-%d", l.holder, l.seq)
}

// tryAcquire runs one acquisition statement. It returns ErrLocked if the
// lock is held by a live lease.
func (l *sqlLocker) tryAcquire(ctx context.Context, name string) (*Lease, error) {
	// The queue slot is handed on once, on Unlock or on loss; it is set
	// before the keepalive starts, which may report a loss.
	holder := l.holderFor()
	start := time.Now()
	// The statement must not be cut by ctx after it commits, or the lease
	// would be held until it expires with nobody knowing.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.opts.TTL)
	defer cancel()
	token, err := l.db.queryInt(sctx, l.acquireQ, name, holder, l.opts.TTL.Milliseconds())
	if errors.Is(err, errNoRow) {
		return nil, ErrLocked
	}
	if err != nil {
		return nil, fmt.Errorf("lock: acquire %s: %w", name, err)
	}
	lease := newLease(name, uint64(token), l.d.name, l.opts.Metrics)
	lease.unqueue = onceFunc(func() { l.q.leave(name) })
	lease.release = func(ctx context.Context) error {
		_, err := l.db.exec(ctx, l.releaseQ, name, holder, token)
		return err
	}
	lease.wg.Add(1)
	go l.keepalive(lease, holder, token, start)
	return lease, nil
}

// keepalive renews the lease every TTL/3 and closes Lost when the lease is
// gone or when TTL has passed since the last renewal that was sent and
// confirmed, whichever comes first.
func (l *sqlLocker) keepalive(lease *Lease, holder string, token int64, start time.Time) {
	defer lease.wg.Done()
	ttl := l.opts.TTL
	deadline := time.NewTimer(time.Until(start.Add(ttl)))
	defer deadline.Stop()
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-lease.done:
			return
		case <-deadline.C:
			lease.markLost(fmt.Errorf("lock: %s: ttl expired without a successful keepalive", lease.Name))
			return
		case <-tick.C:
			sent := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), ttl/3)
			n, err := l.db.exec(ctx, l.renewQ, lease.Name, holder, token, ttl.Milliseconds())
			cancel()
			if err != nil {
				continue // retry on the next tick; the deadline still stands
			}
			if n == 0 {
				lease.markLost(fmt.Errorf("lock: %s: lease expired or taken over", lease.Name))
				return
			}
			if !deadline.Stop() {
				select {
				case <-deadline.C:
				default:
				}
			}
			deadline.Reset(time.Until(sent.Add(ttl)))
		}
	}
}

// TryLock acquires name if it is free.
func (l *sqlLocker) TryLock(ctx context.Context, name string) (*Lease, error) {
	if l.isClosed() {
		return nil, ErrClosed
	}
	if !l.q.tryEnter(name) {
		l.opts.Metrics.failed(l.d.name, ErrLocked)
		return nil, ErrLocked
	}
	lease, err := l.tryAcquire(ctx, name)
	if err != nil {
		l.q.leave(name)
		l.opts.Metrics.failed(l.d.name, err)
		return nil, err
	}
	l.opts.Metrics.acquired(l.d.name, -1)
	return lease, nil
}

// Lock waits in the local FIFO queue for name, then polls the lease table
// with jittered exponential backoff until the lock is free.
func (l *sqlLocker) Lock(ctx context.Context, name string) (*Lease, error) {
	if l.isClosed() {
		return nil, ErrClosed
	}
	start := time.Now()
	if err := l.q.enter(ctx, name); err != nil {
		return nil, fmt.Errorf("lock: wait for %s: %w", name, err)
	}
	backoff := time.Millisecond
	for {
		lease, err := l.tryAcquire(ctx, name)
		if err == nil {
			l.opts.Metrics.acquired(l.d.name, time.Since(start))
			return lease, nil
		}
		if !errors.Is(err, ErrLocked) && (l.isClosed() || errors.Is(err, sql.ErrConnDone) || strings.Contains(err.Error(), "database is closed")) {
			l.q.leave(name)
			l.opts.Metrics.failed(l.d.name, err)
			return nil, err
		}
		sleep := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			l.q.leave(name)
			l.opts.Metrics.failed(l.d.name, ctx.Err())
			return nil, fmt.Errorf("lock: wait for %s: %w", name, ctx.Err())
		case <-t.C:
		}
		if backoff *= 2; backoff > l.opts.MaxPoll {
			backoff = l.opts.MaxPoll
		}
	}
}
