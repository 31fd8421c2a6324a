package trace

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func collect(t *testing.T, read func(r *strings.Reader, yield func(uint64) bool) error, in string) ([]uint64, error) {
	t.Helper()
	var keys []uint64
	err := read(strings.NewReader(in), func(k uint64) bool { keys = append(keys, k); return true })
	return keys, err
}

func arc(r *strings.Reader, y func(uint64) bool) error   { return ReadARC(r, y) }
func lirs(r *strings.Reader, y func(uint64) bool) error  { return ReadLIRS(r, y) }
func corda(r *strings.Reader, y func(uint64) bool) error { return ReadCorda(r, y) }

func TestReadARC(t *testing.T) {
	keys, err := collect(t, arc, "5 3 0 1\n100 1 0 2\n\n  7   2 9 9  \n42 0 0 0\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{5, 6, 7, 100, 7, 8}; !slices.Equal(keys, want) {
		t.Fatalf("keys %v, want %v (each line expands to count keys)", keys, want)
	}
	for _, bad := range []string{"5\n", "x 1 0 0\n", "5 y 0 0\n", "5 -1 0 0\n",
		"5 2000000 0 0\n", "18446744073709551615 2 0 0\n", strings.Repeat("1", 5000) + " 1\n"} {
		if _, err := collect(t, arc, bad); err == nil || !strings.HasPrefix(err.Error(), "cache: trace: arc") {
			t.Errorf("ReadARC(%.20q) error %v", bad, err)
		}
	}
	// The last key of the 64-bit range is fine.
	if keys, err := collect(t, arc, "18446744073709551615 1 0 0\n"); err != nil || keys[0] != 1<<64-1 {
		t.Fatalf("keys %v, %v", keys, err)
	}
}

func TestReadLIRS(t *testing.T) {
	keys, err := collect(t, lirs, "3\r\n 4 \n*\n5\n\n6\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{3, 4, 5}; !slices.Equal(keys, want) {
		t.Fatalf("keys %v, want %v (CRLF trimmed, * skipped, stop at the empty line)", keys, want)
	}
	for _, bad := range []string{"1\nabc\n", "-1\n", "1 2\n"} {
		if _, err := collect(t, lirs, bad); err == nil || !strings.Contains(err.Error(), "lirs line") {
			t.Errorf("ReadLIRS(%q) error %v", bad, err)
		}
	}
}

func TestReadCorda(t *testing.T) {
	var b []byte
	for _, k := range []uint64{1, 1 << 63, 42} {
		b = binary.BigEndian.AppendUint64(b, k)
	}
	keys, err := collect(t, corda, string(b))
	if err != nil || !slices.Equal(keys, []uint64{1, 1 << 63, 42}) {
		t.Fatalf("keys %v, %v", keys, err)
	}
	if _, err := collect(t, corda, string(b[:20])); err == nil || !strings.Contains(err.Error(), "truncated key 2") {
		t.Fatalf("truncated trace: %v", err)
	}
}

func TestReadStopsWhenYieldSaysSo(t *testing.T) {
	for _, f := range Formats() {
		in := map[Format]string{ARC: "1 1000 0 0\n", LIRS: "1\n2\n3\n", Corda: strings.Repeat("\x00", 64)}[f]
		n := 0
		if err := Read(strings.NewReader(in), f, func(uint64) bool { n++; return n < 2 }); err != nil || n != 2 {
			t.Errorf("%s: %d keys, %v", f, n, err)
		}
	}
}

func TestParseFormat(t *testing.T) {
	for _, s := range []string{"arc", "LIRS", "corda"} {
		if _, err := ParseFormat(s); err != nil {
			t.Error(err)
		}
	}
	if _, err := ParseFormat("csv"); err == nil {
		t.Error("csv accepted")
	}
}

func TestOpenDetectsGzipAndFormat(t *testing.T) {
	dir := t.TempDir()
	write := func(name, gzName string, content []byte, compress bool) string {
		p := filepath.Join(dir, name)
		var buf bytes.Buffer
		if compress {
			zw := gzip.NewWriter(&buf)
			zw.Name = gzName
			zw.Write(content)
			zw.Close()
		} else {
			buf.Write(content)
		}
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		path string
		want []uint64
	}{
		{write("x.gz", "oltp.arc", []byte("10 2 0 0\n"), true), []uint64{10, 11}},
		{write("y.gz", "gli.trc", []byte("7\n8\n"), true), []uint64{7, 8}},
		{write("z.gz", "trace_vaultservice.bin", binary.BigEndian.AppendUint64(nil, 9), true), []uint64{9}},
		{write("plain.lirs", "", []byte("1\n"), false), []uint64{1}},
	} {
		keys, err := Load(tc.path, "", 0)
		if err != nil || !slices.Equal(keys, tc.want) {
			t.Errorf("%s: %v, %v; want %v", tc.path, keys, err, tc.want)
		}
	}
	unknown := write("mystery.gz", "", []byte("1\n"), true)
	if _, err := Load(unknown, "", 0); err == nil || !strings.Contains(err.Error(), "cannot tell the format") {
		t.Errorf("unknown format: %v", err)
	}
	if keys, err := Load(unknown, LIRS, 0); err != nil || len(keys) != 1 {
		t.Errorf("explicit format: %v, %v", keys, err)
	}
	if _, err := Load(filepath.Join(dir, "missing.gz"), "", 0); err == nil {
		t.Error("missing file loaded")
	}
	if keys, err := Load(write("l.gz", "gli.trc", []byte("1\n2\n3\n"), true), "", 2); err != nil || len(keys) != 2 {
		t.Errorf("limit: %v, %v", keys, err)
	}
}

func fuzzRead(f *testing.F, read func([]byte, func(uint64) bool) error, seeds ...[]byte) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n := 0
		err := read(data, func(uint64) bool { n++; return n < 100_000 })
		if err != nil && !strings.HasPrefix(err.Error(), "cache: trace: ") {
			t.Fatalf("error without prefix: %v", err)
		}
	})
}

func FuzzReadARC(f *testing.F) {
	fuzzRead(f, func(b []byte, y func(uint64) bool) error { return ReadARC(bytes.NewReader(b), y) },
		[]byte("5 3 0 1\n100 1 0 2\n"), []byte("1 1048576 0 0\n"), []byte("18446744073709551615 1 0 0\n"))
}

func FuzzReadLIRS(f *testing.F) {
	fuzzRead(f, func(b []byte, y func(uint64) bool) error { return ReadLIRS(bytes.NewReader(b), y) },
		[]byte("3\r\n4\n*\n5\n\n6\n"), []byte("18446744073709551616\n"))
}

func FuzzReadCorda(f *testing.F) {
	fuzzRead(f, func(b []byte, y func(uint64) bool) error {
		n := 0
		err := ReadCorda(bytes.NewReader(b), func(k uint64) bool {
			n++
			return y(k)
		})
		if err == nil && n < 100_000 && n != len(b)/8 {
			panic("corda: key count is not len/8")
		}
		return err
	}, []byte("\x00\x00\x00\x00\x00\x00\x00\x01"), []byte("\x01\x02\x03"))
}
