// Package idgen issues 64-bit, time-ordered IDs whose bits carry the logical
// shard of the row, so that any service can route a row from its ID alone,
// and the leased worker ID of the generator that issued it, so that two live
// generators never issue the same ID.
//
// Layout, most significant bit first:
//
//	 1 bit   always 0 (IDs are positive int64s)
//	41 bits  milliseconds since the epoch, 2025-01-01T00:00:00Z (lasts until 2094-09-07)
//	12 bits  logical shard, 0..4095
//	 5 bits  worker ID, 0..31, leased from a Leaser
//	 5 bits  sequence within the millisecond, per shard, 0..31
//
// The time and shard fields sit exactly where the earlier layout (time,
// shard, 10-bit sequence) had them, so IDs issued before leases existed keep
// their time and shard; the bits below the shard are split between the
// worker ID and the sequence. The sequence counts per (generator, shard), so
// one generator issues at most 32 IDs per millisecond on one shard (32,000
// per second, Layout.MaxPerSecond) and 32 × 4096 per millisecond over all
// shards; a deployment issues at most 1024 IDs per millisecond on one shard
// over all its generators. See README.md for why.
//
// A Generator issues IDs only while it holds a worker-ID lease. It never
// issues a time earlier than one it already issued: when the clock steps
// back it waits the difference out up to Config.MaxBackwards and refuses
// with ErrClockBackwards beyond that; when the 32 sequence numbers of a
// shard's millisecond are used up it waits for the next millisecond outside
// its lock. Before it issues a millisecond it stores a high-water mark ahead
// of it with the lease backend, and a generator that takes over the worker ID
// (after a restart, a crash or a lost lease) starts above that mark, so no
// clock step across a restart can repeat an ID.
package idgen

import (
	"fmt"
	"strconv"
	"time"

	"github.com/blueprint-media/blueprint/internal/errs"
)

// Layout constants: the widths of the fields, their maxima and the epoch.
const (
	TimeBits     = 41
	ShardBits    = 12
	WorkerBits   = 5
	SequenceBits = 5

	MaxShard    = 1<<ShardBits - 1
	MaxWorker   = 1<<WorkerBits - 1
	MaxSequence = 1<<SequenceBits - 1
	maxTime     = 1<<TimeBits - 1

	workerShift = SequenceBits
	shardShift  = WorkerBits + SequenceBits
	timeShift   = ShardBits + WorkerBits + SequenceBits

	// EpochUnixMilli is the zero of the ID clock, 2025-01-01T00:00:00Z, in
	// milliseconds since the Unix epoch.
	EpochUnixMilli = 1735689600000
)

// Errors returned by the package. ErrBadShard, ErrBadCount and ErrBadID are
// of kind errs.Invalid; ErrNoLease, ErrClockBackwards, ErrClockRange and
// ErrNoFreeWorker are of kind errs.Unavailable.
var (
	ErrBadShard       error = &errs.Error{Kind: errs.Invalid, Msg: "idgen: shard out of range"}
	ErrBadCount       error = &errs.Error{Kind: errs.Invalid, Msg: "idgen: count out of range"}
	ErrBadID          error = &errs.Error{Kind: errs.Invalid, Msg: "idgen: malformed id"}
	ErrNoLease        error = &errs.Error{Kind: errs.Unavailable, Msg: "idgen: no worker-id lease"}
	ErrClockBackwards error = &errs.Error{Kind: errs.Unavailable, Msg: "idgen: clock moved backwards"}
	ErrClockRange     error = &errs.Error{Kind: errs.Unavailable, Msg: "idgen: clock outside the id time range"}
	ErrNoFreeWorker   error = &errs.Error{Kind: errs.Unavailable, Msg: "idgen: all worker ids are leased"}
	ErrHighWater      error = &errs.Error{Kind: errs.Unavailable, Msg: "idgen: cannot store the high-water mark"}
	// ErrLeaseLost is returned by Lease methods once the lease is no longer
	// held: it expired, was revoked, was released, or another holder took it.
	ErrLeaseLost error = &errs.Error{Kind: errs.Unavailable, Msg: "idgen: worker-id lease lost"}
)

// Layout describes Blueprint's ID layout and computes its limits. The
// layout is fixed: Generator, Decode and Shard always use DefaultLayout.
type Layout struct {
	Epoch                                         time.Time
	TimeBits, ShardBits, WorkerBits, SequenceBits int
}

// DefaultLayout returns the layout every ID uses.
func DefaultLayout() Layout {
	return Layout{
		Epoch:    time.UnixMilli(EpochUnixMilli).UTC(),
		TimeBits: TimeBits, ShardBits: ShardBits, WorkerBits: WorkerBits, SequenceBits: SequenceBits,
	}
}

// Shards returns the number of logical shards.
func (l Layout) Shards() int { return 1 << l.ShardBits }

// Workers returns the number of worker IDs, the most generators that can
// issue IDs at the same time in one deployment.
func (l Layout) Workers() int { return 1 << l.WorkerBits }

// MaxPerMilli returns how many IDs one generator can issue on one shard in
// one millisecond.
func (l Layout) MaxPerMilli() int64 { return 1 << l.SequenceBits }

// MaxPerSecond returns the limit of one generator on one shard, in IDs per
// second. This is the layout's limit for a single generator: it is reached
// when all calls go to the same shard.
func (l Layout) MaxPerSecond() int64 { return 1000 * l.MaxPerMilli() }

// MaxPerSecondAllShards returns the limit of one generator over all shards,
// in IDs per second. It is far above what a CPU core can issue, so a
// generator spread over shards is bounded by CPU, not by the layout.
func (l Layout) MaxPerSecondAllShards() int64 { return int64(l.Shards()) * l.MaxPerSecond() }

// MaxPerSecondPerShardDeployment returns the limit of one shard over all the
// generators of a deployment, in IDs per second.
func (l Layout) MaxPerSecondPerShardDeployment() int64 {
	return int64(l.Workers()) * l.MaxPerSecond()
}

// End returns the first instant the time field cannot represent.
func (l Layout) End() time.Time {
	return l.Epoch.Add(time.Duration(1<<l.TimeBits) * time.Millisecond)
}

// String returns the layout as "41 time | 12 shard | 5 worker | 5 sequence".
func (l Layout) String() string {
	return fmt.Sprintf("%d time | %d shard | %d worker | %d sequence", l.TimeBits, l.ShardBits, l.WorkerBits, l.SequenceBits)
}

// compose builds an ID from its fields; ms counts from the ID epoch.
func compose(ms int64, shard, worker int, seq int64) int64 {
	return ms<<timeShift | int64(shard)<<shardShift | int64(worker)<<workerShift | seq
}

// Parts are the fields of an ID.
type Parts struct {
	Time     time.Time
	Shard    int
	Worker   int
	Sequence int
}

// Decode splits an ID into its fields. It refuses IDs that are not
// positive.
func Decode(id int64) (Parts, error) {
	if id <= 0 {
		return Parts{}, fmt.Errorf("%w: %d", ErrBadID, id)
	}
	ms := id >> timeShift
	return Parts{
		Time:     time.UnixMilli(EpochUnixMilli + ms).UTC(),
		Shard:    Shard(id),
		Worker:   Worker(id),
		Sequence: int(id & MaxSequence),
	}, nil
}

// Shard returns the logical shard an ID carries.
func Shard(id int64) int { return int(id>>shardShift) & MaxShard }

// Worker returns the worker ID of the generator that issued an ID.
func Worker(id int64) int { return int(id>>workerShift) & MaxWorker }

// Parse reads an ID written in decimal, as the API shows it: 1 to 19
// digits, positive, without sign or leading zero.
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
