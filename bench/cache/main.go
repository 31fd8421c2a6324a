// Command cache compares the hit ratios of Blueprint's cache policies with
// plain LRU, otter v2 and ristretto v2 on every trace of the shared trace
// set, at two capacities each, in one run. See README.md.
//
//	go run ./bench/cache                      # all traces, table on stdout
//	go run ./bench/cache -traces DIR -csv     # CSV instead
//	go run ./bench/cache -report bench.txt    # summarize `go test -bench` output
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/blueprint-media/blueprint/internal/cache"
	"github.com/blueprint-media/blueprint/internal/cache/sim"
	"github.com/blueprint-media/blueprint/internal/cache/trace"
)

// workload is one trace at the capacities traces/README.md gives for it.
type workload struct {
	file  string
	sizes []int
}

func workloads() []workload {
	return []workload{
		{"gli.gz", []int{1000, 2000}},
		{"loop.gz", []int{1000, 2000}},
		{"oltp.gz", []int{1000, 2000}},
		{"p3.gz", []int{100_000, 400_000}},
		{"trace_vaultservice.gz", []int{1000, 2000}},
	}
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench/cache", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		dir      = fs.String("traces", defaultTraces(), "directory of the shared traces")
		only     = fs.String("only", "", "comma-separated trace file names to run (default: all)")
		csv      = fs.Bool("csv", false, "print CSV instead of a table")
		report   = fs.String("report", "", "summarize this `go test -bench` output file instead")
		policies = fs.String("policies", strings.Join(cache.PolicyNames(), ","), "our policies to run")
		runs     = fs.Int("runs", 3, "replays of the randomized caches (ours/cache, otter, ristretto), averaged")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *report != "" {
		if err := summarizeBench(*report, stdout); err != nil {
			fmt.Fprintln(stderr, "bench/cache:", err)
			return 1
		}
		return 0
	}
	if *runs < 1 {
		fmt.Fprintln(stderr, "bench/cache: -runs must be at least 1")
		return 2
	}
	if err := hitRatios(*dir, *only, strings.Split(*policies, ","), *runs, *csv, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "bench/cache:", err)
		return 1
	}
	return 0
}

// defaultTraces returns ../shared/traces relative to the module root, which
// is the working directory of `go run ./bench/cache`.
func defaultTraces() string {
	return filepath.Join("..", "shared", "traces")
}

// contender is one column of the table.
type contender struct {
	name string
	run  func(keys []uint64, size int) (hits uint64)
	// randomized caches seed their hashes at random: their hit ratios
	// vary a little from run to run and are averaged over -runs replays.
	randomized bool
}

func contenders(policies []string) []contender {
	var cs []contender
	for _, p := range policies {
		cs = append(cs, contender{name: "ours/" + p, run: func(keys []uint64, size int) uint64 {
			r, err := sim.Run(keys, p, size)
			if err != nil {
				panic(err)
			}
			return r.Hits
		}})
	}
	cs = append(cs,
		contender{"ours/cache", replayCache, true},
		contender{"ours/async", replayCacheAsync, true},
		contender{"otter", replayOtter, true},
		contender{"ristretto", replayRistretto, true},
	)
	return cs
}

// referenceLRU holds the LRU hit ratios of traces/README.md, in percent
// with two decimals: the run fails if ours/lru does not reproduce them,
// since then the readers or the simulator are wrong.
func referenceLRU() map[string]string {
	return map[string]string{
		"gli.gz@1000": "11.21", "gli.gz@2000": "57.41",
		"loop.gz@1000": "0.00", "loop.gz@2000": "99.80",
		"oltp.gz@1000": "32.83", "oltp.gz@2000": "42.47",
		"p3.gz@100000": "29.34", "p3.gz@400000": "75.30",
		"trace_vaultservice.gz@1000": "33.33", "trace_vaultservice.gz@2000": "33.33",
	}
}

func hitRatios(dir, only string, policies []string, runs int, csv bool, stdout, stderr io.Writer) error {
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("trace directory: %w (give -traces)", err)
	}
	cs := contenders(policies)
	var out io.Writer = stdout
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	sep := "\t"
	if csv {
		sep = ","
	} else {
		out = tw
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(stderr, "# %s, nproc %d, GOMAXPROCS %d, %s, load average %s\n", time.Now().UTC().Format(time.RFC3339),
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), strings.Join(strings.Fields(string(load))[:min(3, len(strings.Fields(string(load))))], " "))
	header := []string{"trace", "size", "requests"}
	for _, c := range cs {
		header = append(header, c.name)
	}
	header = append(header, "tinylfu−otter", "cache−otter", "tinylfu−ristretto", "tinylfu−lru")
	fmt.Fprintln(out, strings.Join(header, sep)+sep)
	for _, w := range workloads() {
		if only != "" && !strings.Contains(","+only+",", ","+w.file+",") {
			continue
		}
		keys, err := trace.Load(filepath.Join(dir, w.file), "", 0)
		if err != nil {
			return err
		}
		for _, size := range w.sizes {
			row := []string{strings.TrimSuffix(w.file, ".gz"), fmt.Sprint(size), fmt.Sprint(len(keys))}
			ratio := map[string]float64{}
			for _, c := range cs {
				start := time.Now()
				n := 1
				if c.randomized {
					n = runs
				}
				var each []string
				sum := 0.0
				for range n {
					r := 100 * float64(c.run(keys, size)) / float64(len(keys))
					sum += r
					each = append(each, fmt.Sprintf("%.2f", r))
				}
				ratio[c.name] = sum / float64(n)
				row = append(row, fmt.Sprintf("%.2f", ratio[c.name]))
				fmt.Fprintf(stderr, "# %s @%d %s: %.2f %% (runs %s) in %s\n", w.file, size, c.name, ratio[c.name],
					strings.Join(each, " "), time.Since(start).Round(time.Millisecond))
			}
			if want, ok := referenceLRU()[fmt.Sprintf("%s@%d", w.file, size)]; ok {
				if got := fmt.Sprintf("%.2f", ratio["ours/lru"]); ratio["ours/lru"] != 0 || want == "0.00" {
					if got != want {
						return fmt.Errorf("%s @%d: LRU %s %%, the reference is %s %%: the reader or the simulator is wrong", w.file, size, got, want)
					}
				}
			}
			ours := ratio["ours/"+cache.PolicyTinyLFU]
			row = append(row,
				fmt.Sprintf("%+.2f", ours-ratio["otter"]),
				fmt.Sprintf("%+.2f", ratio["ours/cache"]-ratio["otter"]),
				fmt.Sprintf("%+.2f", ours-ratio["ristretto"]),
				fmt.Sprintf("%+.2f", ours-ratio["ours/lru"]))
			fmt.Fprintln(out, strings.Join(row, sep)+sep)
		}
	}
	return tw.Flush()
}
