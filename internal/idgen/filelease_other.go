//go:build !unix

package idgen

import (
	"context"
	"errors"
	"path/filepath"
)

// FileLeaser is the embedded lease backend; it needs flock(2) and so works
// only on Unix systems.
type FileLeaser struct {
	dir string
}

// NewFileLeaser returns a leaser whose lock files would live in
// dataDir/idgen.
func NewFileLeaser(dataDir string) *FileLeaser {
	return &FileLeaser{dir: filepath.Join(dataDir, "idgen")}
}

// Dir returns the directory that would hold the lock files.
func (l *FileLeaser) Dir() string { return l.dir }

// Acquire fails: there is no flock on this system.
func (l *FileLeaser) Acquire(context.Context) (Lease, error) {
	return nil, errors.New("idgen: the file leaser needs a Unix system")
}
