// Command abr-bench measures the CPU cost of internal/abr's one-process
// split ladder (A) against one ffmpeg process per rung run in parallel (B),
// with identical encoder settings: both command lines come from
// abr.ArgsHLS, B's with a single rung each. run.sh makes the source clip
// and calls this program; see README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/blueprint-media/blueprint/internal/abr"
)

type run struct {
	cpu, wall time.Duration
	rssMB     int64 // sum of the processes' peak RSS (they run at once)
	bytes     int64
}

func main() {
	src := flag.String("src", "", "source clip (required)")
	work := flag.String("work", "", "scratch directory (default: a new temp dir)")
	rounds := flag.Int("rounds", 3, "rounds of A and B, interleaved")
	preset := flag.String("preset", abr.DefaultPreset, "x264 preset")
	printArgs := flag.Bool("print-args", false, "print the ffmpeg arguments of A, one per line, and exit")
	flag.Parse()
	if *src == "" {
		log.Fatal("-src is required")
	}
	ctx := context.Background()
	info, err := abr.Probe(ctx, abr.Tools{}, abr.Limits{}, *src)
	if err != nil {
		log.Fatal(err)
	}
	if *work == "" {
		if *work, err = os.MkdirTemp("", "abr-bench-"); err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(*work)
	}
	rungs := abr.Ladder(info)
	optsA := abr.TranscodeOptions{Src: *src, OutDir: filepath.Join(*work, "A"), Info: info, Rungs: rungs, Preset: *preset}
	argsA := abr.ArgsHLS(optsA)
	if *printArgs {
		fmt.Println(strings.Join(argsA, "\n"))
		return
	}
	var argsB [][]string
	var dirsB []string
	for i, r := range rungs {
		o := optsA
		o.Rungs = []abr.Rung{r}
		o.OutDir = filepath.Join(*work, fmt.Sprintf("B%d", i))
		argsB = append(argsB, abr.ArgsHLS(o))
		dirsB = append(dirsB, o.OutDir)
	}

	var names []string
	for _, r := range rungs {
		names = append(names, fmt.Sprintf("%s %dk", r.Name, r.VideoKbps))
	}
	fmt.Printf("source: %dx%d %.1f s %.0f fps audio=%v; ladder: %s; preset %s\n",
		info.Width, info.Height, info.Duration, info.FPS, info.HasAudio, strings.Join(names, ", "), *preset)
	fmt.Printf("A: ffmpeg %s\n\n", shellQuote(argsA))

	var as, bs []run
	fmt.Printf("%-5s %-3s %9s %8s %10s %10s\n", "round", "", "CPU s", "wall s", "RSS", "out bytes")
	for round := 1; round <= *rounds; round++ {
		a := mustRun([][]string{argsA}, []string{optsA.OutDir})
		as = append(as, a)
		fmt.Printf("%-5d %-3s %9.2f %8.2f %7d MB %10d\n", round, "A", a.cpu.Seconds(), a.wall.Seconds(), a.rssMB, a.bytes)
		b := mustRun(argsB, dirsB)
		bs = append(bs, b)
		fmt.Printf("%-5d %-3s %9.2f %8.2f %7d MB %10d\n", round, "B", b.cpu.Seconds(), b.wall.Seconds(), b.rssMB, b.bytes)
	}
	ma, mb := median(as), median(bs)
	fmt.Printf("\nmedian of %d rounds        CPU s (user+sys)   wall s\n", *rounds)
	fmt.Printf("A one process, split=%d    %8.2f          %6.2f   (wall = start to end of A)\n", len(rungs), ma.cpu.Seconds(), ma.wall.Seconds())
	fmt.Printf("B %d processes, parallel  %8.2f          %6.2f\n", len(rungs), mb.cpu.Seconds(), mb.wall.Seconds())
	fmt.Printf("ratio B/A                  %8.2f          %6.2f\n", mb.cpu.Seconds()/ma.cpu.Seconds(), mb.wall.Seconds()/ma.wall.Seconds())
}

// mustRun starts one ffmpeg per argument list at once, waits for all, and
// sums their CPU time (user+sys from the kernel's rusage of each child).
func mustRun(argLists [][]string, dirs []string) run {
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			log.Fatal(err)
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			log.Fatal(err)
		}
	}
	start := time.Now()
	cmds := make([]*exec.Cmd, len(argLists))
	for i, args := range argLists {
		cmd := exec.Command("ffmpeg", args...)
		cmd.Dir = dirs[i]
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			log.Fatal(err)
		}
		cmds[i] = cmd
	}
	var r run
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			log.Fatalf("ffmpeg: %v", err)
		}
		ps := cmd.ProcessState
		r.cpu += ps.UserTime() + ps.SystemTime()
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			r.rssMB += int64(ru.Maxrss) / 1024 // KiB on Linux
		}
	}
	r.wall = time.Since(start)
	for _, d := range dirs {
		_ = filepath.WalkDir(d, func(_ string, e fs.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				if fi, err := e.Info(); err == nil {
					r.bytes += fi.Size()
				}
			}
			return nil
		})
	}
	return r
}

// median takes the median of each field independently.
func median(rs []run) run {
	pick := func(f func(run) int64) int64 {
		v := make([]int64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return run{
		cpu:   time.Duration(pick(func(r run) int64 { return int64(r.cpu) })),
		wall:  time.Duration(pick(func(r run) int64 { return int64(r.wall) })),
		rssMB: pick(func(r run) int64 { return r.rssMB }),
		bytes: pick(func(r run) int64 { return r.bytes }),
	}
}

func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " ;[]()*%$'\"") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
