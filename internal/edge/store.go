package edge

import (
	"container/list"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// blockSize is the unit in which disk usage is counted: a file occupies
// whole filesystem blocks, so even an empty object costs one. This also
// bounds the number of objects (and so the in-memory index) by DiskBytes.
const blockSize = 4096

// File names in CacheDir. A fill writes edge-*.tmp and renames it to
// edge-*.obj once the body is complete; every version of an object gets a
// new name, so a reader holding an old entry never sees a new body.
const (
	filePrefix = "edge-"
	tmpSuffix  = ".tmp"
	objSuffix  = ".obj"
)

// entry is a stored object: metadata, the body file on disk, and when the
// object is in the memory tier, the body itself. store.get returns copies,
// which stay valid (body and meta are never modified) even if the object is
// replaced or evicted meanwhile; only the file may disappear.
type entry struct {
	meta  *meta
	path  string // body file in CacheDir
	body  []byte // the body, when inMem
	inMem bool
}

// store is the two-tier object store. Every object lives on disk; small,
// recently used ones are also kept in memory. The memory tier is therefore
// a subset of the disk tier: evicting from memory drops only the in-memory
// copy, evicting from disk drops the object. Each tier is bounded in bytes
// and ordered by its own policy. All methods are safe for concurrent use;
// files are deleted after the lock is released.
type store struct {
	m *metrics

	mu      sync.Mutex
	entries map[string]*entry
	mem     tier
	disk    tier
}

// tier is the accounting and eviction order of one storage tier.
type tier struct {
	name     string // metric label
	capacity int64
	used     int64
	objects  int64
	policy   policy
}

// policy orders the objects of a tier for eviction. A plain LRU is the only
// implementation today; frequency-aware policies (TinyLFU, GDSF) fit the
// same interface. Calls are serialised by the store's lock.
type policy interface {
	add(key string, cost int64) // a new object, now most recently used
	touch(key string)           // the object was used
	remove(key string)          // the object left the tier
	victim() (string, bool)     // the object to evict next
}

func newStore(memBytes, diskBytes int64, m *metrics) *store {
	return &store{
		m:       m,
		entries: map[string]*entry{},
		mem:     tier{name: "memory", capacity: memBytes, policy: newLRU()},
		disk:    tier{name: "disk", capacity: diskBytes, policy: newLRU()},
	}
}

// diskCost is the disk usage of a body of size bytes: whole blocks, at least one.
func diskCost(size int64) int64 {
	return max(1, (size+blockSize-1)/blockSize) * blockSize
}

// get returns the object stored under key and marks it used in both tiers.
func (s *store) get(key string) (entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[key]
	if !ok {
		return entry{}, false
	}
	s.disk.policy.touch(key)
	if e.inMem {
		s.mem.policy.touch(key)
	}
	return *e, true
}

// put stores an object whose body is already in the file at path, replacing
// any previous version. A non-nil body also puts the object in the memory
// tier. Objects are evicted from each tier to make room.
func (s *store) put(key string, m *meta, path string, body []byte) entry {
	var garbage []string
	s.mu.Lock()
	if old, ok := s.entries[key]; ok {
		garbage = append(garbage, s.drop(key, old))
	}
	garbage = append(garbage, s.makeRoom(&s.disk, diskCost(m.size))...)
	e := &entry{meta: m, path: path}
	s.entries[key] = e
	s.disk.add(key, diskCost(m.size))
	if body != nil {
		s.makeRoom(&s.mem, int64(len(body)))
		e.body, e.inMem = body, true
		s.mem.add(key, int64(len(body)))
	}
	snapshot := *e
	s.publish()
	s.mu.Unlock()
	removeFiles(garbage)
	return snapshot
}

// promote puts the body of a disk-only object into the memory tier, unless
// the object was replaced or removed since the caller read it.
func (s *store) promote(key, path string, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[key]
	if !ok || e.path != path || e.inMem {
		return
	}
	s.makeRoom(&s.mem, int64(len(body)))
	e.body, e.inMem = body, true
	s.mem.add(key, int64(len(body)))
	s.publish()
}

// refresh replaces the metadata of the object at path after a successful
// revalidation. It returns the refreshed entry; if the object was replaced
// or removed meanwhile, the entry is built from old, so the caller can still
// serve the body it revalidated.
func (s *store) refresh(key string, old entry, m *meta) entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[key]; ok && e.path == old.path {
		e.meta = m
		return *e
	}
	old.meta = m
	return old
}

// remove drops the object stored under key if it is still the version whose
// body is at path ("" matches any version).
func (s *store) remove(key, path string) {
	s.mu.Lock()
	e, ok := s.entries[key]
	if !ok || (path != "" && e.path != path) {
		s.mu.Unlock()
		return
	}
	garbage := s.drop(key, e)
	s.publish()
	s.mu.Unlock()
	removeFiles([]string{garbage})
}

// drop removes e from both tiers and returns its file for deletion. The
// caller holds s.mu.
func (s *store) drop(key string, e *entry) string {
	delete(s.entries, key)
	s.disk.remove(key, diskCost(e.meta.size))
	if e.inMem {
		s.mem.remove(key, int64(len(e.body)))
	}
	return e.path
}

// makeRoom evicts objects from t until cost more bytes fit, or t is empty.
// It returns the files to delete. The caller holds s.mu.
func (s *store) makeRoom(t *tier, cost int64) (garbage []string) {
	for t.used+cost > t.capacity {
		key, ok := t.policy.victim()
		if !ok {
			break
		}
		e := s.entries[key]
		if t == &s.mem {
			s.mem.remove(key, int64(len(e.body)))
			e.body, e.inMem = nil, false
		} else {
			garbage = append(garbage, s.drop(key, e))
		}
		s.m.evictions.WithLabelValues(t.name).Inc()
	}
	return garbage
}

func (t *tier) add(key string, cost int64) {
	t.policy.add(key, cost)
	t.used += cost
	t.objects++
}

func (t *tier) remove(key string, cost int64) {
	t.policy.remove(key)
	t.used -= cost
	t.objects--
}

// publish updates the gauges. The caller holds s.mu.
func (s *store) publish() {
	for _, t := range []*tier{&s.mem, &s.disk} {
		s.m.cacheBytes.WithLabelValues(t.name).Set(float64(t.used))
		s.m.cacheObjects.WithLabelValues(t.name).Set(float64(t.objects))
	}
}

// usage returns bytes and object counts of the memory and disk tiers.
func (s *store) usage() (memBytes, memObjects, diskBytes, diskObjects int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mem.used, s.mem.objects, s.disk.used, s.disk.objects
}

func removeFiles(paths []string) {
	for _, p := range paths {
		_ = os.Remove(p) // already gone is fine; nothing else to do
	}
}

// cleanDir deletes the object and temporary files a previous run left in
// dir. Other files are left alone.
func cleanDir(dir string) error {
	des, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, de := range des {
		n := de.Name()
		if de.Type().IsRegular() && strings.HasPrefix(n, filePrefix) &&
			(strings.HasSuffix(n, tmpSuffix) || strings.HasSuffix(n, objSuffix)) {
			if err := os.Remove(filepath.Join(dir, n)); err != nil && !os.IsNotExist(err) {
				return err
			}
		}
	}
	return nil
}

// lru is the least-recently-used policy: a list from most to least
// recently used, and an index into it.
type lru struct {
	order *list.List // of string keys, front = most recent
	index map[string]*list.Element
}

func newLRU() *lru { return &lru{order: list.New(), index: map[string]*list.Element{}} }

func (l *lru) add(key string, _ int64) {
	if el, ok := l.index[key]; ok {
		l.order.MoveToFront(el)
		return
	}
	l.index[key] = l.order.PushFront(key)
}

func (l *lru) touch(key string) {
	if el, ok := l.index[key]; ok {
		l.order.MoveToFront(el)
	}
}

func (l *lru) remove(key string) {
	if el, ok := l.index[key]; ok {
		l.order.Remove(el)
		delete(l.index, key)
	}
}

func (l *lru) victim() (string, bool) {
	el := l.order.Back()
	if el == nil {
		return "", false
	}
	return el.Value.(string), true
}
