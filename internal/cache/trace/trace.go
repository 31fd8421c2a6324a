// Package trace reads cache-access traces: the ARC, LIRS and Corda formats
// of the shared trace set (see ../../../../shared/traces/README.md and
// internal/cache/README.md). Every reader turns a trace into a sequence of
// uint64 keys, one per request, and calls a function for each.
//
// The readers take the decompressed stream; ReadFile and Open detect and
// undo gzip themselves. They read untrusted input: malformed lines are
// errors naming the line, never panics, and an ARC line may expand to at
// most MaxBlockCount keys.
package trace

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Format names a trace format.
type Format string

// The supported formats.
const (
	// ARC is the format of Megiddo and Modha's ARC traces: text lines of
	// "start count ignored ignored", each line requesting the count keys
	// start, start+1, …, start+count-1 in that order.
	ARC Format = "arc"
	// LIRS is the format of Jiang and Zhang's LIRS traces: one unsigned
	// decimal key per line, surrounding white space ignored; the trace ends
	// at the first empty line, and a line "*" (a breakpoint in the LIRS
	// tools) is skipped.
	LIRS Format = "lirs"
	// Corda is the binary format of R3 Corda's vault-service trace: 8-byte
	// big-endian unsigned keys with no header.
	Corda Format = "corda"
)

// Formats returns the supported formats.
func Formats() []Format { return []Format{ARC, LIRS, Corda} }

// MaxBlockCount bounds the count of one ARC line, so that a corrupt or
// hostile line cannot expand into billions of keys. The largest count in
// the published ARC traces is far below it.
const MaxBlockCount = 1 << 20

// maxLine bounds a text line.
const maxLine = 4096

// ParseFormat returns the format named s.
func ParseFormat(s string) (Format, error) {
	for _, f := range Formats() {
		if string(f) == strings.ToLower(s) {
			return f, nil
		}
	}
	return "", fmt.Errorf("cache: trace: unknown format %q (want arc, lirs or corda)", s)
}

// Read reads a decompressed trace of format f from r and calls yield with
// each key in order, until yield returns false or the trace ends.
func Read(r io.Reader, f Format, yield func(key uint64) bool) error {
	switch f {
	case ARC:
		return ReadARC(r, yield)
	case LIRS:
		return ReadLIRS(r, yield)
	case Corda:
		return ReadCorda(r, yield)
	}
	return fmt.Errorf("cache: trace: unknown format %q", f)
}

// ReadARC reads an ARC trace (see the ARC constant).
func ReadARC(r io.Reader, yield func(key uint64) bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), maxLine)
	for line := 1; sc.Scan(); line++ {
		fields := bytes.Fields(sc.Bytes())
		if len(fields) == 0 {
			continue
		}
		if len(fields) < 2 {
			return fmt.Errorf("cache: trace: arc line %d: want \"start count ...\", got %q", line, sc.Bytes())
		}
		start, err := strconv.ParseUint(string(fields[0]), 10, 64)
		if err != nil {
			return fmt.Errorf("cache: trace: arc line %d: start: %w", line, err)
		}
		count, err := strconv.ParseUint(string(fields[1]), 10, 64)
		if err != nil {
			return fmt.Errorf("cache: trace: arc line %d: count: %w", line, err)
		}
		if count > MaxBlockCount {
			return fmt.Errorf("cache: trace: arc line %d: count %d exceeds %d", line, count, MaxBlockCount)
		}
		if count > 0 && start > math.MaxUint64-(count-1) {
			return fmt.Errorf("cache: trace: arc line %d: keys %d+%d overflow 64 bits", line, start, count)
		}
		for i := range count {
			if !yield(start + i) {
				return nil
			}
		}
	}
	return scanErr(sc.Err(), "arc")
}

// ReadLIRS reads a LIRS trace (see the LIRS constant).
func ReadLIRS(r io.Reader, yield func(key uint64) bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), maxLine)
	for line := 1; sc.Scan(); line++ {
		s := bytes.TrimSpace(sc.Bytes())
		switch {
		case len(s) == 0:
			return nil
		case len(s) == 1 && s[0] == '*':
			continue
		}
		key, err := strconv.ParseUint(string(s), 10, 64)
		if err != nil {
			return fmt.Errorf("cache: trace: lirs line %d: %w", line, err)
		}
		if !yield(key) {
			return nil
		}
	}
	return scanErr(sc.Err(), "lirs")
}

// ReadCorda reads a Corda trace (see the Corda constant). A trailing
// partial key is an error.
func ReadCorda(r io.Reader, yield func(key uint64) bool) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var b [8]byte
	for i := 0; ; i++ {
		n, err := io.ReadFull(br, b[:])
		switch {
		case err == io.EOF:
			return nil
		case errors.Is(err, io.ErrUnexpectedEOF):
			return fmt.Errorf("cache: trace: corda: truncated key %d (%d of 8 bytes)", i, n)
		case err != nil:
			return fmt.Errorf("cache: trace: corda: %w", err)
		}
		if !yield(binary.BigEndian.Uint64(b[:])) {
			return nil
		}
	}
}

func scanErr(err error, format string) error {
	if errors.Is(err, bufio.ErrTooLong) {
		return fmt.Errorf("cache: trace: %s: line longer than %d bytes", format, maxLine)
	}
	if err != nil {
		return fmt.Errorf("cache: trace: %s: %w", format, err)
	}
	return nil
}

// File is an open trace file: its decompressed content and its format.
type File struct {
	io.Reader
	// Format is the format given to Open, or the one its name implies.
	Format Format
	f      *os.File
	gz     *gzip.Reader
}

// Close closes the file.
func (f *File) Close() error {
	if f.gz != nil {
		f.gz.Close()
	}
	return f.f.Close()
}

// Open opens the trace at path, undoing gzip if the file starts with the
// gzip magic. If format is empty it is inferred from the name stored in the
// gzip header, or else from the file name: ".arc" is ARC, ".trc" or ".lirs"
// is LIRS, ".bin" or a name containing "vaultservice" is Corda; for the
// shared traces the base names oltp, p3 (ARC), gli, loop (LIRS) work too.
func Open(path string, format Format) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cache: trace: %w", err)
	}
	t := &File{Reader: f, f: f, Format: format}
	br := bufio.NewReader(f)
	t.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("cache: trace: %s: %w", path, err)
		}
		t.gz, t.Reader = gz, gz
		if t.Format == "" {
			t.Format = guess(gz.Name)
		}
	}
	if t.Format == "" {
		t.Format = guess(path)
	}
	if t.Format == "" {
		t.Close()
		return nil, fmt.Errorf("cache: trace: %s: cannot tell the format from the name; give it (arc, lirs or corda)", path)
	}
	return t, nil
}

// guess infers a format from a file name, or returns "".
func guess(name string) Format {
	base := strings.ToLower(filepath.Base(name))
	base = strings.TrimSuffix(base, ".gz")
	ext := filepath.Ext(base)
	stem := strings.TrimSuffix(base, ext)
	switch {
	case ext == ".arc", stem == "oltp", stem == "p3":
		return ARC
	case ext == ".trc", ext == ".lirs", stem == "gli", stem == "loop":
		return LIRS
	case ext == ".bin", strings.Contains(base, "vaultservice"):
		return Corda
	}
	return ""
}

// ReadFile reads the trace at path (see Open) and calls yield with each
// key, until yield returns false or the trace ends.
func ReadFile(path string, format Format, yield func(key uint64) bool) error {
	t, err := Open(path, format)
	if err != nil {
		return err
	}
	defer t.Close()
	if err := Read(t, t.Format, yield); err != nil {
		return fmt.Errorf("%w (file %s)", err, path)
	}
	return nil
}

// Load returns the first limit keys of the trace at path (all of them if
// limit ≤ 0).
func Load(path string, format Format, limit int) ([]uint64, error) {
	var keys []uint64
	err := ReadFile(path, format, func(k uint64) bool {
		keys = append(keys, k)
		return limit <= 0 || len(keys) < limit
	})
	return keys, err
}
