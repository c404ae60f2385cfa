package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"
	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

// outputFormat is the value of -o/--output.
type outputFormat string

const (
	formatTable outputFormat = "table"
	formatJSON  outputFormat = "json"
	formatYAML  outputFormat = "yaml"
)

func (o *outputFormat) String() string { return string(*o) }
func (o *outputFormat) Type() string   { return "format" }
func (o *outputFormat) Set(v string) error {
	switch outputFormat(v) {
	case formatTable, formatJSON, formatYAML:
		*o = outputFormat(v)
		return nil
	}
	return fmt.Errorf("use table, json or yaml")
}

// addOutputFlag gives a command -o/--output, table by default.
func addOutputFlag(cmd *cobra.Command, o *outputFormat) {
	*o = formatTable
	cmd.Flags().VarP(o, "output", "o", "output format: table, json or yaml")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(
		[]string{"table\tfor people", "json\tfor scripts", "yaml\tfor people and scripts"}, cobra.ShellCompDirectiveNoFileComp))
}

// printData writes v as JSON or YAML. The YAML has the JSON's field names
// and order, so the two formats never disagree.
func printData(w io.Writer, format outputFormat, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("cannot encode output: %w", err)
	}
	if format == formatJSON {
		_, err = fmt.Fprintf(w, "%s\n", data)
		return err
	}
	var n yaml.Node
	if err := yaml.Unmarshal(data, &n); err != nil {
		return fmt.Errorf("cannot encode output: %w", err)
	}
	blockStyle(&n)
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return fmt.Errorf("cannot encode output: %w", err)
	}
	return enc.Close()
}

// blockStyle drops the flow style YAML gives parsed JSON, so the encoder
// writes block YAML and quotes only where needed.
func blockStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// table lays out rows for people: no borders, columns two spaces apart.
// On a terminal, cells may be coloured and long ones are cut to fit.
type table struct {
	w       io.Writer
	tty     bool
	exact   bool // headers shown as given (P99, not P 99)
	headers []string
	rows    [][]string
}

func newTable(ios *IOStreams, headers ...string) *table {
	return &table{w: ios.Out, tty: ios.IsStdoutTTY(), headers: headers}
}

func (t *table) addRow(cells ...string) { t.rows = append(t.rows, cells) }

// headerFormat upper-cases headers and turns _ into spaces, unless they
// are to be shown exactly as given.
func headerFormat(exact bool) tw.State {
	if exact {
		return tw.Off
	}
	return tw.On
}

func (t *table) render() error {
	var buf bytes.Buffer
	tbl := tablewriter.NewTable(&buf,
		tablewriter.WithRenderer(renderer.NewBlueprint(tw.Rendition{
			Borders:  tw.BorderNone,
			Symbols:  tw.NewSymbols(tw.StyleNone),
			Settings: tw.Settings{Separators: tw.SeparatorsNone, Lines: tw.LinesNone},
		})),
		tablewriter.WithHeaderAlignment(tw.AlignLeft),
		tablewriter.WithRowAlignment(tw.AlignLeft),
		tablewriter.WithHeaderAutoFormat(headerFormat(t.exact)),
		tablewriter.WithRowAutoWrap(tw.WrapNone),
		tablewriter.WithHeaderAutoWrap(tw.WrapNone),
		tablewriter.WithPadding(tw.Padding{Right: "  ", Overwrite: true}),
		tablewriter.WithTrimSpace(tw.Off),
	)
	tbl.Header(t.headers)
	for _, r := range t.rows {
		if err := tbl.Append(r); err != nil {
			return fmt.Errorf("cannot lay out table: %w", err)
		}
	}
	if err := tbl.Render(); err != nil {
		return fmt.Errorf("cannot lay out table: %w", err)
	}
	// The last column is padded too; scripts and diffs prefer no trailing
	// blanks.
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	_, err := io.WriteString(t.w, strings.Join(lines, "\n")+"\n")
	return err
}

// formatTime shows t relative to now on a terminal ("3 hours ago") and as
// RFC 3339 otherwise, so piped output stays exact.
func formatTime(tty bool, t *time.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	if !tty {
		return t.UTC().Format(time.RFC3339)
	}
	return relativeTime(*t, now)
}

func relativeTime(t, now time.Time) string {
	d := now.Sub(t)
	suffix := "ago"
	if d < 0 {
		d, suffix = -d, "from now"
	}
	unit := func(n int64, name string) string {
		if n != 1 {
			name += "s"
		}
		return fmt.Sprintf("%d %s %s", n, name, suffix)
	}
	switch {
	case d < time.Minute:
		if suffix == "ago" {
			return "just now"
		}
		return "in a moment"
	case d < time.Hour:
		return unit(int64(d/time.Minute), "minute")
	case d < 24*time.Hour:
		return unit(int64(d/time.Hour), "hour")
	case d < 30*24*time.Hour:
		return unit(int64(d/(24*time.Hour)), "day")
	case d < 365*24*time.Hour:
		return unit(int64(d/(30*24*time.Hour)), "month")
	}
	return unit(int64(d/(365*24*time.Hour)), "year")
}

// humanDuration writes d compactly: 850ms, 4.2s, 3m4s, 2h5m, 3d4h.
func humanDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "-"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		s := fmt.Sprintf("%.1fs", d.Seconds())
		return strings.Replace(s, ".0s", "s", 1)
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

// humanSize writes n bytes in binary units: 512 B, 1.5 KiB, 12 MiB.
func humanSize(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB"}
	v := float64(n)
	i := -1
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v < 10 && math.Round(v*10) != math.Round(v)*10 {
		return fmt.Sprintf("%.1f %s", v, units[i])
	}
	return fmt.Sprintf("%.0f %s", v, units[i])
}

// truncate cuts s to at most n characters, marking the cut, and keeps it
// on one line.
func truncate(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if n <= 0 || utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// plural writes "1 job", "3 jobs".
func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
