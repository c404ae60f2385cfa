// Package cli owns secauto's command line: the command tree, global flags,
// how each command opens the data directory, what it prints (tables for
// people, JSON and YAML for scripts) and the exit codes. The work itself
// is done by pkg/store and pkg/server; commands are thin adapters over them.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/secauto/secauto/pkg/config"
	"github.com/secauto/secauto/pkg/store"
)

// Exit codes, documented under EXIT STATUS in every command's help.
const (
	ExitOK      = 0 // success
	ExitFailure = 1 // the command failed, or found problems (verify) or no job (jobs show)
	ExitUsage   = 2 // bad usage or configuration, or the data directory is held by another process
)

// Build describes the binary; the variables are set at link time with
// -ldflags "-X github.com/secauto/secauto/pkg/cli.version=1.2.3".
var (
	version = "dev"
	commit  = ""
	date    = ""
)

// BuildInfo is what "secauto version" reports.
type BuildInfo struct {
	Version string `json:"version"`
	Commit  string `json:"commit,omitempty"`
	Date    string `json:"date,omitempty"`
}

// Main runs secauto with args (without the program name) on the process's
// standard streams and returns the exit code.
func Main(args []string) int {
	f := NewFactory(System(os.Getenv), os.Getenv)
	return Run(f, args)
}

// Run runs secauto with the given factory and returns the exit code; tests
// call it with test streams.
func Run(f *Factory, args []string) int {
	root := NewCmdRoot(f)
	root.SetArgs(rewriteLegacyArgs(args))
	root.SetIn(f.IOStreams.In)
	root.SetOut(f.IOStreams.Out)
	root.SetErr(f.IOStreams.ErrOut)
	cmd, err := root.ExecuteC()
	code := exitCode(err)
	if err != nil && !errors.Is(err, errSilent) {
		printError(f.IOStreams.ErrOut, err)
		if code == ExitUsage && isUsage(err) && cmd != nil {
			fmt.Fprintf(f.IOStreams.ErrOut, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
	}
	return code
}

// printError writes err to stderr, one "secauto: " line per line of it.
func printError(w io.Writer, err error) {
	for _, line := range strings.Split(strings.TrimRight(err.Error(), "\n"), "\n") {
		fmt.Fprintf(w, "secauto: %s\n", line)
	}
}

// errSilent ends a command whose output already explained the failure
// (verify's problem list): exit 1 with nothing more on stderr.
var errSilent = errors.New("failed")

// usageError marks a mistake in how a command was called.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// configError marks a configuration that could not be loaded.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// exitCode is the one place that maps an error to an exit code.
func exitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var (
		ue     *usageError
		ce     *configError
		locked *store.LockedError
		dirErr *store.DirError
		cerrs  config.Errors
		nd     *noDaemonError
	)
	switch {
	case errors.As(err, &ue), errors.As(err, &ce), errors.As(err, &cerrs), isUsage(err):
		return ExitUsage
	case errors.As(err, &locked), errors.As(err, &dirErr), errors.As(err, &nd):
		return ExitUsage
	}
	return ExitFailure
}

// isUsage reports whether err is a usage mistake, including the ones cobra
// makes itself (unknown command, bad arguments).
func isUsage(err error) bool {
	var ue *usageError
	if errors.As(err, &ue) {
		return true
	}
	msg := err.Error()
	for _, prefix := range []string{"unknown command ", "unknown flag", "unknown shorthand flag", "invalid argument ", "flag needs an argument", "required flag", "accepts ", "requires at least"} {
		if strings.HasPrefix(msg, prefix) {
			return true
		}
	}
	return false
}

// legacyFlags are the daemon flags the first releases took without a
// subcommand and with one dash ("secauto -port 8080 -workers 5"); the bool
// says whether the flag takes a value.
var legacyFlags = map[string]bool{
	"port": true, "workers": true, "address": true, "config": true, "data-dir": true, "insecure": false,
}

// rewriteLegacyArgs turns the first releases' invocation into today's:
// "-port 8080 -workers 5" becomes "serve --port 8080 --workers 5". Any
// other command line is returned unchanged.
func rewriteLegacyArgs(args []string) []string {
	changed, serveFlag, positional := false, false, false
	out := make([]string, 0, len(args)+1)
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			out = append(out, args[i:]...)
			break
		}
		if !strings.HasPrefix(a, "-") {
			positional = true
			out = append(out, a)
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		takesValue, known := legacyFlags[name]
		if known {
			if !strings.HasPrefix(a, "--") {
				a = "-" + a
				changed = true
			}
			if name != "config" && name != "data-dir" {
				serveFlag = true
			}
		}
		out = append(out, a)
		if known && takesValue && !hasValue && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	if serveFlag && !positional {
		out = append([]string{"serve"}, out...)
		changed = true
	}
	if !changed {
		return args
	}
	return out
}
