package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// Disk stores objects as files under a root directory. Each object is
// written to a temporary file, synced, renamed into place, and its
// directory synced. Its ETag is derived from its size, modification time
// (as nginx does) and inode: a replaced object gets a new one, and there is
// no second file to keep in step with the first.
type Disk struct {
	root string
}

var _ Store = (*Disk)(nil)

// NewDisk returns a Disk store rooted at dir, creating it if needed.
func NewDisk(dir string) (*Disk, error) {
	if err := os.MkdirAll(filepath.Join(dir, ".tmp"), 0o755); err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	return &Disk{root: dir}, nil
}

func (d *Disk) path(key string) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	if strings.HasPrefix(key, ".tmp/") || key == ".tmp" {
		return "", fmt.Errorf("%w: %q is reserved", ErrBadKey, key)
	}
	return filepath.Join(d.root, filepath.FromSlash(key)), nil
}

// Put implements Store.
func (d *Disk) Put(ctx context.Context, key string, r io.Reader) (Info, error) {
	p, err := d.path(key)
	if err != nil {
		return Info{}, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return Info{}, fmt.Errorf("blob: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Join(d.root, ".tmp"), "put-*")
	if err != nil {
		return Info{}, fmt.Errorf("blob: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, ctxReader{ctx, r})
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Info{}, fmt.Errorf("blob: put %s: %w", key, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return Info{}, fmt.Errorf("blob: put %s: %w", key, err)
	}
	if dir, err := os.Open(filepath.Dir(p)); err == nil {
		dir.Sync() // make the rename itself durable
		dir.Close()
	}
	return d.Stat(ctx, key)
}

// Stat implements Store.
func (d *Disk) Stat(ctx context.Context, key string) (Info, error) {
	p, err := d.path(key)
	if err != nil {
		return Info{}, err
	}
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && fi.IsDir()) {
		return Info{}, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	if err != nil {
		return Info{}, fmt.Errorf("blob: %w", err)
	}
	// Size and modification time alone repeat when a key is replaced twice
	// within the file system's timestamp granularity; Put replaces by
	// renaming a new file into place, so the inode tells the versions apart.
	etag := `"` + strconv.FormatInt(fi.Size(), 16) + "-" + strconv.FormatInt(fi.ModTime().UnixNano(), 16)
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		etag += "-" + strconv.FormatUint(uint64(st.Ino), 16)
	}
	etag += `"`
	return Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime(), ETag: etag}, nil
}

type diskObject struct {
	*os.File
	info Info
}

func (o diskObject) Info() Info { return o.info }

// Open implements Store.
func (d *Disk) Open(ctx context.Context, key string) (Object, error) {
	info, err := d.Stat(ctx, key)
	if err != nil {
		return nil, err
	}
	p, _ := d.path(key)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	if err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	return diskObject{f, info}, nil
}

// Delete implements Store.
func (d *Disk) Delete(ctx context.Context, key string) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob: %w", err)
	}
	return nil
}

// List implements Store.
func (d *Disk) List(ctx context.Context, prefix string) ([]Info, error) {
	var out []Info
	err := filepath.WalkDir(d.root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(d.root, p)
		key := filepath.ToSlash(rel)
		if e.IsDir() {
			if key == ".tmp" || (key != "." && !strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/")) {
				return fs.SkipDir
			}
			return nil
		}
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		info, err := d.Stat(ctx, key)
		if err != nil {
			return nil // removed meanwhile
		}
		out = append(out, info)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("blob: list %q: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
