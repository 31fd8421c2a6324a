package archive

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"strings"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"
	"github.com/parquet-go/parquet-go/format"
)

// Kind is the type of a tiered column.
type Kind int

// Column kinds. Every value of an Int column is an int64, of a Text column
// a string; a NullInt column holds an int64 or nil.
const (
	Int Kind = iota
	Text
	NullInt
)

// Column is one column of a tiered table.
type Column struct {
	Name string
	Kind Kind
}

// Table describes a table whose old rows move to Parquet files.
type Table struct {
	Name string
	// Columns are the columns kept in the files; the first is the integer
	// primary key.
	Columns []Column
	// Time is the creation-time column (Int, Unix seconds) that partitions
	// the rows.
	Time string
	// SortBy is an Int column the files are sorted by (then by the key),
	// so that a reader looking for one value of it skips the row groups
	// whose statistics exclude it.
	SortBy string
	// Ready, when set, is a SQL condition every row of a partition must
	// meet before the partition may leave the table (for events: published
	// by the outbox relay).
	Ready string
}

// Row is one row of a Table: Columns' values in order (int64, string or
// nil).
type Row []any

// Events is the domain event log (0001_init, 0002_outbox): a partition is
// archived once the outbox relay has published all of its events.
var Events = Table{
	Name: "events",
	Columns: []Column{
		{"id", Int}, {"kind", Text}, {"subject_id", Int}, {"payload", Text}, {"created_at", Int}, {"published_at", NullInt},
	},
	Time:   "created_at",
	SortBy: "subject_id",
	Ready:  "published_at IS NOT NULL",
}

// Notifications is the in-app inbox (0004_notify).
var Notifications = Table{
	Name: "notifications",
	Columns: []Column{
		{"id", Int}, {"user_id", Int}, {"type", Text}, {"actor_id", Int}, {"subject_id", Int}, {"dedup_key", Text},
		{"body", Text}, {"in_app", Int}, {"created_at", Int}, {"read_at", NullInt},
	},
	Time:   "created_at",
	SortBy: "user_id",
}

// KnownTables are the tables the archiver can tier, by name.
func KnownTables() map[string]Table {
	return map[string]Table{Events.Name: Events, Notifications.Name: Notifications}
}

func (t Table) key() string { return t.Columns[0].Name }

func (t Table) index(col string) int {
	for i, c := range t.Columns {
		if c.Name == col {
			return i
		}
	}
	return -1
}

func (t Table) columnList() string {
	names := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		names[i] = c.Name
	}
	return strings.Join(names, ", ")
}

func (t Table) validate() error {
	if t.Name == "" || len(t.Columns) == 0 || t.Columns[0].Kind != Int {
		return fmt.Errorf("archive: table %q: the first column must be the integer key", t.Name)
	}
	for _, col := range []string{t.Time, t.SortBy} {
		if i := t.index(col); i < 0 || t.Columns[i].Kind != Int {
			return fmt.Errorf("archive: table %s: %q is not an integer column", t.Name, col)
		}
	}
	return nil
}

// scanner returns destinations for one row of t and a function that turns
// them into a Row.
func (t Table) scanner() ([]any, func() Row) {
	dest := make([]any, len(t.Columns))
	for i, c := range t.Columns {
		switch c.Kind {
		case Int, NullInt:
			dest[i] = new(sql.NullInt64)
		case Text:
			dest[i] = new(sql.NullString)
		}
	}
	return dest, func() Row {
		r := make(Row, len(t.Columns))
		for i := range t.Columns {
			switch d := dest[i].(type) {
			case *sql.NullInt64:
				if d.Valid {
					r[i] = d.Int64
				}
			case *sql.NullString:
				r[i] = d.String
			}
		}
		return r
	}
}

// Digest is the order-independent checksum of a set of rows: their count
// and the sum, modulo 2^256, of the SHA-256 of each row's canonical
// encoding. A row lost, added, doubled or changed changes it; the order of
// the rows does not, so the database and a file can be compared however
// each returns them.
type Digest struct {
	Rows         int64
	sum          [4]uint64
	MinID, MaxID int64
}

// Add adds one row of t.
func (d *Digest) Add(t Table, r Row) {
	var buf [256]byte
	h := sha256.Sum256(encodeRow(buf[:0], t, r))
	var carry uint64
	for i := range 4 {
		d.sum[i], carry = bits.Add64(d.sum[i], binary.BigEndian.Uint64(h[8*i:]), carry)
	}
	id := r[0].(int64)
	if d.Rows == 0 || id < d.MinID {
		d.MinID = id
	}
	if d.Rows == 0 || id > d.MaxID {
		d.MaxID = id
	}
	d.Rows++
}

// Sum returns the checksum in hex.
func (d *Digest) Sum() string {
	var b [32]byte
	for i := range 4 {
		binary.BigEndian.PutUint64(b[8*i:], d.sum[i])
	}
	return hex.EncodeToString(b[:])
}

// encodeRow appends the canonical encoding of r: per column, an Int as 8
// bytes big-endian, a Text as its length (uvarint) and bytes, a NullInt as
// 0 (null) or 1 and 8 bytes.
func encodeRow(b []byte, t Table, r Row) []byte {
	for i, c := range t.Columns {
		switch c.Kind {
		case Int:
			b = binary.BigEndian.AppendUint64(b, uint64(r[i].(int64)))
		case Text:
			s := r[i].(string)
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		case NullInt:
			if r[i] == nil {
				b = append(b, 0)
			} else {
				b = append(b, 1)
				b = binary.BigEndian.AppendUint64(b, uint64(r[i].(int64)))
			}
		}
	}
	return b
}

// schema returns the Parquet schema of t's files.
func (t Table) schema() *parquet.Schema {
	g := parquet.Group{}
	for _, c := range t.Columns {
		switch c.Kind {
		case Int:
			g[c.Name] = parquet.Int(64)
		case Text:
			g[c.Name] = parquet.String()
		case NullInt:
			g[c.Name] = parquet.Optional(parquet.Int(64))
		}
	}
	return parquet.NewSchema(t.Name, g)
}

// bloomBitsPerValue sizes the bloom filter on the sort column of each row
// group (about 1% false positives): readers skip the row groups, and so
// the bytes, of a file that cannot hold the subject or user they look for.
const bloomBitsPerValue = 10

// fileWriter writes rows of t to a Parquet file, in the order given.
type fileWriter struct {
	t      Table
	w      *parquet.Writer
	leaf   []int // Parquet column index of each of t.Columns
	buf    []parquet.Row
	digest Digest
}

func newFileWriter(out io.Writer, t Table, rowGroupRows int64) *fileWriter {
	s := t.schema()
	fw := &fileWriter{t: t, leaf: make([]int, len(t.Columns))}
	for i, c := range t.Columns {
		leaf, _ := s.Lookup(c.Name)
		fw.leaf[i] = leaf.ColumnIndex
	}
	fw.w = parquet.NewWriter(out, s, parquet.Compression(&zstd.Codec{}), parquet.MaxRowsPerRowGroup(rowGroupRows),
		parquet.BloomFilters(parquet.SplitBlockFilter(bloomBitsPerValue, t.SortBy)),
		parquet.CreatedBy("blueprint-archive", "1", ""))
	return fw
}

func (fw *fileWriter) write(r Row) error {
	fw.digest.Add(fw.t, r)
	row := make(parquet.Row, len(fw.t.Columns))
	for i, c := range fw.t.Columns {
		col := fw.leaf[i]
		switch c.Kind {
		case Int:
			row[col] = parquet.Int64Value(r[i].(int64)).Level(0, 0, col)
		case Text:
			row[col] = parquet.ByteArrayValue([]byte(r[i].(string))).Level(0, 0, col)
		case NullInt:
			if r[i] == nil {
				row[col] = parquet.NullValue().Level(0, 0, col)
			} else {
				row[col] = parquet.Int64Value(r[i].(int64)).Level(0, 1, col)
			}
		}
	}
	fw.buf = append(fw.buf, row)
	if len(fw.buf) >= 1024 {
		return fw.flush()
	}
	return nil
}

func (fw *fileWriter) flush() error {
	if _, err := fw.w.WriteRows(fw.buf); err != nil {
		return fmt.Errorf("archive: parquet: %w", err)
	}
	fw.buf = fw.buf[:0]
	return nil
}

func (fw *fileWriter) close() error {
	if err := fw.flush(); err != nil {
		return err
	}
	if err := fw.w.Close(); err != nil {
		return fmt.Errorf("archive: parquet: %w", err)
	}
	return nil
}

// errBadFile reports a file that is not a readable archive of its table.
var errBadFile = errors.New("archive: unreadable or foreign Parquet file")

// readFile calls fn with each row of the Parquet file data of table t, in
// file order. With eq set (a value of t.SortBy) it skips the row groups
// whose statistics or bloom filter exclude eq and passes only rows with
// that value; it returns the number of row groups read.
func readFile(data []byte, t Table, eq *int64, fn func(Row) error) (int, error) {
	return readFileAt(bytes.NewReader(data), int64(len(data)), t, eq, fn)
}

// readFileAt is readFile over a file of size bytes read through r: it
// reads the footer, the bloom filters it needs, and the column chunks of
// the row groups it does not skip, not the whole file (bloom filters are
// read lazily, only for the row groups the statistics do not exclude).
func readFileAt(r io.ReaderAt, size int64, t Table, eq *int64, fn func(Row) error) (int, error) {
	f, err := parquet.OpenFile(r, size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errBadFile, err)
	}
	s := f.Schema()
	leaf := make([]int, len(t.Columns))
	for i, c := range t.Columns {
		l, ok := s.Lookup(c.Name)
		if !ok {
			return 0, fmt.Errorf("%w: no column %s", errBadFile, c.Name)
		}
		leaf[i] = l.ColumnIndex
	}
	sortIdx := t.index(t.SortBy)
	read := 0
	meta := f.Metadata()
	for g, rg := range f.RowGroups() {
		if eq != nil && g < len(meta.RowGroups) {
			if lo, hi, ok := int64Stats(meta.RowGroups[g].Columns[leaf[sortIdx]].MetaData.Statistics); ok && (*eq < lo || *eq > hi) {
				continue
			}
			if bf := rg.ColumnChunks()[leaf[sortIdx]].BloomFilter(); bf != nil {
				in, err := bf.Check(parquet.Int64Value(*eq))
				if err != nil {
					return read, fmt.Errorf("%w: bloom filter: %v", errBadFile, err)
				}
				if !in {
					continue
				}
			}
		}
		read++
		if err := readRowGroup(rg, t, leaf, func(r Row) error {
			if eq != nil && r[sortIdx].(int64) != *eq {
				return nil
			}
			return fn(r)
		}); err != nil {
			return read, err
		}
	}
	return read, nil
}

func readRowGroup(rg parquet.RowGroup, t Table, leaf []int, fn func(Row) error) error {
	rows := rg.Rows()
	defer rows.Close()
	buf := make([]parquet.Row, 256)
	for {
		n, err := rows.ReadRows(buf)
		for _, pr := range buf[:n] {
			r := make(Row, len(t.Columns))
			for i, c := range t.Columns {
				if leaf[i] >= len(pr) {
					return fmt.Errorf("%w: short row", errBadFile)
				}
				v := pr[leaf[i]]
				switch {
				case v.IsNull() && c.Kind == NullInt:
					r[i] = nil
				case v.IsNull():
					return fmt.Errorf("%w: null in %s", errBadFile, c.Name)
				case c.Kind == Text:
					r[i] = string(v.ByteArray())
				default:
					r[i] = v.Int64()
				}
			}
			if err := fn(r); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", errBadFile, err)
		}
	}
}

// int64Stats decodes the min and max of an INT64 column chunk (PLAIN
// encoding: 8 bytes little-endian).
func int64Stats(s format.Statistics) (lo, hi int64, ok bool) {
	lo8, hi8 := s.MinValue, s.MaxValue
	if len(lo8) != 8 || len(hi8) != 8 {
		lo8, hi8 = s.Min, s.Max
	}
	if len(lo8) != 8 || len(hi8) != 8 {
		return 0, 0, false
	}
	return int64(binary.LittleEndian.Uint64(lo8)), int64(binary.LittleEndian.Uint64(hi8)), true
}
