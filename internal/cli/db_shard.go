package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/sqlstore/shard"
)

const moveShardUsage = `usage:
  blueprint db move-shard --catalog URL --shard N --to CLUSTER [--keep-source] [--verify-after-flip] [--pause-budget 10s]
  blueprint db move-shard --catalog URL --list
  blueprint db move-shard --catalog URL --abort --shard N
  blueprint db move-shard --catalog URL --add-cluster NAME=URL [--add-cluster NAME=URL ...]

--catalog defaults to $BLUEPRINT_SHARD_CATALOG. --add-cluster registers a
cluster; the first registration(s) assign the 4096 logical shards evenly.
A move that was interrupted resumes when the same command is run again.
`

type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

// dbMoveShard runs "blueprint db move-shard": it moves one logical shard
// to another cluster online, lists the shard map, aborts an unfinished
// move, or registers clusters.
func dbMoveShard(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("db move-shard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, moveShardUsage); fs.PrintDefaults() }
	catalog := fs.String("catalog", os.Getenv("BLUEPRINT_SHARD_CATALOG"), "catalog database URL")
	shardN := fs.Int("shard", -1, "logical shard to move (0..4095)")
	to := fs.String("to", "", "target cluster name")
	list := fs.Bool("list", false, "print the shard map and recent moves")
	abort := fs.Bool("abort", false, "undo the unfinished move of --shard")
	keep := fs.Bool("keep-source", false, "keep the shard's rows (fenced) on the source after the move")
	after := fs.Bool("verify-after-flip", false, "compare checksums after the flip (on a snapshot) instead of in the pause: shorter pause for big shards, no automatic undo")
	budget := fs.Duration("pause-budget", 10*time.Second, "give the cutover up (writes resume on the source) if it takes longer")
	var add repeated
	fs.Var(&add, "add-cluster", "register a cluster as NAME=PRIMARY_URL (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *catalog == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cat, err := shard.OpenCatalog(ctx, *catalog)
	if err != nil {
		fmt.Fprintln(stderr, "blueprint db move-shard:", err)
		return 1
	}
	defer cat.Close()
	fail := func(err error) int {
		fmt.Fprintln(stderr, "blueprint db move-shard:", err)
		return 1
	}
	switch {
	case len(add) > 0:
		var ccs []shard.ClusterConfig
		for _, a := range add {
			name, u, ok := strings.Cut(a, "=")
			if !ok || name == "" || u == "" {
				fmt.Fprintf(stderr, "blueprint db move-shard: --add-cluster wants NAME=URL, got %q\n", a)
				return 2
			}
			ccs = append(ccs, shard.ClusterConfig{Name: name, Primary: u})
		}
		v, err := cat.Init(ctx, ccs)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "registered %d cluster(s); map version %d\n", len(ccs), v)
		return printMap(ctx, cat, stdout, stderr)
	case *list:
		return printMap(ctx, cat, stdout, stderr)
	case *abort:
		if *shardN < 0 {
			fs.Usage()
			return 2
		}
		if err := shard.Abort(ctx, cat, *shardN, shard.MoveOptions{Progress: printProgress(stdout)}); err != nil {
			return fail(err)
		}
		return 0
	}
	if *shardN < 0 || *to == "" {
		fs.Usage()
		return 2
	}
	res, err := shard.Move(ctx, cat, shard.MoveOptions{Shard: *shardN, To: *to, KeepSource: *keep, VerifyAfterFlip: *after, PauseBudget: *budget, Progress: printProgress(stdout)})
	if err != nil {
		fmt.Fprintln(stderr, "blueprint db move-shard:", err)
		if k := errs.KindOf(err); k != errs.Invalid && k != errs.Conflict && k != errs.NotFound {
			fmt.Fprintf(stderr, "the move is recorded in the catalog: run the same command again to resume it, or --abort --shard %d to undo it\n", *shardN)
		}
		return 1
	}
	fmt.Fprintf(stdout, "moved shard %d from %s to %s: %d rows in %v (%.0f rows/s)\n", res.Shard, res.From, res.To, res.Rows, res.Copy.Round(time.Millisecond), res.RowsPerSecond())
	fmt.Fprintf(stdout, "write pause %v (fence %v, catch-up %v, verify %v); map version %d\n", res.Pause.Round(time.Microsecond),
		res.Fence.Round(time.Microsecond), res.CatchUp.Round(time.Microsecond), res.Verify.Round(time.Microsecond), res.Version)
	for _, tc := range res.Tables {
		fmt.Fprintf(stdout, "  %-32s %10d rows  checksum %s (equal on both sides)\n", tc.Table, tc.Rows, tc.Checksum)
	}
	return 0
}

func printProgress(w io.Writer) func(shard.Progress) {
	return func(p shard.Progress) {
		fmt.Fprintf(w, "%9s  %-8s %s\n", p.Elapsed.Round(time.Millisecond), p.Step, p.Msg)
	}
}

func printMap(ctx context.Context, cat *shard.Catalog, stdout, stderr io.Writer) int {
	m, err := cat.Load(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "blueprint db move-shard:", err)
		return 1
	}
	fmt.Fprintf(stdout, "shard map version %d\n", m.Version)
	for _, name := range m.ClusterNames() {
		cc := m.Clusters[name]
		owned := m.ShardsOf(name)
		fmt.Fprintf(stdout, "cluster %s  primary %s  replicas %d  shards %d: %s\n", name, sqlstore.Redact(cc.Primary), len(cc.Replicas), len(owned), shard.Ranges(owned))
	}
	for s, st := range m.State {
		if st != shard.StateActive {
			fmt.Fprintf(stdout, "shard %d on %s is %s\n", s, m.Owner[s], st)
		}
	}
	moves, err := cat.Moves(ctx, 10)
	if err != nil {
		fmt.Fprintln(stderr, "blueprint db move-shard:", err)
		return 1
	}
	if len(moves) > 0 {
		fmt.Fprintln(stdout, "recent moves:")
	}
	for _, mv := range moves {
		state := "unfinished, at step " + mv.Step
		if mv.FinishedAt != nil {
			state = mv.Step
			if mv.PauseMS != nil && mv.Rows != nil && mv.Step == "done" {
				state += fmt.Sprintf(", %d rows, pause %.1f ms", *mv.Rows, *mv.PauseMS)
			}
		}
		fmt.Fprintf(stdout, "  #%d shard %d %s → %s started %s: %s\n", mv.ID, mv.Shard, mv.From, mv.To, mv.StartedAt.UTC().Format(time.RFC3339), state)
	}
	return 0
}
