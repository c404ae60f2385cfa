package cli

import (
	"bytes"
	"io"
	"os"

	"github.com/fatih/color"
	"github.com/mattn/go-isatty"
	"golang.org/x/term"
)

// IOStreams carries a command's standard streams and what is known about
// them. Whether colour is used is decided once, from the terminal, NO_COLOR,
// TERM=dumb and --no-color, and then only read.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer

	stdoutTTY bool
	stderrTTY bool
	color     bool
	width     int // terminal columns; 0 when unknown or not a terminal
}

// System returns streams for the process's stdin, stdout and stderr.
func System(getenv func(string) string) *IOStreams {
	outTTY := isTerminal(os.Stdout)
	s := &IOStreams{
		In:        os.Stdin,
		Out:       os.Stdout,
		ErrOut:    os.Stderr,
		stdoutTTY: outTTY,
		stderrTTY: isTerminal(os.Stderr),
	}
	s.color = colorAllowed(outTTY, getenv)
	if outTTY {
		if w, _, err := term.GetSize(int(os.Stdout.Fd())); err == nil {
			s.width = w
		}
	}
	return s
}

// colorAllowed is the colour decision before --no-color: only on a
// terminal, and never when NO_COLOR is set or TERM is dumb.
func colorAllowed(tty bool, getenv func(string) string) bool {
	return tty && getenv("NO_COLOR") == "" && getenv("TERM") != "dumb"
}

func isTerminal(f *os.File) bool {
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}

// TestStreams returns streams backed by buffers, not terminals and without
// colour, and the buffers for input, output and error output.
func TestStreams() (*IOStreams, *bytes.Buffer, *bytes.Buffer, *bytes.Buffer) {
	in, out, errOut := &bytes.Buffer{}, &bytes.Buffer{}, &bytes.Buffer{}
	return &IOStreams{In: in, Out: out, ErrOut: errOut}, in, out, errOut
}

// IsStdoutTTY reports whether stdout is a terminal: tables are then laid out
// for a person (relative times, truncation, colour) instead of for scripts.
func (s *IOStreams) IsStdoutTTY() bool { return s.stdoutTTY }

// IsStderrTTY reports whether stderr is a terminal, where progress is shown.
func (s *IOStreams) IsStderrTTY() bool { return s.stderrTTY }

// SetStdoutTTY overrides terminal detection, for tests.
func (s *IOStreams) SetStdoutTTY(v bool) { s.stdoutTTY = v }

// SetStderrTTY overrides terminal detection, for tests.
func (s *IOStreams) SetStderrTTY(v bool) { s.stderrTTY = v }

// ColorEnabled reports whether output may be coloured.
func (s *IOStreams) ColorEnabled() bool { return s.color }

// SetColorEnabled turns colour on or off; --no-color turns it off.
func (s *IOStreams) SetColorEnabled(v bool) { s.color = v }

// TerminalWidth returns the width of the terminal stdout is, or 0.
func (s *IOStreams) TerminalWidth() int { return s.width }

// SetTerminalWidth overrides the detected width, for tests.
func (s *IOStreams) SetTerminalWidth(w int) { s.width = w }

// ColorScheme returns the colouring functions for these streams.
func (s *IOStreams) ColorScheme() *ColorScheme { return &ColorScheme{enabled: s.color} }

// ColorScheme colours text for stdout when colour is enabled and returns
// it unchanged otherwise.
type ColorScheme struct{ enabled bool }

func (c *ColorScheme) paint(s string, attrs ...color.Attribute) string {
	if !c.enabled {
		return s
	}
	p := color.New(attrs...)
	p.EnableColor() // the decision was made in IOStreams, not by color's globals
	return p.Sprint(s)
}

// Bold emphasises s.
func (c *ColorScheme) Bold(s string) string { return c.paint(s, color.Bold) }

// Gray de-emphasises s.
func (c *ColorScheme) Gray(s string) string { return c.paint(s, color.FgHiBlack) }

// Green marks success.
func (c *ColorScheme) Green(s string) string { return c.paint(s, color.FgGreen) }

// Red marks failure.
func (c *ColorScheme) Red(s string) string { return c.paint(s, color.FgRed) }

// Yellow marks something in progress or needing attention.
func (c *ColorScheme) Yellow(s string) string { return c.paint(s, color.FgYellow) }

// Cyan marks something waiting.
func (c *ColorScheme) Cyan(s string) string { return c.paint(s, color.FgCyan) }

// Status colours a job or step status by its meaning.
func (c *ColorScheme) Status(s string) string {
	switch s {
	case "completed", "ok":
		return c.Green(s)
	case "failed":
		return c.Red(s)
	case "running":
		return c.Yellow(s)
	case "pending":
		return c.Cyan(s)
	case "cancelled", "skipped":
		return c.Gray(s)
	}
	return s
}
