// Package cli is the blueprint command line: "blueprint" runs the platform
// (every role, or those named by --roles); the subcommands talk to a
// running platform through the client SDK.
package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/blueprint-media/blueprint/client"
	"github.com/blueprint-media/blueprint/internal/app"
	"github.com/blueprint-media/blueprint/internal/cache/sim"
	"github.com/blueprint-media/blueprint/internal/config"
	"github.com/blueprint-media/blueprint/internal/idgen"
	"github.com/blueprint-media/blueprint/internal/telemetry"
)

// Version is set at build time with -ldflags "-X .../internal/cli.Version=...".
var Version = "dev"

const usage = `blueprint — a media platform built along the System Design Blueprint.

Usage:
  blueprint [flags]                 run the platform (all roles; see blueprint -h)
  blueprint serve [flags]           the same
  blueprint signup --server URL --username U --email E   create an account (password from BLUEPRINT_PASSWORD or stdin)
  blueprint login  --server URL --username U   log in and remember the token (password as above)
  blueprint upload --server URL [--title T] [--description D] FILE   resumable upload with a progress bar
  blueprint id decode ID            show the time, shard, worker and sequence inside an ID
  blueprint cache sim --trace FILE --policy P --size N   replay a cache trace and print hit ratios
  blueprint db status [--json]      engine, schema version, rows per table, replicas and lag
  blueprint db migrate --to postgres://…   move a SQLite install onto PostgreSQL (counts and checksums)
  blueprint db move-shard --catalog URL --shard N --to CLUSTER   move a logical shard online
  blueprint version
`

// Main runs the command line and returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "serve":
			return serve(args[1:], stdout, stderr)
		case "signup", "login", "upload":
			return withClient(args[0], args[1:], stdin, stdout, stderr)
		case "id":
			return idCmd(args[1:], stdout, stderr)
		case "db":
			return dbCmd(args[1:], stdin, stdout, stderr)
		case "cache":
			if len(args) < 2 || args[1] != "sim" {
				fmt.Fprintln(stderr, "usage: blueprint cache sim --trace FILE --policy lru|lfu|tinylfu|... --size N[,N...]")
				return 2
			}
			return sim.Main(args[2:], stdout, stderr)
		case "version", "--version":
			fmt.Fprintln(stdout, "blueprint", Version)
			return 0
		case "help":
			fmt.Fprint(stdout, usage)
			return 0
		}
		if !strings.HasPrefix(args[0], "-") {
			fmt.Fprintf(stderr, "blueprint: unknown command %q\n\n%s", args[0], usage)
			return 2
		}
	}
	return serve(args, stdout, stderr)
}

func serve(args []string, stdout, stderr io.Writer) int {
	cfg, opts, err := config.Load(args, os.Environ(), stderr)
	if err != nil {
		fmt.Fprintln(stderr, "blueprint:", err)
		return 2
	}
	if opts.Help {
		return 0
	}
	if opts.Dump {
		if err := config.Dump(stdout, cfg); err != nil {
			fmt.Fprintln(stderr, "blueprint:", err)
			return 1
		}
		return 0
	}
	logger := telemetry.NewLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	a := app.New(cfg, logger)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := a.Start(ctx); err != nil {
		fmt.Fprintln(stderr, "blueprint:", err)
		return 1
	}
	u := a.URLs()
	if u.Gateway != "" {
		url := cfg.PublicURL
		if url == "" {
			url = u.Gateway
		}
		fmt.Fprintf(stdout, "Blueprint is running. open %s\n", url)
	}
	if u.Edge != "" {
		fmt.Fprintf(stdout, "  CDN edge   %s\n", u.Edge)
	}
	fmt.Fprintf(stdout, "  admin      %s/metrics  /healthz  /readyz  /debug/pprof/\n", u.Admin)
	if u.Broker != "" {
		fmt.Fprintf(stdout, "  broker     %s\n", u.Broker)
	}
	<-ctx.Done()
	stop()
	fmt.Fprintln(stdout, "shutting down (in-flight requests and jobs get", app.ShutdownTimeout, "to finish)")
	sctx, cancel := context.WithTimeout(context.Background(), app.ShutdownTimeout)
	defer cancel()
	if err := a.Stop(sctx); err != nil {
		fmt.Fprintln(stderr, "blueprint: stop:", err)
		return 1
	}
	return 0
}

func idCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 || args[0] != "decode" {
		fmt.Fprintln(stderr, "usage: blueprint id decode ID")
		return 2
	}
	id, err := idgen.Parse(args[1])
	if err != nil {
		fmt.Fprintln(stderr, "blueprint:", err)
		return 1
	}
	p, _ := idgen.Decode(id)
	fmt.Fprintf(stdout, "id        %d\ntime      %s\nshard     %d\nworker    %d\nsequence  %d\n", id, p.Time.Format(time.RFC3339Nano), p.Shard, p.Worker, p.Sequence)
	return 0
}

// state is what the CLI remembers between runs, in the user's config dir.
type state struct {
	Tokens  map[string]string `json:"tokens"`  // server URL → token
	Uploads map[string]string `json:"uploads"` // file fingerprint → tus upload URL
}

func statePath() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		dir = "."
	}
	return filepath.Join(dir, "blueprint", "cli.json")
}

func loadState() *state {
	s := &state{Tokens: map[string]string{}, Uploads: map[string]string{}}
	if b, err := os.ReadFile(statePath()); err == nil {
		json.Unmarshal(b, s)
	}
	if s.Tokens == nil {
		s.Tokens = map[string]string{}
	}
	if s.Uploads == nil {
		s.Uploads = map[string]string{}
	}
	return s
}

func (s *state) save() error {
	p := statePath()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(s, "", "  ")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

func readPassword(stdin io.Reader) (string, error) {
	if pw := os.Getenv("BLUEPRINT_PASSWORD"); pw != "" {
		return pw, nil
	}
	b, err := io.ReadAll(io.LimitReader(stdin, 1024))
	if err != nil {
		return "", err
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" {
		return "", errors.New("no password: set BLUEPRINT_PASSWORD or pipe it on stdin")
	}
	return pw, nil
}

func withClient(cmd string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", envOr("BLUEPRINT_SERVER", "http://localhost:8080"), "gateway URL")
	username := fs.String("username", "", "account name")
	email := fs.String("email", "", "email (signup)")
	title := fs.String("title", "", "title (upload; default: the file name)")
	desc := fs.String("description", "", "description (upload)")
	quiet := fs.Bool("quiet", false, "no progress bar (upload)")
	wait := fs.Bool("wait", false, "wait until processing ends (upload)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	st := loadState()
	c := client.New(*server)
	c.Token = st.Tokens[c.BaseURL]
	fail := func(err error) int { fmt.Fprintln(stderr, "blueprint:", err); return 1 }

	switch cmd {
	case "signup", "login":
		if *username == "" {
			return fail(errors.New("--username is required"))
		}
		pw, err := readPassword(stdin)
		if err != nil {
			return fail(err)
		}
		if cmd == "signup" {
			if _, err := c.SignUp(ctx, *username, *email, pw); err != nil {
				return fail(err)
			}
			fmt.Fprintln(stdout, "account created:", *username)
		}
		if err := c.Login(ctx, *username, pw); err != nil {
			return fail(err)
		}
		st.Tokens[c.BaseURL] = c.Token
		if err := st.save(); err != nil {
			return fail(err)
		}
		fmt.Fprintln(stdout, "logged in to", c.BaseURL, "as", *username)
		return 0
	}

	// upload
	if fs.NArg() != 1 {
		return fail(errors.New("usage: blueprint upload [--server URL] [--title T] FILE"))
	}
	if c.Token == "" {
		return fail(fmt.Errorf("not logged in to %s: run blueprint login --server %s --username NAME", c.BaseURL, c.BaseURL))
	}
	path := fs.Arg(0)
	fi, err := os.Stat(path)
	if err != nil {
		return fail(err)
	}
	abs, _ := filepath.Abs(path)
	sum := sha256.Sum256(fmt.Appendf(nil, "%s|%s|%d|%d", c.BaseURL, abs, fi.Size(), fi.ModTime().UnixNano()))
	fp := hex.EncodeToString(sum[:8])
	var bar *progressbar.ProgressBar
	if !*quiet {
		bar = progressbar.DefaultBytes(fi.Size(), "uploading "+filepath.Base(path))
	}
	resume := st.Uploads[fp]
	if resume != "" {
		fmt.Fprintln(stderr, "resuming an earlier upload of this file")
	}
	res, err := c.Upload(ctx, path, client.UploadOptions{
		Title: *title, Description: *desc, Resume: resume,
		OnCreate: func(u string) { st.Uploads[fp] = u; st.save() },
		Progress: func(sent, total int64) {
			if bar != nil {
				bar.Set64(sent)
			}
		},
	})
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "\ninterrupted; run the same command again to resume")
			return 130
		}
		return fail(err)
	}
	if bar != nil {
		bar.Finish()
	}
	delete(st.Uploads, fp)
	st.save()
	fmt.Fprintf(stdout, "\nuploaded: video %s is processing\n", res.VideoID)
	if *wait {
		v, err := c.WaitReady(ctx, res.VideoID, time.Second)
		if err != nil {
			return fail(err)
		}
		url := v.HLSURL
		if url == "" && len(v.Renditions) > 0 {
			url = v.Renditions[len(v.Renditions)-1].URL // an image: its largest size
		}
		fmt.Fprintf(stdout, "ready: %s\n", url)
	}
	return 0
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
