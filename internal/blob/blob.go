// Package blob is Blueprint's object storage: immutable-by-convention objects
// addressed by slash-separated keys. The embedded driver keeps objects as
// files under a directory (Disk); an S3 driver comes later behind the same
// Store interface and passes the same conformance suite (blobtest).
//
// Contract: Put is atomic — a reader sees the old object or the whole new
// one, never a part — and durable once it returns. Keys are 1–512 bytes of
// [A-Za-z0-9._-/], without empty, "." or ".." segments. Missing objects
// return an error wrapping ErrNotFound.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Errors returned by every driver.
var (
	ErrNotFound = errors.New("blob: not found")
	ErrBadKey   = errors.New("blob: bad key")
)

// ColdPrefix is the key prefix of objects moved to cold storage
// (internal/coldstore): a cheaper bucket or storage class in an S3
// deployment. Readers that find a key missing try ColdPrefix+key.
const ColdPrefix = "cold/"

// OpenHotOrCold opens key, or ColdPrefix+key when key is missing.
func OpenHotOrCold(ctx context.Context, s Store, key string) (Object, error) {
	o, err := s.Open(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return s.Open(ctx, ColdPrefix+key)
	}
	return o, err
}

// Info describes a stored object.
type Info struct {
	Key     string
	Size    int64
	ModTime time.Time
	ETag    string // strong validator, quoted as HTTP wants it
}

// Object is an open object: a seekable reader plus its Info.
type Object interface {
	io.ReadSeekCloser
	Info() Info
}

// Store is an object store.
type Store interface {
	// Put stores the bytes of r under key, replacing any object there.
	Put(ctx context.Context, key string, r io.Reader) (Info, error)
	// Open opens the object for reading.
	Open(ctx context.Context, key string) (Object, error)
	// Stat returns the object's Info.
	Stat(ctx context.Context, key string) (Info, error)
	// Delete removes the object; deleting a missing object is not an error.
	Delete(ctx context.Context, key string) error
	// List returns the objects whose keys start with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]Info, error)
}

// CheckKey reports whether key is acceptable to every driver.
func CheckKey(key string) error {
	if key == "" || len(key) > 512 {
		return fmt.Errorf("%w: length %d", ErrBadKey, len(key))
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%w: %q", ErrBadKey, key)
		}
	}
	for _, c := range []byte(key) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '/'
		if !ok {
			return fmt.Errorf("%w: %q", ErrBadKey, key)
		}
	}
	return nil
}
