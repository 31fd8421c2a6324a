package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestCommands(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	if code, out, _ := run(t, "id", "decode", "251847970388049920"); code != 0 || !strings.Contains(out, "shard") || !strings.Contains(out, "2026-11-26T23:13:55.249Z") {
		t.Errorf("id decode: %d %q", code, out)
	}
	if code, _, errOut := run(t, "id", "decode", "banana"); code != 1 || !strings.Contains(errOut, "malformed id") {
		t.Errorf("bad id: %d %q", code, errOut)
	}
	if code, out, _ := run(t, "--config-dump", "--secret", "hunter2-hunter2-hunter2", "--lb-strategy", "least_conn"); code != 0 || strings.Contains(out, "hunter2-hunter2-hunter2") || !strings.Contains(out, "strategy: least_conn") {
		t.Errorf("config dump: %d\n%s", code, out)
	}
	if code, _, errOut := run(t, "--lb-strategy", "nope"); code != 2 || !strings.Contains(errOut, "lb.strategy") {
		t.Errorf("bad config: %d %q", code, errOut)
	}
	if code, _, errOut := run(t, "frobnicate"); code != 2 || !strings.Contains(errOut, "unknown command") {
		t.Errorf("unknown command: %d %q", code, errOut)
	}
	if code, _, errOut := run(t, "upload", "--server", "http://127.0.0.1:1", "x.mp4"); code != 1 || !strings.Contains(errOut, "not logged in") {
		t.Errorf("upload without login: %d %q", code, errOut)
	}
	if code, _, errOut := run(t, "login", "--server", "http://127.0.0.1:1"); code != 1 || !strings.Contains(errOut, "--username") {
		t.Errorf("login without username: %d %q", code, errOut)
	}
}

func TestCacheSim(t *testing.T) {
	trace := filepath.Join("..", "..", "..", "shared", "traces", "gli.gz")
	if _, err := os.Stat(trace); err != nil {
		t.Fatalf("trace %s missing (the shared/ folder must sit beside the repository): %v", trace, err)
	}
	code, out, errOut := run(t, "cache", "sim", "--trace", trace, "--policy", "lru", "--size", "1000,2000")
	if code != 0 || !strings.Contains(out, "11.21 %") || !strings.Contains(out, "57.41 %") {
		t.Fatalf("cache sim: %d\n%s\n%s", code, out, errOut)
	}
	if code, _, _ := run(t, "cache", "simulate"); code != 2 {
		t.Errorf("bad subcommand: exit %d", code)
	}
}
