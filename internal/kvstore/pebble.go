package kvstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Key spaces inside Pebble: values (with an expiry header), counters
// (merge operands) and list items.
const (
	spaceValue   = 'v'
	spaceCounter = 'c'
	spaceList    = 'l'
)

func pkey(space byte, key string) []byte {
	b := make([]byte, 0, len(key)+2)
	return append(append(b, space, 0), key...)
}

// counterMerger adds 8-byte little-endian int64 operands.
var counterMerger = &pebble.Merger{
	Name: "blueprint.counter.v1",
	Merge: func(key, value []byte) (pebble.ValueMerger, error) {
		m := &sumMerger{}
		return m, m.MergeNewer(value)
	},
}

type sumMerger struct{ sum int64 }

func (m *sumMerger) add(v []byte) error {
	if len(v) != 8 {
		return fmt.Errorf("kvstore: counter operand of %d bytes", len(v))
	}
	m.sum += int64(binary.LittleEndian.Uint64(v))
	return nil
}
func (m *sumMerger) MergeNewer(v []byte) error { return m.add(v) }
func (m *sumMerger) MergeOlder(v []byte) error { return m.add(v) }
func (m *sumMerger) Finish(bool) ([]byte, io.Closer, error) {
	return binary.LittleEndian.AppendUint64(nil, uint64(m.sum)), nil, nil
}

// Pebble is the embedded Store. Writes are synced to disk before they
// return.
type Pebble struct {
	db  *pebble.DB
	seq atomic.Uint64 // list item order: time-based, increasing
	now func() time.Time

	listMu sync.Mutex // serialises trims of lists
}

// OpenPebble opens (creating) a Pebble store in dir.
func OpenPebble(dir string) (*Pebble, error) {
	db, err := pebble.Open(dir, &pebble.Options{Merger: counterMerger, Logger: quietLogger{}})
	if err != nil {
		return nil, fmt.Errorf("kvstore: open %s: %w", dir, err)
	}
	p := &Pebble{db: db, now: time.Now}
	p.seq.Store(uint64(time.Now().UnixNano()))
	return p, nil
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// Close closes the store.
func (p *Pebble) Close() error { return p.db.Close() }

// Get implements Store.
func (p *Pebble) Get(ctx context.Context, key string) ([]byte, error) {
	v, closer, err := p.db.Get(pkey(spaceValue, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("kvstore: get: %w", err)
	}
	defer closer.Close()
	if len(v) < 8 {
		return nil, fmt.Errorf("kvstore: corrupt value of %q", key)
	}
	if exp := int64(binary.LittleEndian.Uint64(v)); exp != 0 && p.now().UnixMilli() >= exp {
		return nil, ErrNotFound
	}
	return bytes.Clone(v[8:]), nil
}

// Set implements Store.
func (p *Pebble) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := check(key, val); err != nil {
		return err
	}
	var exp int64
	if ttl > 0 {
		exp = p.now().Add(ttl).UnixMilli()
	}
	buf := binary.LittleEndian.AppendUint64(make([]byte, 0, 8+len(val)), uint64(exp))
	if err := p.db.Set(pkey(spaceValue, key), append(buf, val...), pebble.Sync); err != nil {
		return fmt.Errorf("kvstore: set: %w", err)
	}
	return nil
}

// Delete implements Store.
func (p *Pebble) Delete(ctx context.Context, key string) error {
	b := p.db.NewBatch()
	b.Delete(pkey(spaceValue, key), nil)
	b.Delete(pkey(spaceCounter, key), nil)
	lo := pkey(spaceList, key+"\x00")
	b.DeleteRange(lo, prefixEnd(lo), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("kvstore: delete: %w", err)
	}
	return nil
}

// Incr implements Store. The increment is a merge operand (no read before
// the write); the returned value is read after it and includes every
// increment committed before.
func (p *Pebble) Incr(ctx context.Context, key string, delta int64) (int64, error) {
	if err := check(key, nil); err != nil {
		return 0, err
	}
	if err := p.db.Merge(pkey(spaceCounter, key), binary.LittleEndian.AppendUint64(nil, uint64(delta)), pebble.Sync); err != nil {
		return 0, fmt.Errorf("kvstore: incr: %w", err)
	}
	return p.Counter(ctx, key)
}

// Counter implements Store.
func (p *Pebble) Counter(ctx context.Context, key string) (int64, error) {
	v, closer, err := p.db.Get(pkey(spaceCounter, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("kvstore: counter: %w", err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("kvstore: corrupt counter %q", key)
	}
	return int64(binary.LittleEndian.Uint64(v)), nil
}

func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// Push implements Store. Items are keyed by an inverted, increasing
// sequence number, so iteration order is newest first.
func (p *Pebble) Push(ctx context.Context, list string, val []byte, maxLen int) error {
	if err := check(list, val); err != nil {
		return err
	}
	seq := p.seq.Add(1)
	prefix := pkey(spaceList, list+"\x00")
	item := binary.BigEndian.AppendUint64(bytes.Clone(prefix), ^seq)
	if err := p.db.Set(item, val, pebble.Sync); err != nil {
		return fmt.Errorf("kvstore: push: %w", err)
	}
	if maxLen <= 0 {
		return nil
	}
	p.listMu.Lock()
	defer p.listMu.Unlock()
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return fmt.Errorf("kvstore: push: %w", err)
	}
	n := 0
	var cut []byte
	for ok := it.First(); ok; ok = it.Next() {
		n++
		if n == maxLen+1 {
			cut = bytes.Clone(it.Key())
			break
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("kvstore: push: %w", err)
	}
	if cut != nil {
		if err := p.db.DeleteRange(cut, prefixEnd(prefix), pebble.Sync); err != nil {
			return fmt.Errorf("kvstore: trim: %w", err)
		}
	}
	return nil
}

// Range implements Store.
func (p *Pebble) Range(ctx context.Context, list string, limit int) ([][]byte, error) {
	prefix := pkey(spaceList, list+"\x00")
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, fmt.Errorf("kvstore: range: %w", err)
	}
	defer it.Close()
	var out [][]byte
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		out = append(out, bytes.Clone(it.Value()))
	}
	return out, it.Error()
}
