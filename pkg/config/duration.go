package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ParseDuration parses a duration in Go syntax ("90m", "1h30m") extended
// with days ("30d", "1d12h", "1.5d"), where a day is 24 hours. Operators
// think of retention in days, and Go's syntax stops at hours.
func ParseDuration(s string) (time.Duration, error) {
	orig := s
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration; write one such as 30d, 12h or 90m")
	}
	neg := false
	switch s[0] {
	case '-':
		neg = true
		s = s[1:]
	case '+':
		s = s[1:]
	}
	if s == "0" {
		return 0, nil
	}
	var total float64 // nanoseconds; float so "1.5d" works, range-checked below
	for s != "" {
		i := 0
		for i < len(s) && (s[i] == '.' || (s[i] >= '0' && s[i] <= '9')) {
			i++
		}
		num := s[:i]
		if num == "" {
			return 0, fmt.Errorf("invalid duration %q; write one such as 30d, 12h or 90m", orig)
		}
		s = s[i:]
		j := 0
		for j < len(s) && s[j] != '.' && (s[j] < '0' || s[j] > '9') {
			j++
		}
		unit := s[:j]
		s = s[j:]
		if unit == "" {
			return 0, fmt.Errorf("missing unit in duration %q; write one such as 30d, 12h or 90m", orig)
		}
		v, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q; write one such as 30d, 12h or 90m", orig)
		}
		if unit == "d" {
			total += v * float64(24*time.Hour)
			continue
		}
		d, err := time.ParseDuration(num + unit)
		if err != nil {
			return 0, fmt.Errorf("unknown unit %q in duration %q; use d, h, m, s, ms, us or ns", unit, orig)
		}
		total += float64(d)
	}
	if total > math.MaxInt64 {
		return 0, fmt.Errorf("duration %q is too long", orig)
	}
	d := time.Duration(total)
	if neg {
		d = -d
	}
	return d, nil
}

// FormatDuration writes d the way ParseDuration reads it, using days for
// whole days so that 720h reads as 30d.
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	sign := ""
	if d < 0 {
		sign = "-"
		d = -d
	}
	day := 24 * time.Hour
	if d >= day {
		days := d / day
		rest := d % day
		if rest == 0 {
			return fmt.Sprintf("%s%dd", sign, days)
		}
		return fmt.Sprintf("%s%dd%s", sign, days, trimZeroUnits(rest.String()))
	}
	return sign + trimZeroUnits(d.String())
}

// trimZeroUnits turns Go's "2h0m0s" into "2h".
func trimZeroUnits(s string) string {
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Interval is a period between background runs. In YAML it is a number of
// hours (the seed's format, e.g. "cleanup_interval: 24") or a duration
// string ("12h", "7d").
type Interval time.Duration

// Duration returns the interval as a time.Duration.
func (i Interval) Duration() time.Duration { return time.Duration(i) }

// String formats the interval as ParseDuration reads it.
func (i Interval) String() string { return FormatDuration(time.Duration(i)) }

// UnmarshalYAML accepts a number of hours or a duration string.
func (i *Interval) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("expected a number of hours or a duration such as 12h or 7d")
	}
	if n.ShortTag() == "!!int" || n.ShortTag() == "!!float" || n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
		if h, err := strconv.ParseFloat(strings.TrimSpace(n.Value), 64); err == nil {
			if math.IsNaN(h) || math.IsInf(h, 0) || h*float64(time.Hour) > math.MaxInt64 || h*float64(time.Hour) < math.MinInt64 {
				return fmt.Errorf("%s hours is out of range", n.Value)
			}
			*i = Interval(time.Duration(h * float64(time.Hour)))
			return nil
		}
	}
	if n.ShortTag() != "!!str" {
		return fmt.Errorf("%q is not a number of hours or a duration such as 12h or 7d", n.Value)
	}
	d, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*i = Interval(d)
	return nil
}

// MarshalYAML writes the interval as a duration string.
func (i Interval) MarshalYAML() (any, error) { return i.String(), nil }

// Duration is a length of time written as a duration string ("30s", "2m").
// Unlike Interval, a bare number is refused: its unit would be a guess.
type Duration time.Duration

// Duration returns the value as a time.Duration.
func (d Duration) Duration() time.Duration { return time.Duration(d) }

// String formats the duration as ParseDuration reads it.
func (d Duration) String() string { return FormatDuration(time.Duration(d)) }

// UnmarshalYAML accepts a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return fmt.Errorf("%q is not a duration; write one with a unit, such as 30s or 2m", n.Value)
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// ByteSize is a size in bytes. In YAML it is a plain number of bytes or a
// number with a unit: KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers
// of 1024).
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	// Longer suffixes first so "KiB" is not read as "B".
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

// ParseByteSize reads "1048576", "1MiB", "512 KiB" or "2MB".
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range byteUnits {
		if len(t) > len(u.suffix) && strings.EqualFold(t[len(t)-len(u.suffix):], u.suffix) {
			mult = u.mult
			t = strings.TrimSpace(t[:len(t)-len(u.suffix)])
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not a size; write bytes or a size such as 512KiB or 1MiB", s)
	}
	if v*float64(mult) > math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return ByteSize(v * float64(mult)), nil
}

// UnmarshalYAML accepts a number of bytes or a size with a unit.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("expected a size such as 1048576 or 1MiB")
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return err
	}
	*b = v
	return nil
}
