package config

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

func TestDefaultIsValid(t *testing.T) {
	cfg := Default()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	if !cfg.HasRole("worker") || !cfg.HasRole("gateway") {
		t.Fatal("default config should run every role")
	}
}

func TestPrecedence(t *testing.T) {
	env := []string{"BLUEPRINT_LB_STRATEGY=consistent_hash", "BLUEPRINT_WORKER_CONCURRENCY=5", "PATH=/bin", "BLUEPRINT_PASSWORD=x", "BLUEPRINT_TEST_ANYTHING=1"}
	args := []string{"--config", "testdata/good.yaml", "--worker-concurrency=7", "--roles", "gateway,frontend,broker"}
	cfg, opts, err := Load(args, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if opts.ConfigFile != "testdata/good.yaml" {
		t.Errorf("config file = %q", opts.ConfigFile)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"http_addr from file", cfg.HTTPAddr, ":9999"},
		{"lb.strategy env over file", cfg.LB.Strategy, "consistent_hash"},
		{"lb.health_interval from file", cfg.LB.HealthInterval, 250 * time.Millisecond},
		{"edge.memory_bytes from file", cfg.Edge.MemoryBytes, ByteSize(32 << 20)},
		{"worker.concurrency flag over env over file", cfg.Worker.Concurrency, 7},
		{"roles from flag", strings.Join(cfg.Roles, ","), "gateway,frontend,broker"},
		{"default kept", cfg.AdminAddr, "127.0.0.1:9090"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"unknown yaml key", []string{"--config", "testdata/unknown-key.bad.yaml"}, nil, "stratgy"},
		{"bad yaml type", []string{"--config", "testdata/bad-type.bad.yaml"}, nil, "lots"},
		{"bad env value", nil, []string{"BLUEPRINT_WORKER_CONCURRENCY=many"}, "worker.concurrency (from BLUEPRINT_WORKER_CONCURRENCY)"},
		{"unknown env var", nil, []string{"BLUEPRINT_NOPE=1"}, "BLUEPRINT_NOPE"},
		{"bad strategy", []string{"--lb-strategy", "random"}, nil, "lb.strategy"},
		{"bad role", []string{"--roles", "gateway,dns"}, nil, `roles: unknown role "dns"`},
		{"bad address", []string{"--http-addr", "8080"}, nil, "http_addr"},
		{"bad size", []string{"--upload-max-bytes", "lots"}, nil, "not a size"},
		{"unknown flag", []string{"--no-such-flag"}, nil, "no-such-flag"},
		{"missing file", []string{"--config", "testdata/missing.yaml"}, nil, "missing.yaml"},
		{"worker without broker", []string{"--roles", "worker"}, nil, "queue.url"},
		{"frontend without broker", []string{"--roles", "gateway,frontend"}, nil, "the frontend role needs a broker"},
		{"fixed frontend port", []string{"--frontend-addr", "127.0.0.1:7000"}, nil, "frontend.addr"},
		{"short secret", []string{"--secret", "short"}, nil, "secret: at least 16"},
		{"bad preset", []string{"--worker-preset", "turbo"}, nil, "worker.preset"},
		{"negative threads", []string{"--worker-ffmpeg-threads", "-1"}, nil, "worker.ffmpeg_threads"},
		{"replicas on SQLite", []string{"--database-replicas", "postgres://h/db"}, nil, "database.replicas: needs a postgres://"},
		{"shards on SQLite", []string{"--database-shard-catalog", "postgres://h/catalog"}, nil, "database.shard_catalog: needs postgres://"},
		{"bad replica URL", []string{"--database-url", "postgres://h/db", "--database-replicas", "mysql://h/db"}, nil, "database.replicas[0]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := Load(c.args, c.env, io.Discard)
			if err == nil {
				t.Fatalf("no error, want one containing %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
		})
	}
}

func TestDumpRedactsSecrets(t *testing.T) {
	cfg, _, err := Load([]string{"--config", "testdata/good.yaml", "--database-url", "postgres://u:pw@h/db"}, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database.Replicas = []string{"postgres://u:pw2@replica/db"}
	var buf bytes.Buffer
	if err := Dump(&buf, cfg); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, secret := range []string{"s3cr3t-value-long-enough", "pw@h", "pw2@replica"} {
		if strings.Contains(out, secret) {
			t.Errorf("dump leaks %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, "REDACTED") || !strings.Contains(out, "memory_bytes: 32MiB") {
		t.Errorf("dump lacks expected lines:\n%s", out)
	}
	if cfg.Secret != "s3cr3t-value-long-enough" || cfg.Database.Replicas[0] != "postgres://u:pw2@replica/db" {
		t.Error("Dump must not change the caller's config")
	}
}

func TestHelp(t *testing.T) {
	var buf bytes.Buffer
	_, opts, err := Load([]string{"-h"}, nil, &buf)
	if err != nil || !opts.Help {
		t.Fatalf("help: opts=%+v err=%v", opts, err)
	}
	if !strings.Contains(buf.String(), "-lb-strategy") {
		t.Errorf("usage lacks generated flags:\n%s", buf.String())
	}
}

func TestByteSize(t *testing.T) {
	good := map[string]ByteSize{"1048576": 1 << 20, "512KiB": 512 << 10, "64MiB": 64 << 20, "4GiB": 4 << 30, "2gb": 2 << 30, " 7 ": 7}
	for in, want := range good {
		var b ByteSize
		if err := b.UnmarshalText([]byte(in)); err != nil || b != want {
			t.Errorf("%q: got %d, %v; want %d", in, b, err, want)
		}
		text, _ := b.MarshalText()
		var back ByteSize
		if err := back.UnmarshalText(text); err != nil || back != b {
			t.Errorf("round trip of %d via %q gave %d, %v", b, text, back, err)
		}
	}
	for _, in := range []string{"", "-1", "1.5GiB", "lots", "99999999999TiB"} {
		var b ByteSize
		if err := b.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("%q: accepted as %d", in, b)
		}
	}
}

func FuzzByteSize(f *testing.F) {
	for _, s := range []string{"1", "64MiB", "4GiB", "-3", "1TB", "KiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var b ByteSize
		if err := b.UnmarshalText([]byte(s)); err != nil {
			return
		}
		if b < 0 {
			t.Fatalf("%q parsed to negative %d", s, b)
		}
		text, err := b.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back ByteSize
		if err := back.UnmarshalText(text); err != nil || back != b {
			t.Fatalf("round trip %q -> %d -> %q -> %d (%v)", s, b, text, back, err)
		}
	})
}
