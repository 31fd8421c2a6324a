package config

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/configuration.md")

// TestConfigurationDoc keeps docs/configuration.md in step with the Config
// struct; run `go test ./internal/config -update` after changing a key.
func TestConfigurationDoc(t *testing.T) {
	var b strings.Builder
	b.WriteString("# Configuration reference\n\n")
	b.WriteString("Generated from `internal/config` by `go test ./internal/config -update`; do not edit by hand.\n\n")
	b.WriteString("Order of precedence, lowest first: Go defaults, the YAML file (`--config FILE` or `BLUEPRINT_CONFIG`),\n")
	b.WriteString("`BLUEPRINT_*` environment variables, flags. `blueprint --config-dump` prints the effective values,\n")
	b.WriteString("secrets redacted. Sizes take `KiB`, `MiB`, `GiB`; durations take Go syntax (`250ms`, `30s`, `720h`).\n\n")
	b.WriteString("| key | environment | flag | default | meaning |\n|---|---|---|---|---|\n")
	def := Default()
	for _, l := range leavesOf(&def) {
		val := l.String()
		if val == "" {
			val = "—"
		}
		fmt.Fprintf(&b, "| `%s` | `%s` | `--%s` | `%s` | %s |\n", l.key, l.envName(), l.flagName(), val, l.help)
	}
	want := b.String()
	path := "../../docs/configuration.md"
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != want {
		t.Fatalf("docs/configuration.md is out of date: run go test ./internal/config -update")
	}
}
