// Command search benchmarks Blueprint's search drivers side by side with
// SQLite FTS5 on one generated corpus, in one run: bulk index throughput
// and size, single-thread query latency (p50/p99) on four query sets
// (exact words, prefixes as typed, one typo, two typos), recall@10 of the
// intended video, and 4-way concurrent queries per second. It prints the
// figures and the ratios of the Bleve driver to each peer.
//
//	go run ./bench/search                 # 100k docs, throwaway PostgreSQL
//	go run ./bench/search -docs 20000 -pg postgres://...
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/blueprint-media/blueprint/internal/search"
)

const batchSize = 1000

// cleanups run at exit, also when the run fails (fatalf): a throwaway
// PostgreSQL must not outlive the benchmark.
var cleanups []func()

func cleanup() {
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	cleanups = nil
}

func fatalf(format string, args ...any) {
	cleanup()
	log.Fatalf(format, args...)
}

type setResult struct {
	p50, p99 time.Duration
	recall   float64 // share of queries whose intended document is in the top 10
	empty    float64 // share of queries with no hit at all
	misses   string  // typo sets: missed queries by kind of edit, e.g. "delete 2/250"
}

type engineResult struct {
	name     string
	docsPerS float64
	loadTook time.Duration
	size     int64
	sets     map[string]setResult
	qps      float64
}

func main() {
	docs := flag.Int("docs", 100_000, "documents in the corpus")
	nq := flag.Int("queries", 1000, "queries per query set")
	descMin := flag.Int("desc-min", 20, "fewest description words")
	descMax := flag.Int("desc-max", 80, "most description words")
	pgDSN := flag.String("pg", "", "PostgreSQL DSN to use (default: start a throwaway server with initdb/pg_ctl)")
	only := flag.String("engines", "bleve,bleve-plain,postgres,sqlite-fts5", "engines to run")
	seed := flag.Uint64("seed", 42, "corpus seed")
	concurrency := flag.Int("concurrency", 4, "goroutines of the concurrent phase")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	log.SetFlags(0)
	ctx := context.Background()
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)

	start := time.Now()
	c := newCorpus(*seed, *docs, *descMin, *descMax, *nq, now)
	log.Printf("corpus: %d docs, %d queries per set, generated in %v", len(c.docs), *nq, time.Since(start).Round(time.Millisecond))

	tmp, err := os.MkdirTemp("", "bench-search-")
	if err != nil {
		fatalf("%v", err)
	}
	cleanups = append(cleanups, func() { os.RemoveAll(tmp) })
	defer cleanup()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() { <-sigs; fatalf("interrupted") }()

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fatalf("%v", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatalf("%v", err)
		}
		cleanups = append(cleanups, func() { pprof.StopCPUProfile(); f.Close() })
	}

	var results []engineResult
	for _, name := range strings.Split(*only, ",") {
		var e engine
		switch name {
		case "bleve":
			path := filepath.Join(tmp, "bleve")
			b, err := search.OpenBleve(search.BleveConfig{Path: path})
			if err != nil {
				fatalf("%v", err)
			}
			e = &indexEngine{label: "bleve", idx: b, sizeF: func(context.Context) (int64, error) { return dirSize(path) }}
		case "postgres":
			dsn := *pgDSN
			if dsn == "" {
				d, stop, err := startPostgres()
				if err != nil {
					fatalf("%v", err)
				}
				cleanups = append(cleanups, stop)
				dsn = d
			}
			db, err := sql.Open("pgx", dsn)
			if err != nil {
				fatalf("%v", err)
			}
			defer db.Close()
			db.SetMaxOpenConns(*concurrency + 2)
			p, err := search.NewPostgres(ctx, db, search.Ranking{})
			if err != nil {
				fatalf("%v", err)
			}
			e = &indexEngine{label: "postgres", idx: p, sizeF: func(ctx context.Context) (int64, error) {
				var n int64
				err := db.QueryRowContext(ctx, `SELECT pg_total_relation_size('search_docs') + pg_total_relation_size('search_words')`).Scan(&n)
				return n, err
			}}
		case "bleve-plain":
			p, err := newPlainBleve(filepath.Join(tmp, "bleve-plain"))
			if err != nil {
				fatalf("%v", err)
			}
			e = p
		case "sqlite-fts5":
			f, err := newFTS5(filepath.Join(tmp, "fts5.db"), search.DefaultRanking)
			if err != nil {
				fatalf("%v", err)
			}
			e = f
		default:
			fatalf("unknown engine %q", name)
		}
		results = append(results, run(ctx, e, c, now, *concurrency))
		e.close()
	}
	report(os.Stdout, results, *docs, *nq)
}

func run(ctx context.Context, e engine, c *corpus, now time.Time, concurrency int) engineResult {
	r := engineResult{name: e.name(), sets: map[string]setResult{}}
	log.Printf("%s: indexing %d docs in batches of %d", e.name(), len(c.docs), batchSize)
	start := time.Now()
	if err := e.load(ctx, c.docs); err != nil {
		fatalf("%s: load: %v", e.name(), err)
	}
	r.loadTook = time.Since(start)
	r.docsPerS = float64(len(c.docs)) / r.loadTook.Seconds()
	if s, err := e.size(ctx); err == nil {
		r.size = s
	}
	log.Printf("%s: %.0f docs/s (%v), %.1f MB", e.name(), r.docsPerS, r.loadTook.Round(time.Millisecond), float64(r.size)/1e6)

	var all []query
	for _, set := range querySets {
		qs := c.queries[set]
		all = append(all, qs...)
		// Warm-up pass, then the measured pass.
		for _, q := range qs {
			if _, _, err := e.search(ctx, q.text, now); err != nil {
				fatalf("%s: %q: %v", e.name(), q.text, err)
			}
		}
		lat := make([]time.Duration, 0, len(qs))
		found, empty := 0, 0
		kinds, missed := map[string]int{}, map[string]int{}
		for _, q := range qs {
			t0 := time.Now()
			ids, _, err := e.search(ctx, q.text, now)
			lat = append(lat, time.Since(t0))
			if err != nil {
				fatalf("%s: %q: %v", e.name(), q.text, err)
			}
			if q.kind != "" {
				kinds[q.kind]++
			}
			if slices.Contains(ids, q.target) {
				found++
			} else if q.kind != "" {
				missed[q.kind]++
			}
			if len(ids) == 0 {
				empty++
			}
		}
		slices.Sort(lat)
		r.sets[set] = setResult{
			p50: lat[len(lat)/2], p99: lat[len(lat)*99/100],
			recall: float64(found) / float64(len(qs)), empty: float64(empty) / float64(len(qs)),
			misses: missSummary(kinds, missed),
		}
		log.Printf("%s: %-6s p50 %v p99 %v recall@10 %.3f %s", e.name(), set, r.sets[set].p50, r.sets[set].p99, r.sets[set].recall, r.sets[set].misses)
	}
	// Concurrent phase: every query of every set once, spread over the
	// goroutines.
	var next atomic.Int64
	var wg sync.WaitGroup
	start = time.Now()
	for range concurrency {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if int(i) >= len(all) {
					return
				}
				if _, _, err := e.search(ctx, all[i].text, now); err != nil {
					fatalf("%s: %v", e.name(), err)
				}
			}
		})
	}
	wg.Wait()
	r.qps = float64(len(all)) / time.Since(start).Seconds()
	return r
}

// missSummary lists the misses of a typo set by kind of edit (the kinds of
// a two-typo query are summed per edit; "@0" marks an edit at the first
// letter, counted separately as "first letter").
func missSummary(kinds, missed map[string]int) string {
	if len(kinds) == 0 {
		return ""
	}
	all, miss := map[string]int{}, map[string]int{}
	for k, n := range kinds {
		for _, e := range strings.Split(k, "+") {
			base, first := strings.CutSuffix(e, "@0")
			all[base] += n
			miss[base] += missed[k]
			if first {
				all["first letter"] += n
				miss["first letter"] += missed[k]
			}
		}
	}
	var parts []string
	for _, k := range []string{"insert", "delete", "substitute", "transpose", "first letter"} {
		parts = append(parts, fmt.Sprintf("%s %d/%d", k, miss[k], all[k]))
	}
	return "misses by edit: " + strings.Join(parts, ", ")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }

func ratio(a, b float64) string {
	if b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func report(w *os.File, rs []engineResult, docs, nq int) {
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(w, "\n## bench/search — %s, %d docs, %d queries per set, GOMAXPROCS %d, nproc %d, loadavg %s\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), docs, nq, runtime.GOMAXPROCS(0), runtime.NumCPU(), strings.TrimSpace(string(load)))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "engine\tindex docs/s\tindex time\tsize MB\t"+strings.Join(func() []string {
		var h []string
		for _, s := range querySets {
			h = append(h, s+" p50 ms", s+" p99 ms", s+" recall@10")
		}
		return h
	}(), "\t")+"\t4-way QPS\t")
	for _, r := range rs {
		row := []string{r.name, fmt.Sprintf("%.0f", r.docsPerS), r.loadTook.Round(time.Millisecond).String(), fmt.Sprintf("%.1f", float64(r.size)/1e6)}
		for _, s := range querySets {
			x := r.sets[s]
			row = append(row, ms(x.p50), ms(x.p99), fmt.Sprintf("%.3f", x.recall))
		}
		row = append(row, fmt.Sprintf("%.0f", r.qps))
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, r := range rs {
		for _, s := range querySets {
			if m := r.sets[s].misses; m != "" {
				fmt.Fprintf(w, "%s %s %s\n", r.name, s, m)
			}
		}
	}
	var ours *engineResult
	for i := range rs {
		if rs[i].name == "bleve" {
			ours = &rs[i]
		}
	}
	if ours == nil {
		return
	}
	fmt.Fprintf(w, "\nRatios, Bleve driver / peer (throughput: higher is better for us; latency: lower is better for us):\n\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	hdr := "peer\tindex docs/s\t"
	for _, s := range querySets {
		hdr += s + " p50\t" + s + " p99\t"
	}
	fmt.Fprintln(tw, hdr+"4-way QPS\t")
	for _, r := range rs {
		if r.name == "bleve" {
			continue
		}
		row := []string{r.name, ratio(ours.docsPerS, r.docsPerS)}
		for _, s := range querySets {
			row = append(row, ratio(float64(ours.sets[s].p50), float64(r.sets[s].p50)), ratio(float64(ours.sets[s].p99), float64(r.sets[s].p99)))
		}
		row = append(row, ratio(ours.qps, r.qps))
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	tw.Flush()
}
