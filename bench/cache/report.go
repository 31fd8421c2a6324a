package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// benchLine matches a result line of BenchmarkThroughput, such as
// "BenchmarkThroughput/reads=90/otter-2  9150936  132.5 ns/op ...".
const benchLine = `^BenchmarkThroughput/reads=(\d+)/(\w+?)(?:-(\d+))?\s+\d+\s+([\d.]+) ns/op.*?\s([\d.]+) cpu-ns/op`

// summarizeBench reads `go test -bench Throughput` output (any -count) from
// path and prints, per read share and GOMAXPROCS, two tables: the median
// wall-clock throughput (million ops/s) of each cache and the ratios of
// ours to the peers (above 1: ours is faster), then the same from the median
// CPU time per operation (million ops per CPU-second).
func summarizeBench(path string, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	type key struct {
		reads, cpu int
		cache      string
	}
	re := regexp.MustCompile(benchLine)
	samples := map[key][]float64{} // wall ns/op
	cpuSamples := map[key][]float64{}
	var rows []key
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := re.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		reads, _ := strconv.Atoi(m[1])
		cpu := 1
		if m[3] != "" {
			cpu, _ = strconv.Atoi(m[3])
		}
		ns, _ := strconv.ParseFloat(m[4], 64)
		cpuNs, _ := strconv.ParseFloat(m[5], 64)
		k := key{reads, cpu, m[2]}
		if _, ok := samples[k]; !ok {
			rows = append(rows, k)
		}
		samples[k] = append(samples[k], ns)
		cpuSamples[k] = append(cpuSamples[k], cpuNs)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if len(rows) == 0 {
		return fmt.Errorf("no BenchmarkThroughput results in %s", path)
	}
	median := func(from map[key][]float64, k key) float64 {
		s := slices.Clone(from[k])
		slices.Sort(s)
		if len(s)%2 == 1 {
			return s[len(s)/2]
		}
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	type mix struct{ reads, cpu int }
	var mixes []mix
	for _, k := range rows {
		if m := (mix{k.reads, k.cpu}); !slices.Contains(mixes, m) {
			mixes = append(mixes, m)
		}
	}
	slices.SortFunc(mixes, func(a, b mix) int {
		if a.reads != b.reads {
			return b.reads - a.reads
		}
		return a.cpu - b.cpu
	})
	for _, table := range []struct {
		title string
		from  map[key][]float64
	}{
		{"wall clock, million ops/s", samples},
		{"CPU time, million ops per CPU-second", cpuSamples},
	} {
		fmt.Fprintf(w, "\n%s (medians):\n", table.title)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "reads %\tgoroutines\tours\tours async\totter\tristretto\tours/otter\tours/ristretto\tasync/otter\tasync/ristretto\truns\t")
		for _, m := range mixes {
			ops := map[string]float64{}
			runs := 0
			for _, c := range []string{"ours", "ours_async", "otter", "ristretto"} {
				k := key{m.reads, m.cpu, c}
				if len(table.from[k]) > 0 {
					ops[c] = 1e9 / median(table.from, k)
					runs = max(runs, len(table.from[k]))
				}
			}
			cell := func(c string) string {
				if ops[c] == 0 {
					return "-"
				}
				return strconv.FormatFloat(ops[c]/1e6, 'f', 2, 64)
			}
			ratio := func(ours, c string) string {
				if ops[c] == 0 || ops[ours] == 0 {
					return "-"
				}
				return strconv.FormatFloat(ops[ours]/ops[c], 'f', 2, 64) + "×"
			}
			fmt.Fprintln(tw, strings.Join([]string{strconv.Itoa(m.reads), strconv.Itoa(m.cpu),
				cell("ours"), cell("ours_async"), cell("otter"), cell("ristretto"),
				ratio("ours", "otter"), ratio("ours", "ristretto"),
				ratio("ours_async", "otter"), ratio("ours_async", "ristretto"), strconv.Itoa(runs)}, "\t")+"\t")
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}
