package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/secauto/secauto/bench/internal/gauge"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/tw"
)

// measurementNotes say where each figure comes from; they are the table's
// footnote and part of the JSON.
var measurementNotes = []string{
	"changes/s and jobs/s: durable changes (3 per job: created, running, completed) and whole jobs acknowledged per second of wall time.",
	"latency: of one change, from the call to its acknowledgement (river: Insert only; River makes the other two changes itself); job p99 is from the job's creation to its completion acknowledged (river: from its Insert to River reporting it completed).",
	"written/change: write_bytes of /proc/PID/io over the level, divided by changes: the peer's process, plus for river every PostgreSQL server process on this host (so other databases' writes too; what its checkpointer writes later is not in it). device_bytes in the JSON is the device's own count from /sys/dev/block, every process's writes included.",
	"peak RSS: VmHWM of the peer's own child process over the level (reset before each level through /proc/self/clear_refs, after the heap the bulk load left was returned to the system); for river the PostgreSQL server's memory is not in it.",
	"levels run one after another on the same store, so a store holds the jobs of the earlier levels too (jobs_before in the JSON).",
	"secauto ×: secauto's jobs/s divided by the peer's at the same pre-fill and writers.",
}

func printTable(w io.Writer, rep *report) error {
	tbl := tablewriter.NewTable(w,
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithHeaderAlignment(tw.AlignCenter),
		// Figures right-aligned, the peer's name left.
		tablewriter.WithRowAlignmentConfig(tw.CellAlignment{Global: tw.AlignRight,
			PerColumn: []tw.Align{tw.AlignRight, tw.AlignRight, tw.AlignLeft}}),
	)
	tbl.Header([]string{"prefill", "writers", "peer", "changes/s", "jobs/s", "p50", "p99", "job p99", "written/change", "peak RSS", "secauto ×"})
	rs := append([]result(nil), rep.Results...)
	order := map[string]int{}
	for i, p := range peers {
		order[p.name] = i
	}
	sort.SliceStable(rs, func(i, j int) bool {
		if rs[i].Prefill != rs[j].Prefill {
			return rs[i].Prefill < rs[j].Prefill
		}
		if rs[i].Writers != rs[j].Writers {
			return rs[i].Writers < rs[j].Writers
		}
		return order[rs[i].Peer] < order[rs[j].Peer]
	})
	for _, r := range rs {
		if r.Error != "" && r.Jobs == 0 {
			row := []string{count(r.Prefill), fmt.Sprint(r.Writers), r.Peer, "failed: " + gauge.Shorten(r.Error, 60), "", "", "", "", "", "", ""}
			if err := tbl.Append(row); err != nil {
				return err
			}
			continue
		}
		ratio := ""
		if r.SecautoRatio > 0 {
			ratio = fmt.Sprintf("%.2f×", r.SecautoRatio)
		}
		row := []string{
			count(r.Prefill), fmt.Sprint(r.Writers), r.Peer,
			fmt.Sprintf("%.0f", r.ChangesPerSec), fmt.Sprintf("%.0f", r.JobsPerSec),
			dur(r.ChangeLatency.P50), dur(r.ChangeLatency.P99), dur(r.JobLatency.P99),
			gauge.Bytes(r.WritePerChange), gauge.Bytes(float64(r.PeakRSS)), ratio,
		}
		if err := tbl.Append(row); err != nil {
			return err
		}
	}
	if err := tbl.Render(); err != nil {
		return err
	}
	var b strings.Builder
	what := fmt.Sprintf("%s at each writer count", rep.Duration)
	if rep.JobsPerRun > 0 {
		what = fmt.Sprintf("%d jobs at each writer count", rep.JobsPerRun)
	}
	fmt.Fprintf(&b, "\nJobs of about 1.5 KB, %s; %d CPUs, %s, stores in %s", what, rep.CPUs, rep.GoVersion, rep.Dir)
	if rep.Device != "" {
		fmt.Fprintf(&b, " (device %s)", rep.Device)
	}
	b.WriteString(".\nDurability: every change is on stable storage before it is acknowledged:\n")
	for _, p := range peers {
		if d, ok := rep.Durability[p.name]; ok {
			fmt.Fprintf(&b, "  %-12s %s\n", p.name, d)
		}
	}
	for _, n := range rep.Measurement {
		fmt.Fprintf(&b, "  - %s\n", n)
	}
	for _, s := range rep.Skipped {
		fmt.Fprintf(&b, "Skipped %s (%s jobs pre-filled): %s\n", s.Peer, count(s.Prefill), s.Reason)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func dur(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	case d >= 100*time.Microsecond:
		return d.Round(time.Microsecond).String()
	}
	return d.String()
}
