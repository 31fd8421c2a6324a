// Package idgen issues 64-bit, time-ordered IDs whose bits carry the logical
// shard of the row, so that any service can route a row from its ID alone.
//
// Layout (Instagram's), most significant bit first:
//
//	1 bit   always 0 (IDs are positive int64s)
//	41 bits milliseconds since Epoch (2025-01-01T00:00:00Z; lasts until 2094)
//	12 bits logical shard (0..4095)
//	10 bits sequence within the millisecond (0..1023)
//
// A Generator never issues the same ID twice: when its sequence is used up it
// waits for the next millisecond, and when the clock goes backwards it waits
// the difference out up to MaxBackwards, then refuses with ErrClockBackwards.
// Uniqueness across processes needs distinct generators per process; leasing
// worker identities from a coordinator is the ID-generator issue's work, and
// until then only one process in a deployment issues IDs.
package idgen

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// Layout constants.
const (
	TimeBits     = 41
	ShardBits    = 12
	SequenceBits = 10
	MaxShard     = 1<<ShardBits - 1
	maxSequence  = 1<<SequenceBits - 1
)

// Epoch is the zero of the ID clock.
var Epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// MaxBackwards is how far the clock may step back before Next gives up.
const MaxBackwards = 500 * time.Millisecond

// Errors returned by the package.
var (
	ErrClockBackwards = errors.New("idgen: clock moved backwards")
	ErrBadShard       = errors.New("idgen: shard out of range")
	ErrBadID          = errors.New("idgen: malformed id")
)

// Generator issues IDs. It is safe for concurrent use.
type Generator struct {
	mu     sync.Mutex
	now    func() time.Time
	sleep  func(time.Duration)
	lastMs int64
	seq    int64
}

// New returns a Generator on the wall clock.
func New() *Generator {
	return &Generator{now: time.Now, sleep: time.Sleep}
}

// Next returns a new ID on the given logical shard.
func (g *Generator) Next(shard int) (int64, error) {
	if shard < 0 || shard > MaxShard {
		return 0, fmt.Errorf("%w: %d", ErrBadShard, shard)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for {
		ms := g.now().Sub(Epoch).Milliseconds()
		switch {
		case ms < g.lastMs:
			back := time.Duration(g.lastMs-ms) * time.Millisecond
			if back > MaxBackwards {
				return 0, fmt.Errorf("%w by %v", ErrClockBackwards, back)
			}
			g.sleep(back)
			continue
		case ms == g.lastMs:
			if g.seq == maxSequence {
				g.sleep(100 * time.Microsecond)
				continue
			}
			g.seq++
		default:
			g.lastMs, g.seq = ms, 0
		}
		return ms<<(ShardBits+SequenceBits) | int64(shard)<<SequenceBits | g.seq, nil
	}
}

// Parts are the fields of an ID.
type Parts struct {
	Time     time.Time
	Shard    int
	Sequence int
}

// Decode splits an ID into its fields.
func Decode(id int64) (Parts, error) {
	if id <= 0 {
		return Parts{}, fmt.Errorf("%w: %d", ErrBadID, id)
	}
	ms := id >> (ShardBits + SequenceBits)
	return Parts{
		Time:     Epoch.Add(time.Duration(ms) * time.Millisecond),
		Shard:    int(id>>SequenceBits) & MaxShard,
		Sequence: int(id & maxSequence),
	}, nil
}

// Shard returns the logical shard an ID carries.
func Shard(id int64) int { return int(id>>SequenceBits) & MaxShard }

// Parse reads an ID written in decimal, as the API shows it.
func Parse(s string) (int64, error) {
	if len(s) == 0 || len(s) > 19 {
		return 0, fmt.Errorf("%w: %q", ErrBadID, s)
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 || s[0] == '+' || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("%w: %q", ErrBadID, s)
	}
	return id, nil
}
