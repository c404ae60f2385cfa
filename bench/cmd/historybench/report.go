package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/secauto/secauto/bench/internal/gauge"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/tw"
)

// The thresholds a long history is held to, beside the empty store
// measured in the same run (the first -jobs size).
const (
	maxOpenSeconds  = 10.0
	minAckRatio     = 0.8 // phase A acks/s, of the empty store's
	maxP99Ms        = 50.0
	maxWriteRatio   = 1.5 // phase B bytes written per ack, of the empty store's
	maxHWMOfJSON    = 1.5 // peak memory, of jobs.json's size…
	minHWMLimit     = 1 << 30
	maxDegradeTo1m  = 2.0 // beyond 1m jobs: no figure more than this much worse than at 1m
	degradeFromJobs = 1_000_000
)

// check is one threshold applied to one figure of one size.
type check struct {
	Figure string  `json:"figure"` // open, acks, p99, write, memory
	Value  float64 `json:"value"`
	Limit  float64 `json:"limit"`
	Rule   string  `json:"rule"` // as the table prints it
	Pass   bool    `json:"pass"`
}

// evaluate fills every result's checks and reports whether all passed.
func evaluate(rs []*result) bool {
	pass := true
	var base, ref *result
	if len(rs) > 0 && rs[0].Error == "" {
		base = rs[0]
	}
	for _, r := range rs {
		if r.Jobs == degradeFromJobs && r.Error == "" {
			ref = r
		}
	}
	for _, r := range rs {
		if r.Error != "" || r.A == nil || r.B == nil {
			pass = false
			continue
		}
		add := func(figure string, value, limit float64, atMost bool, rule string) {
			ok := value <= limit
			if !atMost {
				ok = value >= limit
			}
			r.Checks = append(r.Checks, check{Figure: figure, Value: value, Limit: limit, Rule: rule, Pass: ok})
			pass = pass && ok
		}
		// Beyond 1m jobs every threshold may be up to maxDegradeTo1m
		// worse: opening reads every job, so its time grows with them.
		slack := 1.0
		if r.Jobs > degradeFromJobs {
			slack = maxDegradeTo1m
		}
		add("open", r.OpenSeconds, slack*maxOpenSeconds, true, fmt.Sprintf("≤ %gs", slack*maxOpenSeconds))
		add("p99", r.A.Bench.Latency.P99, slack*maxP99Ms, true, fmt.Sprintf("< %gms", slack*maxP99Ms))
		memLimit := max(slack*maxHWMOfJSON*float64(r.JobsJSONBytes), minHWMLimit)
		add("memory", float64(r.PeakHWM), memLimit, true, "≤ "+gauge.Bytes(memLimit))
		add("errors", float64(r.A.Bench.Errors+r.B.Bench.Errors), 0, true, "no failed request")
		if base != nil && r != base {
			if base.A.Bench.PerSecond > 0 {
				add("acks", r.A.Bench.PerSecond/base.A.Bench.PerSecond, minAckRatio/slack, false,
					fmt.Sprintf("%.2f× empty, ≥ %g×", r.A.Bench.PerSecond/base.A.Bench.PerSecond, minAckRatio/slack))
			}
			if base.B.WritePerAck > 0 {
				add("write", r.B.WritePerAck/base.B.WritePerAck, slack*maxWriteRatio, true,
					fmt.Sprintf("%.2f× empty, ≤ %g×", r.B.WritePerAck/base.B.WritePerAck, slack*maxWriteRatio))
			}
		}
		if ref != nil && r.Jobs > degradeFromJobs && ref.A != nil && ref.B != nil {
			vs := func(figure string, ratio float64) {
				add(figure, ratio, maxDegradeTo1m, true, fmt.Sprintf("%.2f× worse than %s, ≤ %g×", ratio, count(ref.Jobs), maxDegradeTo1m))
			}
			// Open is held to its slackened limit above: it reads
			// every job, so it is no figure to hold to 1m's.
			if r.A.Bench.PerSecond > 0 {
				vs("acks", ref.A.Bench.PerSecond/r.A.Bench.PerSecond)
			}
			if ref.A.Bench.Latency.P99 > 0 {
				vs("p99", r.A.Bench.Latency.P99/ref.A.Bench.Latency.P99)
			}
			if ref.B.WritePerAck > 0 {
				vs("write", r.B.WritePerAck/ref.B.WritePerAck)
			}
			// Memory grows with the history by design: per byte of
			// jobs.json it may not grow more than 2×.
			if ref.PeakHWM > 0 && ref.JobsJSONBytes > 0 && r.JobsJSONBytes > 0 {
				vs("memory", (float64(r.PeakHWM)/float64(r.JobsJSONBytes))/(float64(ref.PeakHWM)/float64(ref.JobsJSONBytes)))
			}
		}
	}
	return pass
}

func printTable(w io.Writer, rep *report) error {
	tbl := tablewriter.NewTable(w,
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithHeaderAlignment(tw.AlignCenter),
		tablewriter.WithRowAlignment(tw.AlignRight),
		tablewriter.WithRowAutoWrap(tw.WrapNone),
	)
	tbl.Header([]string{"jobs", "open", "A acks/s", "A p99", "B written/ack", "peak memory", "jobs.json", "checks"})
	for _, r := range rep.Results {
		if r.Error != "" && r.A == nil && r.B == nil {
			if err := tbl.Append([]string{count(r.Jobs), "failed: " + gauge.Shorten(r.Error, 70), "", "", "", "", "", ""}); err != nil {
				return err
			}
			continue
		}
		cell := func(figure, value string) string {
			lines := []string{value}
			for _, c := range r.Checks {
				if c.Figure == figure {
					lines = append(lines, c.Rule+" "+verdict(c.Pass))
				}
			}
			return strings.Join(lines, "\n")
		}
		acks, p99, write := "-", "-", "-"
		if r.A != nil {
			acks = fmt.Sprintf("%.0f", r.A.Bench.PerSecond)
			p99 = ms(r.A.Bench.Latency.P99)
		}
		if r.B != nil {
			write = gauge.Bytes(r.B.WritePerAck)
		}
		size := gauge.Bytes(float64(r.JobsJSONBytes))
		if r.JobsJSONBytesEnd > 0 {
			size += "\nend " + gauge.Bytes(float64(r.JobsJSONBytesEnd))
		}
		failed, total := 0, len(r.Checks)
		for _, c := range r.Checks {
			if !c.Pass {
				failed++
			}
		}
		summary := fmt.Sprintf("%d/%d pass", total-failed, total)
		if r.Error != "" {
			summary = "failed: " + gauge.Shorten(r.Error, 40)
		}
		row := []string{
			count(r.Jobs),
			cell("open", fmt.Sprintf("%.2fs", r.OpenSeconds)),
			cell("acks", acks),
			cell("p99", p99),
			cell("write", write),
			cell("memory", gauge.Bytes(float64(r.PeakHWM))),
			size,
			cell("errors", summary),
		}
		if err := tbl.Append(row); err != nil {
			return err
		}
	}
	if err := tbl.Render(); err != nil {
		return err
	}
	var b strings.Builder
	first := "phase B, then phase A"
	if rep.Order == "ab" {
		first = "phase A, then phase B"
	}
	fmt.Fprintf(&b, "\nsecauto serve on stores of completed jobs of about 1.5 KB; %d CPUs, %s, data in %s. Each store: open, %s, stop.\n", rep.CPUs, rep.GoVersion, rep.Dir, first)
	fmt.Fprintf(&b, "  - open: from starting secauto serve to /health answering 200.\n")
	fmt.Fprintf(&b, "  - A acks/s, A p99: secauto bench -c %d for %gs (acknowledged submissions, as fast as they are answered).\n", rep.A.Clients, rep.A.Seconds)
	fmt.Fprintf(&b, "  - B written/ack: secauto bench --rate %g for %gs; the daemon's write_bytes (/proc/PID/io) over it, per acknowledged submission.\n", rep.B.Rate, rep.B.Seconds)
	fmt.Fprintf(&b, "  - peak memory: the daemon's VmHWM over the whole run, its stop included; jobs.json: its size when the daemon opened it, and after it stopped.\n")
	if len(rep.Results) > 0 {
		fmt.Fprintf(&b, "  - ratios are to the %s-job store of the same run; beyond %s jobs each figure is also held to %g× its %s figure (memory per byte of jobs.json).\n",
			count(rep.Results[0].Jobs), count(degradeFromJobs), maxDegradeTo1m, count(degradeFromJobs))
	}
	if rep.Pass {
		b.WriteString("Every check passed.\n")
	} else {
		b.WriteString("Some checks FAILED (or a size did not run).\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func verdict(ok bool) string {
	if ok {
		return "pass"
	}
	return "FAIL"
}

// ms writes a latency in milliseconds for people.
func ms(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v >= 1000:
		return fmt.Sprintf("%.2fs", v/1000)
	case v >= 10:
		return fmt.Sprintf("%.1fms", v)
	}
	return fmt.Sprintf("%.2fms", v)
}
