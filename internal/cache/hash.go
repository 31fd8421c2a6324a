package cache

import (
	"hash/maphash"
	"math/bits"
	"math/rand/v2"
	"reflect"
	"unsafe"
)

// hasher hashes keys with a per-cache random seed, so that collisions
// cannot be chosen from outside. Integer keys (of any integer kind, named
// or not) take a two-multiply mixer of the seeded value, a few
// nanoseconds; other keys go through maphash.Comparable.
type hasher[K comparable] struct {
	seed    maphash.Seed
	intSeed uint64
	isInt   bool
}

func newHasher[K comparable]() hasher[K] {
	h := hasher[K]{seed: maphash.MakeSeed(), intSeed: rand.Uint64()}
	switch reflect.TypeFor[K]().Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		h.isInt = true
	}
	return h
}

// hash returns the 64-bit hash of k.
func (h *hasher[K]) hash(k K) uint64 {
	if h.isInt {
		return mixInt(h.intSeed, intBits(k))
	}
	return maphash.Comparable(h.seed, k)
}

// mixInt is a seeded 64-bit mixer (two folded 128-bit multiplications,
// as in wyhash): every input bit affects every output bit.
func mixInt(seed, v uint64) uint64 {
	hi, lo := bits.Mul64(v^seed, 0x2d35_8dcc_aa6c_78a5)
	hi, lo = bits.Mul64(hi^lo, 0x8bb8_4b93_962e_acc9)
	return hi ^ lo
}

// intBits returns the bits of the integer k, zero-extended. K must be of an
// integer kind (hasher.isInt).
func intBits[K comparable](k K) uint64 {
	switch unsafe.Sizeof(k) {
	case 8:
		return *(*uint64)(unsafe.Pointer(&k))
	case 4:
		return uint64(*(*uint32)(unsafe.Pointer(&k)))
	case 2:
		return uint64(*(*uint16)(unsafe.Pointer(&k)))
	default:
		return uint64(*(*uint8)(unsafe.Pointer(&k)))
	}
}

// stripeHash returns a hash of the calling goroutine's stack address: the
// same while the goroutine runs (unless its stack moves), and different for
// goroutines running at the same time, so it spreads concurrent readers
// over the read buffers without a random number per call and keeps each
// reader on one buffer's cache lines. The bits below the smallest stack
// size (2 KiB) depend on the call depth, not the goroutine, and are
// dropped.
func stripeHash() uint32 {
	var x byte
	return uint32(mixInt(0, uint64(uintptr(unsafe.Pointer(&x)))>>11))
}
