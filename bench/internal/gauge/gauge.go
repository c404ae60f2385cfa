// Package gauge holds what the bench commands share to read a process's
// figures from /proc and to print them.
package gauge

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// field reads one "Name: value" line of /proc/PID/<file> (pid 0 is this
// process).
func field(pid int, file, name string) (string, bool) {
	path := "/proc/self/" + file
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/%s", pid, file)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", false
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// WriteBytes is write_bytes of /proc/PID/io (pid 0 is this process): the
// bytes the process sent to the block layer.
func WriteBytes(pid int) (int64, error) {
	v, ok := field(pid, "io", "write_bytes")
	if !ok {
		return 0, fmt.Errorf("cannot read write_bytes of /proc/%d/io", pid)
	}
	return strconv.ParseInt(v, 10, 64)
}

// VmHWM is VmHWM of /proc/PID/status in bytes (pid 0 is this process; 0
// once the process is gone): its peak resident memory.
func VmHWM(pid int) int64 {
	v, ok := field(pid, "status", "VmHWM")
	if !ok {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
	return n << 10
}

// Bytes writes n bytes with a binary unit.
func Bytes(n float64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", n/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", n/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", n/(1<<10))
	}
	return fmt.Sprintf("%.0f B", n)
}

// Shorten cuts s to n characters, marking the cut.
func Shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
