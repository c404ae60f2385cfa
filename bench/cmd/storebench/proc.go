package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/secauto/secauto/bench/internal/gauge"
)

// writeBytes is the write_bytes of /proc/PID/io, summed over pids (0 is
// this process): bytes the processes sent to the block layer.
func writeBytes(pids ...int) int64 {
	var sum int64
	for _, pid := range pids {
		n, _ := gauge.WriteBytes(pid)
		sum += n
	}
	return sum
}

// resetPeakRSS sets VmHWM back to the current RSS (Linux 4.0 and later),
// so the next gauge.VmHWM(0) is the peak of what follows.
func resetPeakRSS() {
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// deviceStat names the block device holding dir and returns a reader of
// the bytes written to it (its /sys/dev/block stat, sectors of 512 bytes),
// or ok false when there is none (a virtual file system).
func deviceStat(dir string) (name string, read func() int64, ok bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return "", nil, false
	}
	maj, min := (st.Dev>>8)&0xfff|(st.Dev>>32)&^0xfff, st.Dev&0xff|(st.Dev>>12)&^0xff
	sys := fmt.Sprintf("/sys/dev/block/%d:%d", maj, min)
	if _, err := os.Stat(sys + "/stat"); err != nil {
		return "", nil, false
	}
	if target, err := os.Readlink(sys); err == nil {
		name = target[strings.LastIndex(target, "/")+1:]
	}
	return name, func() int64 {
		data, err := os.ReadFile(sys + "/stat")
		if err != nil {
			return 0
		}
		f := strings.Fields(string(data))
		if len(f) < 7 {
			return 0
		}
		n, _ := strconv.ParseInt(f[6], 10, 64)
		return n * 512
	}, true
}
