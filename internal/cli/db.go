package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/blueprint-media/blueprint/internal/config"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
	"github.com/blueprint-media/blueprint/internal/sqlstore/migrate"
	"github.com/blueprint-media/blueprint/internal/sqlstore/shard"
)

const dbUsage = `usage:
  blueprint db status [--json] [--config FILE | --database-url URL | --data-dir DIR]
  blueprint db migrate --to postgres://... [--from sqlite:PATH | --config FILE] [--force] [--batch N]
  blueprint db migrate --to-shards CATALOG_URL [--from postgres://... | --config FILE] [--keep-source] [--batch N]
  blueprint db move-shard --catalog URL (--shard N --to CLUSTER | --list | --abort --shard N | --add-cluster NAME=URL)
`

// dbCmd runs the database operations: status, migrate, move-shard.
func dbCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, dbUsage)
		return 2
	}
	switch args[0] {
	case "status":
		return dbStatus(args[1:], stdout, stderr)
	case "migrate":
		return dbMigrate(args[1:], stdout, stderr)
	case "move-shard":
		return dbMoveShard(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "blueprint db: unknown command %q\n\n%s", args[0], dbUsage)
	return 2
}

// splitFlags takes the command's own flags out of args (--name, --name=V,
// --name V; one or two dashes) and leaves the rest for config.Load.
// bools take no value.
func splitFlags(args []string, bools, values []string) (map[string]string, []string, error) {
	own := map[string]string{}
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") {
			rest = append(rest, a)
			continue
		}
		switch {
		case slices.Contains(bools, name):
			if !hasVal {
				val = "true"
			}
			own[name] = val
		case slices.Contains(values, name):
			if !hasVal {
				if i+1 >= len(args) {
					return nil, nil, fmt.Errorf("flag --%s needs a value", name)
				}
				i++
				val = args[i]
			}
			own[name] = val
		default:
			rest = append(rest, a)
		}
	}
	return own, rest, nil
}

// openConfigured opens the store the configuration names, refusing to
// create a SQLite file that does not exist yet. It returns the store and
// its URL (empty for the default file).
func openConfigured(ctx context.Context, args []string, stderr io.Writer) (*sqlstore.DB, string, error) {
	cfg, _, err := config.Load(args, os.Environ(), stderr)
	if err != nil {
		return nil, "", err
	}
	return openStore(ctx, cfg.Database.URL, filepath.Join(cfg.DataDir, "blueprint.db"))
}

func openStore(ctx context.Context, url, defaultPath string) (*sqlstore.DB, string, error) {
	if !sqlstore.IsPostgresURL(url) {
		path := defaultPath
		if url != "" {
			p, ok := strings.CutPrefix(url, "sqlite:")
			if !ok {
				return nil, "", errors.New("database URL must be sqlite:PATH, postgres://… or postgresql://…")
			}
			path = p
		}
		if _, err := os.Stat(path); err != nil {
			return nil, "", fmt.Errorf("no SQLite database at %s: %w", path, err)
		}
		if url == "" {
			url = "sqlite:" + path
		}
	}
	db, err := sqlstore.OpenURL(ctx, url, defaultPath)
	return db, url, err
}

// dbStatus prints the store's engine, URL (redacted), schema version,
// per-table row counts and, on PostgreSQL, the replicas and their lag.
func dbStatus(args []string, stdout, stderr io.Writer) int {
	own, rest, err := splitFlags(args, []string{"json"}, nil)
	if err != nil {
		fmt.Fprintf(stderr, "blueprint db status: %v\n\n%s", err, dbUsage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	db, url, err := openConfigured(ctx, rest, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "blueprint db status:", err)
		return 1
	}
	defer db.Close()
	st, err := db.Status(ctx, url)
	if err != nil {
		fmt.Fprintln(stderr, "blueprint db status:", err)
		return 1
	}
	if asJSON, _ := strconv.ParseBool(own["json"]); asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			fmt.Fprintln(stderr, "blueprint db status:", err)
			return 1
		}
		return 0
	}
	writeStatus(stdout, st)
	return 0
}

// writeStatus prints a store status as text.
func writeStatus(w io.Writer, st sqlstore.Status) {
	fmt.Fprintf(w, "engine          %s\nurl             %s\nschema version  %d\n\n", st.Engine, st.URL, st.Version)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "table\trows")
	var total int64
	for _, t := range st.Tables {
		fmt.Fprintf(tw, "%s\t%d\n", t.Name, t.Rows)
		total += t.Rows
	}
	fmt.Fprintf(tw, "(%d tables)\t%d\n", len(st.Tables), total)
	tw.Flush()
	if st.Engine != sqlstore.Postgres {
		return
	}
	if len(st.Replicas) == 0 {
		fmt.Fprintln(w, "\nreplicas        none attached")
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "replica\taddress\tstate\tsync\tlag bytes\tlag seconds")
	for _, r := range st.Replicas {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%.3f\n", r.Name, r.Addr, r.State, r.SyncState, r.LagBytes, r.LagSeconds)
	}
	tw.Flush()
}

// dbMigrate copies a SQLite install onto an empty PostgreSQL database and
// verifies the copy (migrate.Copy).
func dbMigrate(args []string, stdout, stderr io.Writer) int {
	own, rest, err := splitFlags(args, []string{"force", "keep-source"}, []string{"to", "to-shards", "from", "batch"})
	if err != nil {
		fmt.Fprintf(stderr, "blueprint db migrate: %v\n\n%s", err, dbUsage)
		return 2
	}
	if own["to-shards"] != "" {
		return dbSpread(own, rest, stdout, stderr)
	}
	to := own["to"]
	if !sqlstore.IsPostgresURL(to) {
		fmt.Fprintf(stderr, "blueprint db migrate: --to must be a postgres:// or postgresql:// URL\n\n%s", dbUsage)
		return 2
	}
	force, _ := strconv.ParseBool(own["force"])
	batch, ok := batchFlag(own, stderr)
	if !ok {
		return 2
	}
	if from := own["from"]; from != "" && !strings.HasPrefix(from, "sqlite:") {
		fmt.Fprintln(stderr, "blueprint db migrate: --from must be sqlite:PATH")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	src, code := migrateSource(ctx, own, rest, stderr, sqlstore.SQLite, "the source is already PostgreSQL; give --from sqlite:PATH")
	if src == nil {
		return code
	}
	defer src.Close()
	fmt.Fprintf(stderr, "copying %s to %s\n", src.Path(), sqlstore.Redact(to))
	dst, err := sqlstore.OpenPostgres(ctx, to)
	if err != nil {
		fmt.Fprintln(stderr, "blueprint db migrate: target:", err)
		return 1
	}
	defer dst.Close()
	rep, err := migrate.Copy(ctx, src, dst, migrate.Options{Batch: batch, Force: force, Progress: stderr, TargetURL: to})
	if err != nil {
		fmt.Fprintln(stderr, "blueprint db migrate:", err)
		return 1
	}
	rep.WriteTable(stdout)
	if !rep.OK() {
		fmt.Fprintln(stderr, "blueprint db migrate: the copy does not match the source (see MISMATCH above)")
		return 1
	}
	fmt.Fprintf(stdout, "\nverified: %d tables, row counts and checksums equal.\nnext: set database.url to %s and start blueprint.\n", len(rep.Tables), sqlstore.Redact(to))
	return 0
}

// dbSpread moves the sharded tables' rows of a PostgreSQL store onto the
// shard clusters of a catalog (blueprint db migrate --to-shards): the step
// from one database onto N shards, before starting the platform with
// database.shard_catalog.
func dbSpread(own map[string]string, rest []string, stdout, stderr io.Writer) int {
	catURL := own["to-shards"]
	if !sqlstore.IsPostgresURL(catURL) {
		fmt.Fprintf(stderr, "blueprint db migrate: --to-shards must be the catalog's postgres:// URL\n\n%s", dbUsage)
		return 2
	}
	keep, _ := strconv.ParseBool(own["keep-source"])
	batch, ok := batchFlag(own, stderr)
	if !ok {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	src, code := migrateSource(ctx, own, rest, stderr, sqlstore.Postgres, "--to-shards moves a PostgreSQL store; move a SQLite one with --to first")
	if src == nil {
		return code
	}
	defer src.Close()
	cat, err := shard.OpenCatalog(ctx, catURL)
	if err != nil {
		fmt.Fprintln(stderr, "blueprint db migrate: catalog:", err)
		return 1
	}
	defer cat.Close()
	m, err := cat.Load(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "blueprint db migrate: catalog:", err)
		return 1
	}
	// Every cluster gets the platform's schema first (what the platform
	// does when it starts with database.shard_catalog).
	for _, name := range m.ClusterNames() {
		db, err := sqlstore.OpenPostgres(ctx, m.Clusters[name].Primary)
		if err != nil {
			fmt.Fprintf(stderr, "blueprint db migrate: cluster %s: %v\n", name, err)
			return 1
		}
		db.Close()
	}
	res, err := shard.Spread(ctx, src.W, cat, shard.SpreadOptions{Batch: batch, KeepSource: keep, Progress: stderr})
	if err != nil {
		fmt.Fprintln(stderr, "blueprint db migrate:", err)
		return 1
	}
	for _, t := range res.Tables {
		for _, name := range m.ClusterNames() {
			fmt.Fprintf(stdout, "%s\t%s\t%d rows\n", t, name, res.Copied[t][name])
		}
	}
	fmt.Fprintf(stdout, "\nverified: every row is on the cluster of its shard; %d deleted from the source.\nnext: set database.shard_catalog to %s and start blueprint.\n", res.Deleted, sqlstore.Redact(catURL))
	return 0
}

// batchFlag reads --batch (0 when absent); false after printing why it is
// bad.
func batchFlag(own map[string]string, stderr io.Writer) (int, bool) {
	b := own["batch"]
	if b == "" {
		return 0, true
	}
	n, err := strconv.Atoi(b)
	if err != nil || n <= 0 {
		fmt.Fprintf(stderr, "blueprint db migrate: --batch wants a positive number\n")
		return 0, false
	}
	return n, true
}

// migrateSource opens the store db migrate reads from — --from, else the
// configured one — and checks that it runs on dialect. On failure it
// prints why (wrong: the message for another dialect) and returns nil and
// the exit code.
func migrateSource(ctx context.Context, own map[string]string, rest []string, stderr io.Writer, dialect, wrong string) (*sqlstore.DB, int) {
	var src *sqlstore.DB
	var err error
	if from := own["from"]; from != "" {
		src, _, err = openStore(ctx, from, "")
	} else {
		src, _, err = openConfigured(ctx, rest, stderr)
	}
	if err != nil {
		fmt.Fprintln(stderr, "blueprint db migrate: source:", err)
		return nil, 1
	}
	if src.Dialect != dialect {
		src.Close()
		fmt.Fprintln(stderr, "blueprint db migrate:", wrong)
		return nil, 2
	}
	return src, 0
}
