package idgen

import (
	"strconv"
	"testing"
	"time"
)

func TestLayout(t *testing.T) {
	l := DefaultLayout()
	if got := l.TimeBits + l.ShardBits + l.WorkerBits + l.SequenceBits; got != 63 {
		t.Fatalf("layout uses %d bits, want 63", got)
	}
	if l.Shards() != MaxShard+1 || l.Workers() != MaxWorker+1 || l.MaxPerMilli() != MaxSequence+1 {
		t.Fatalf("layout %v disagrees with the constants", l)
	}
	if l.MaxPerSecond() != 32_000 || l.MaxPerSecondAllShards() != 131_072_000 || l.MaxPerSecondPerShardDeployment() != 1_024_000 {
		t.Fatalf("limits %d %d %d", l.MaxPerSecond(), l.MaxPerSecondAllShards(), l.MaxPerSecondPerShardDeployment())
	}
	if !l.Epoch.Equal(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("epoch %v", l.Epoch)
	}
	if end := l.End(); end.Year() != 2094 || end.Month() != time.September {
		t.Fatalf("end %v, want September 2094", end)
	}
	if l.String() != "41 time | 12 shard | 5 worker | 5 sequence" {
		t.Fatalf("String() = %q", l.String())
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 26, 12, 34, 56, 789e6, time.UTC)
	ms := at.UnixMilli() - EpochUnixMilli
	for _, c := range []struct{ shard, worker, seq int }{{0, 0, 0}, {4095, 31, 31}, {7, 3, 9}, {MaxShard, 0, MaxSequence}} {
		id := compose(ms, c.shard, c.worker, int64(c.seq))
		p, err := Decode(id)
		if err != nil {
			t.Fatal(err)
		}
		if !p.Time.Equal(at) || p.Shard != c.shard || p.Worker != c.worker || p.Sequence != c.seq {
			t.Fatalf("decode(%d) = %+v, want %v %+v", id, p, at, c)
		}
		if Shard(id) != c.shard || Worker(id) != c.worker {
			t.Fatalf("Shard/Worker(%d) = %d/%d", id, Shard(id), Worker(id))
		}
	}
	if _, err := Decode(0); err == nil {
		t.Fatal("Decode(0) accepted")
	}
	if _, err := Decode(-5); err == nil {
		t.Fatal("Decode(-5) accepted")
	}
}

// TestOldLayoutCompatible checks that IDs of the earlier layout (41 time |
// 12 shard | 10 sequence) keep their time and shard.
func TestOldLayoutCompatible(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 8e6, time.UTC)
	ms := at.UnixMilli() - EpochUnixMilli
	old := ms<<22 | 1234<<10 | 1000
	p, err := Decode(old)
	if err != nil || !p.Time.Equal(at) || p.Shard != 1234 {
		t.Fatalf("old id decodes to %+v, %v", p, err)
	}
}

func TestParse(t *testing.T) {
	for _, bad := range []string{"", "0", "-5", "+5", "007", "abc", "99999999999999999999", "1e9", " 1", "1 "} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	if id, err := Parse("12345"); err != nil || id != 12345 {
		t.Errorf("Parse(12345) = %d, %v", id, err)
	}
	if id, err := Parse("9223372036854775807"); err != nil || id != 1<<63-1 {
		t.Errorf("Parse(max) = %d, %v", id, err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"1", "123456789012345678", "0", "-1", "9223372036854775807", "x", "0001", "+7"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			return
		}
		if id <= 0 || strconv.FormatInt(id, 10) != s {
			t.Fatalf("Parse(%q) = %d, not canonical", s, id)
		}
		if _, err := Decode(id); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzDecode(f *testing.F) {
	for _, id := range []int64{1, 1 << 62, 1<<63 - 1, 0, -1, 123456789012345} {
		f.Add(id)
	}
	f.Fuzz(func(t *testing.T, id int64) {
		p, err := Decode(id)
		if id <= 0 {
			if err == nil {
				t.Fatalf("Decode(%d) accepted", id)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if p.Shard < 0 || p.Shard > MaxShard || p.Worker < 0 || p.Worker > MaxWorker || p.Sequence < 0 || p.Sequence > MaxSequence {
			t.Fatalf("Decode(%d) = %+v out of range", id, p)
		}
		if back := compose(p.Time.UnixMilli()-EpochUnixMilli, p.Shard, p.Worker, int64(p.Sequence)); back != id {
			t.Fatalf("compose(Decode(%d)) = %d", id, back)
		}
		if p.Time.Before(DefaultLayout().Epoch) || !p.Time.Before(DefaultLayout().End()) {
			t.Fatalf("Decode(%d).Time = %v outside the layout", id, p.Time)
		}
	})
}
