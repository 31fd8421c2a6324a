package ring

import (
	"fmt"
	"testing"
)

const keys = 100_000

func owners(r *Ring, alive func(int) bool) []string {
	out := make([]string, keys)
	for k := range keys {
		if i := r.Pick(fmt.Sprint("video:", k), alive); i >= 0 {
			out[k] = r.nodes[i]
		}
	}
	return out
}

// TestAddingAFifthNodeMovesAFifth: going from 4 to 5 nodes moves about 1/5
// of the keys, all of them to the new node, and balances the load.
func TestAddingAFifthNodeMovesAFifth(t *testing.T) {
	four := New("10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379", "10.0.0.4:6379")
	five := New("10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379", "10.0.0.4:6379", "10.0.0.5:6379")
	before, after := owners(four, nil), owners(five, nil)
	moved := 0
	load := map[string]int{}
	for k := range keys {
		load[after[k]]++
		if before[k] != after[k] {
			moved++
			if after[k] != "10.0.0.5:6379" {
				t.Fatalf("key %d moved from %s to %s, not to the new node", k, before[k], after[k])
			}
		}
	}
	frac := float64(moved) / keys
	t.Logf("moved %.2f%% of %d keys; load per node %v", 100*frac, keys, load)
	if frac < 0.18 || frac > 0.22 {
		t.Errorf("moved %.3f of the keys, want about 0.20", frac)
	}
	for n, c := range load {
		if c < keys/5*9/10 || c > keys/5*11/10 {
			t.Errorf("node %s owns %d keys, want %d ± 10%%", n, c, keys/5)
		}
	}
}

// TestDeadNodeIsRoutedAround: with a node down its keys spread over the
// others and no other key moves; when it is back they return.
func TestDeadNodeIsRoutedAround(t *testing.T) {
	r := New("a", "b", "c", "d")
	all := owners(r, nil)
	down := owners(r, func(i int) bool { return i != 2 })
	for k := range keys {
		switch {
		case down[k] == "c":
			t.Fatalf("key %d routed to the dead node", k)
		case all[k] != "c" && down[k] != all[k]:
			t.Fatalf("key %d of a live node moved from %s to %s", k, all[k], down[k])
		}
	}
	if got := r.Pick("x", func(int) bool { return false }); got != -1 {
		t.Errorf("no live node: Pick = %d, want -1", got)
	}
	if got := (&Ring{}).Pick("x", nil); got != -1 {
		t.Errorf("empty ring: Pick = %d, want -1", got)
	}
}

func BenchmarkPick(b *testing.B) {
	r := New("a", "b", "c", "d", "e")
	for i := 0; b.Loop(); i++ {
		r.Pick("video:12345678", nil)
	}
}
