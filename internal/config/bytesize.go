package config

import (
	"fmt"
	"strconv"
	"strings"
)

// ByteSize is a number of bytes written as an integer or with a binary
// unit: 1048576, 512KiB, 64MiB, 4GiB (KB, MB and GB are read as their
// binary counterparts, as users mean them).
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"TIB", 1 << 40}, {"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10},
	{"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10},
	{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1},
}

// UnmarshalText parses a size such as "64MiB".
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.ToUpper(strings.TrimSpace(string(text)))
	mult := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("%q is not a size (examples: 1048576, 512KiB, 64MiB, 4GiB)", string(text))
	}
	if n > (1<<63-1)/mult {
		return fmt.Errorf("%q is too large", string(text))
	}
	*b = ByteSize(n * mult)
	return nil
}

// MarshalText writes the size with the largest exact binary unit.
func (b ByteSize) MarshalText() ([]byte, error) {
	for _, u := range byteUnits[:4] {
		if b != 0 && int64(b)%u.mult == 0 {
			return []byte(strconv.FormatInt(int64(b)/u.mult, 10) + strings.Replace(u.suffix, "IB", "iB", 1)), nil
		}
	}
	return []byte(strconv.FormatInt(int64(b), 10)), nil
}
