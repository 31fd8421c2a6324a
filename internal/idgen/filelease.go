//go:build unix

package idgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// FileLeaser is the embedded lease backend for one machine: worker ID n is
// the exclusive flock(2) on the file <dir>/idgen/worker-NN, and the file
// holds the worker ID's high-water mark. Processes that share the data
// directory (the frontend and worker roles of an all-in-one deployment run
// side by side) get distinct worker IDs. The kernel drops the lock when the
// holder exits, however it exits, so a crashed process frees its worker ID
// at once; its successor then starts above the mark it left.
//
// The lease never expires while the process lives; it is lost only if the
// lock file is replaced (someone deleted it and another process created a
// new one). The data directory must be on a local file system: flock over
// NFS is emulated or missing.
type FileLeaser struct {
	dir string
}

// NewFileLeaser returns a leaser whose lock files live in dataDir/idgen.
// It touches nothing until Acquire.
func NewFileLeaser(dataDir string) *FileLeaser {
	return &FileLeaser{dir: filepath.Join(dataDir, "idgen")}
}

// Dir returns the directory that holds the lock files.
func (l *FileLeaser) Dir() string { return l.dir }

// markLen is the size of a lock file's content: a 20-digit decimal mark and
// a newline, rewritten in place.
const markLen = 21

// Acquire locks the lowest free worker-ID file. It fails on the first file
// it cannot open, lock or read (a corrupt mark is an error, never taken as
// zero), and with ErrNoFreeWorker when all are locked.
func (l *FileLeaser) Acquire(ctx context.Context) (Lease, error) {
	if err := os.MkdirAll(l.dir, 0o750); err != nil {
		return nil, fmt.Errorf("idgen: lease dir: %w", err)
	}
	for n := range MaxWorker + 1 {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("idgen: acquire: %w", err)
		}
		lease, err := l.try(n)
		if err != nil {
			return nil, err
		}
		if lease != nil {
			return lease, nil
		}
	}
	return nil, fmt.Errorf("%w: all %d lock files in %s are locked", ErrNoFreeWorker, MaxWorker+1, l.dir)
}

// try locks worker ID n: it returns nil, nil when another holder has it.
func (l *FileLeaser) try(n int) (*fileLease, error) {
	path := filepath.Join(l.dir, fmt.Sprintf("worker-%02d", n))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("idgen: open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("idgen: lock %s: %w", path, err)
	}
	if err := sameFile(f, path); err != nil {
		f.Close() // replaced between open and lock: the next call retries
		return nil, err
	}
	mark, err := readMark(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("idgen: %s: %w", path, err)
	}
	return &fileLease{id: n, path: path, f: f, mark: mark, lost: make(chan struct{})}, nil
}

func readMark(f *os.File) (int64, error) {
	b := make([]byte, markLen+1)
	k, err := f.ReadAt(b, 0)
	if err != nil && err != io.EOF {
		return 0, fmt.Errorf("read high-water mark: %w", err)
	}
	if k == 0 {
		return 0, nil // a new file
	}
	s := string(b[:k])
	if k != markLen || !strings.HasSuffix(s, "\n") {
		return 0, fmt.Errorf("corrupt high-water mark %q (want 20 digits and a newline)", s)
	}
	mark, err := strconv.ParseInt(s[:markLen-1], 10, 64)
	if err != nil || mark < 0 {
		return 0, fmt.Errorf("corrupt high-water mark %q", s)
	}
	return mark, nil
}

func sameFile(f *os.File, path string) error {
	a, err := f.Stat()
	if err != nil {
		return fmt.Errorf("idgen: stat %s: %w", path, err)
	}
	b, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("idgen: lock file %s replaced: %w", path, err)
	}
	if !os.SameFile(a, b) {
		return fmt.Errorf("idgen: lock file %s replaced", path)
	}
	return nil
}

// fileLease is a held lock file.
type fileLease struct {
	id   int
	path string
	mark int64
	lost chan struct{}

	mu   sync.Mutex
	f    *os.File // nil once released or lost
	done bool
}

func (l *fileLease) ID() int               { return l.id }
func (l *fileLease) HighWater() int64      { return l.mark }
func (l *fileLease) Lost() <-chan struct{} { return l.lost }
func (l *fileLease) Expires() time.Time    { return time.Time{} }

// SetHighWater rewrites the mark in the lock file and syncs it to disk.
func (l *fileLease) SetHighWater(_ context.Context, ms int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.writeLocked(ms)
}

func (l *fileLease) writeLocked(ms int64) error {
	if l.f == nil {
		return ErrLeaseLost
	}
	if err := sameFile(l.f, l.path); err != nil {
		l.loseLocked()
		return fmt.Errorf("%w: %w", ErrLeaseLost, err)
	}
	if ms < 0 {
		return fmt.Errorf("idgen: negative high-water mark %d", ms)
	}
	if _, err := l.f.WriteAt([]byte(fmt.Sprintf("%020d\n", ms)), 0); err != nil {
		return fmt.Errorf("idgen: write %s: %w", l.path, err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("idgen: sync %s: %w", l.path, err)
	}
	return nil
}

// loseLocked closes the file, which drops the lock, and closes Lost.
func (l *fileLease) loseLocked() {
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
	if !l.done {
		l.done = true
		close(l.lost)
	}
}

// Release writes the final mark and unlocks the file.
func (l *fileLease) Release(_ context.Context, ms int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		l.loseLocked()
		return nil
	}
	err := l.writeLocked(ms)
	l.loseLocked()
	return err
}
