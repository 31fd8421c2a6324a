package cache

import "testing"

func TestSketchCountsSaturatesAndAges(t *testing.T) {
	s := newSketch(1024, false)
	h := testHash("k")
	for i := 1; i <= 20; i++ {
		s.increment(h)
		if want := uint64(min(i, 15)); s.frequency(h) != want {
			t.Fatalf("after %d increments frequency %d, want %d", i, s.frequency(h), want)
		}
	}
	if f := s.frequency(testHash("never")); f > 1 {
		t.Fatalf("unseen key has frequency %d", f)
	}
	s.age()
	if f := s.frequency(h); f != 7 {
		t.Fatalf("after aging frequency %d, want 7", f)
	}
}

func TestSketchAgesAfterItsPeriod(t *testing.T) {
	s := newSketch(64, false)
	h := testHash("hot")
	for range 10 {
		s.increment(h)
	}
	// Distinct keys until the period's additions run out: the hot key's
	// count is halved at least once.
	for i := range int(s.period) {
		s.increment(testHash(string(rune(i + 1000))))
	}
	if f := s.frequency(h); f >= 10 {
		t.Fatalf("frequency %d after a period of other keys, want < 10", f)
	}
}

func TestSketchDoorkeeper(t *testing.T) {
	s := newSketch(1024, true)
	h := testHash("k")
	if s.frequency(h) != 0 {
		t.Fatal("fresh key counted")
	}
	s.increment(h) // first sighting: doorkeeper only
	if f := s.frequency(h); f != 1 {
		t.Fatalf("after one sighting frequency %d, want 1", f)
	}
	s.increment(h)
	if f := s.frequency(h); f != 2 {
		t.Fatalf("after two sightings frequency %d, want 2", f)
	}
	s.age() // clears the doorkeeper, halves the counters
	if f := s.frequency(h); f != 0 {
		t.Fatalf("after aging frequency %d, want 0", f)
	}
}

func TestCeilPow2(t *testing.T) {
	for _, tc := range [][2]uint64{{0, 1}, {1, 1}, {2, 2}, {3, 4}, {1000, 1024}, {1024, 1024}, {1025, 2048}} {
		if got := ceilPow2(tc[0]); got != tc[1] {
			t.Errorf("ceilPow2(%d) = %d, want %d", tc[0], got, tc[1])
		}
	}
}
