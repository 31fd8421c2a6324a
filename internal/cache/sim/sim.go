// Package sim replays cache-access traces against the policies of package
// cache and reports their hit ratios. Main is the `blueprint cache sim`
// command; Simulate is its engine, used by the tests and bench/cache.
package sim

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/blueprint-media/blueprint/internal/cache"
	"github.com/blueprint-media/blueprint/internal/cache/trace"
)

// Result is the outcome of one replay.
type Result struct {
	Policy   string
	Size     int
	Requests uint64
	Hits     uint64
}

// HitRatio returns hits / requests, cold misses included, or 0 for an empty
// trace.
func (r Result) HitRatio() float64 {
	if r.Requests == 0 {
		return 0
	}
	return float64(r.Hits) / float64(r.Requests)
}

// Hash is the key hash the simulator gives policies: the splitmix64
// finalizer, fixed so that replays are deterministic.
func Hash(key uint64) uint64 {
	key ^= key >> 30
	key *= 0xbf58_476d_1ce4_e5b9
	key ^= key >> 27
	key *= 0x94d0_49bb_1331_11eb
	return key ^ key>>31
}

// Simulate replays keys against p, every key with cost 1: a resident key is
// a hit (Policy.Hit); any other key is a miss and is added (Policy.Add).
func Simulate(keys []uint64, p cache.Policy[uint64]) Result {
	resident := make(map[uint64]*cache.Node[uint64], p.Len())
	var (
		evicted []*cache.Node[uint64]
		free    []*cache.Node[uint64]
		hits    uint64
	)
	for _, k := range keys {
		if n, ok := resident[k]; ok {
			hits++
			p.Hit(n)
			continue
		}
		var n *cache.Node[uint64]
		if len(free) > 0 {
			n, free = free[len(free)-1], free[:len(free)-1]
			*n = cache.Node[uint64]{}
		} else {
			n = new(cache.Node[uint64])
		}
		n.Key, n.Hash, n.Cost = k, Hash(k), 1
		resident[k] = n
		evicted = p.Add(n, evicted[:0])
		for _, e := range evicted {
			delete(resident, e.Key)
		}
		free = append(free, evicted...)
	}
	return Result{Policy: p.Name(), Requests: uint64(len(keys)), Hits: hits}
}

// Run replays keys against a new policy of the given name bounded to size
// entries.
func Run(keys []uint64, policy string, size int) (Result, error) {
	p, err := cache.NewPolicy[uint64](policy, cache.Limits{MaxEntries: size}, 1)
	if err != nil {
		return Result{}, err
	}
	r := Simulate(keys, p)
	r.Size = size
	return r, nil
}

const usage = `usage: blueprint cache sim --trace FILE [--format arc|lirs|corda] [--policy P[,P...]] [--size N[,N...]] [--limit N]

Replays a cache-access trace (gzip or plain; ARC, LIRS or Corda format, see
internal/cache/README.md) against eviction policies of entry-count capacity
N, and prints each policy's hit ratio: hits / requests, cold misses included.

Policies: %s, or "all".
`

// Main runs `blueprint cache sim` with args (without the command words),
// writing results to stdout and errors to stderr. It returns the process
// exit status: 0 on success, 1 on a failure, 2 on bad usage.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cache sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, usage, strings.Join(cache.PolicyNames(), ", "))
		fs.PrintDefaults()
	}
	var (
		path     = fs.String("trace", "", "trace `file` (required)")
		format   = fs.String("format", "", "trace format: arc, lirs or corda (default: from the file name)")
		policies = fs.String("policy", "lru,"+cache.PolicyTinyLFU, "comma-separated `policies`, or all")
		sizes    = fs.String("size", "1000", "comma-separated capacities in `entries`")
		limit    = fs.Int("limit", 0, "replay only the first `n` requests (0: all)")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "blueprint cache sim:", err)
		return 2
	}
	if fs.NArg() > 0 {
		return fail(fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	if *path == "" {
		return fail(errors.New("--trace is required"))
	}
	var f trace.Format
	if *format != "" {
		var err error
		if f, err = trace.ParseFormat(*format); err != nil {
			return fail(err)
		}
	}
	names, err := parsePolicies(*policies)
	if err != nil {
		return fail(err)
	}
	caps, err := parseSizes(*sizes)
	if err != nil {
		return fail(err)
	}
	keys, err := trace.Load(*path, f, *limit)
	if err != nil {
		fmt.Fprintln(stderr, "blueprint cache sim:", err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "policy\tsize\trequests\thits\thit ratio\ttime\t\n")
	for _, size := range caps {
		for _, name := range names {
			start := time.Now()
			r, err := Run(keys, name, size)
			if err != nil {
				return fail(err)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.2f %%\t%s\t\n", r.Policy, r.Size, r.Requests, r.Hits,
				100*r.HitRatio(), time.Since(start).Round(time.Millisecond))
		}
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintln(stderr, "blueprint cache sim:", err)
		return 1
	}
	return 0
}

func parsePolicies(s string) ([]string, error) {
	if s == "all" {
		return cache.PolicyNames(), nil
	}
	var names []string
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if _, err := cache.NewPolicy[uint64](name, cache.Limits{MaxEntries: 1}, 1); err != nil {
			return nil, err
		}
		names = append(names, name)
	}
	return names, nil
}

func parseSizes(s string) ([]int, error) {
	var sizes []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("--size: %q is not a positive entry count", f)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}
