package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// EnvPrefix starts every environment variable Blueprint reads.
const EnvPrefix = "BLUEPRINT_"

// Options are what Load found besides the configuration itself.
type Options struct {
	ConfigFile string // --config
	Dump       bool   // --config-dump
	Help       bool   // -h/--help was given; usage was printed
}

// Load builds the configuration: defaults, then the YAML file named by
// --config or BLUEPRINT_CONFIG, then BLUEPRINT_* variables from env, then the
// flags in args. It validates the result. Usage goes to usage on -h.
func Load(args []string, env []string, usage io.Writer) (Config, Options, error) {
	cfg := Default()
	var opts Options
	leaves := leavesOf(&cfg)

	fs := flag.NewFlagSet("blueprint", flag.ContinueOnError)
	fs.SetOutput(usage)
	fs.StringVar(&opts.ConfigFile, "config", "", "YAML configuration file")
	fs.BoolVar(&opts.Dump, "config-dump", false, "print the effective configuration (secrets redacted) and exit")
	for _, l := range leaves {
		fs.Var(flagValue{l}, l.flagName(), l.help)
	}
	fs.Usage = func() {
		fmt.Fprintf(usage, "Usage: blueprint [flags]\n\nEvery flag is also a YAML key in --config and a %s* variable.\n\n", EnvPrefix)
		fs.PrintDefaults()
	}
	// Flags are parsed twice: first only to find --config (flags must win
	// over the file, so they cannot be applied yet), then for real.
	probe := flag.NewFlagSet("probe", flag.ContinueOnError)
	probe.SetOutput(io.Discard)
	probe.StringVar(&opts.ConfigFile, "config", "", "")
	for _, l := range leaves {
		probe.Var(discard{}, l.flagName(), "")
	}
	probe.Bool("config-dump", false, "")
	if err := probe.Parse(args); err != nil && !errors.Is(err, flag.ErrHelp) {
		return cfg, opts, fmt.Errorf("config: %w", err)
	}
	envMap := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			envMap[k] = v
		}
	}
	if opts.ConfigFile == "" {
		opts.ConfigFile = envMap[EnvPrefix+"CONFIG"]
	}
	if opts.ConfigFile != "" {
		if err := loadFile(&cfg, opts.ConfigFile); err != nil {
			return cfg, opts, err
		}
	}
	// Variables of the blueprint CLI subcommands, not configuration keys.
	known := map[string]bool{EnvPrefix + "CONFIG": true, EnvPrefix + "PASSWORD": true, EnvPrefix + "SERVER": true}
	for _, l := range leaves {
		name := l.envName()
		known[name] = true
		if v, ok := envMap[name]; ok {
			if err := l.set(v); err != nil {
				return cfg, opts, fmt.Errorf("config: %s (from %s): %w", l.key, name, err)
			}
		}
	}
	var unknown []string
	for k := range envMap {
		if !known[k] && !strings.HasPrefix(k, EnvPrefix+"TEST_") {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return cfg, opts, fmt.Errorf("config: unknown environment variable %s", strings.Join(unknown, ", "))
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			opts.Help = true
			return cfg, opts, nil
		}
		return cfg, opts, fmt.Errorf("config: %w", err)
	}
	if fs.NArg() > 0 {
		return cfg, opts, fmt.Errorf("config: unexpected argument %q", fs.Arg(0))
	}
	if err := cfg.Validate(); err != nil {
		return cfg, opts, err
	}
	return cfg, opts, nil
}

func loadFile(cfg *Config, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config: %s: %w", path, err)
	}
	return nil
}

// Dump writes the configuration as YAML with every secret redacted.
func Dump(w io.Writer, cfg Config) error {
	for _, l := range leavesOf(&cfg) {
		if l.secret && !l.v.IsZero() {
			if l.v.Kind() == reflect.Slice { // a list of URLs: keep the count, not the caller's array
				r := reflect.MakeSlice(l.v.Type(), l.v.Len(), l.v.Len())
				for i := range r.Len() {
					r.Index(i).SetString("REDACTED")
				}
				l.v.Set(r)
				continue
			}
			l.v.SetString("REDACTED")
		}
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(cfg); err != nil {
		return fmt.Errorf("config: dump: %w", err)
	}
	return enc.Close()
}

// Keys returns every configuration key with its environment variable, flag
// and help text, in declaration order; the docs are generated from it.
func Keys() [][4]string {
	cfg := Default()
	var out [][4]string
	for _, l := range leavesOf(&cfg) {
		out = append(out, [4]string{l.key, l.envName(), "--" + l.flagName(), l.help})
	}
	return out
}

// A leaf is one settable configuration value.
type leaf struct {
	key    string // YAML path, e.g. "lb.strategy"
	help   string
	secret bool
	v      reflect.Value
}

func (l leaf) envName() string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(l.key, ".", "_"))
}

func (l leaf) flagName() string {
	return strings.NewReplacer(".", "-", "_", "-").Replace(l.key)
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	byteSizeType = reflect.TypeFor[ByteSize]()
)

func (l leaf) set(s string) error {
	s = strings.TrimSpace(s)
	switch {
	case l.v.Type() == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		l.v.SetInt(int64(d))
	case l.v.Type() == byteSizeType:
		var b ByteSize
		if err := b.UnmarshalText([]byte(s)); err != nil {
			return err
		}
		l.v.SetInt(int64(b))
	default:
		switch l.v.Kind() {
		case reflect.String:
			l.v.SetString(s)
		case reflect.Bool:
			b, err := strconv.ParseBool(s)
			if err != nil {
				return fmt.Errorf("%q is not true or false", s)
			}
			l.v.SetBool(b)
		case reflect.Int, reflect.Int64:
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return fmt.Errorf("%q is not an integer", s)
			}
			l.v.SetInt(n)
		case reflect.Float64:
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return fmt.Errorf("%q is not a number", s)
			}
			l.v.SetFloat(f)
		case reflect.Slice:
			var parts []string
			for p := range strings.SplitSeq(s, ",") {
				if p = strings.TrimSpace(p); p != "" {
					parts = append(parts, p)
				}
			}
			l.v.Set(reflect.ValueOf(parts))
		default:
			return fmt.Errorf("unsupported type %s", l.v.Type())
		}
	}
	return nil
}

func (l leaf) String() string {
	switch {
	case l.v.Type() == durationType:
		return time.Duration(l.v.Int()).String()
	case l.v.Type() == byteSizeType:
		b, _ := ByteSize(l.v.Int()).MarshalText()
		return string(b)
	case l.v.Kind() == reflect.Slice:
		return strings.Join(l.v.Interface().([]string), ",")
	}
	return fmt.Sprint(l.v.Interface())
}

func leavesOf(cfg *Config) []leaf {
	var out []leaf
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			key := prefix + name
			fv := v.Field(i)
			if f.Type.Kind() == reflect.Struct {
				walk(key+".", fv)
				continue
			}
			out = append(out, leaf{key: key, help: f.Tag.Get("help"), secret: f.Tag.Get("secret") == "true", v: fv})
		}
	}
	walk("", reflect.ValueOf(cfg).Elem())
	return out
}

// flagValue adapts a leaf to flag.Value.
type flagValue struct{ l leaf }

func (f flagValue) String() string {
	if !f.l.v.IsValid() {
		return ""
	}
	if f.l.secret {
		return ""
	}
	return f.l.String()
}
func (f flagValue) Set(s string) error { return f.l.set(s) }
func (f flagValue) IsBoolFlag() bool   { return f.l.v.IsValid() && f.l.v.Kind() == reflect.Bool }

type discard struct{}

func (discard) String() string   { return "" }
func (discard) Set(string) error { return nil }
