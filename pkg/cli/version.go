package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// VersionOptions holds "version"'s flags and dependencies.
type VersionOptions struct {
	IO     *IOStreams
	Build  BuildInfo
	Output outputFormat
}

// NewCmdVersion is "secauto version".
func NewCmdVersion(f *Factory, runF func(*VersionOptions) error) *cobra.Command {
	opts := &VersionOptions{IO: f.IOStreams, Build: f.Build}
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of secauto",
		Long: strings.TrimSpace(`
Print the version, commit and build date of this secauto binary.
` + exitStatus("")),
		Example: example(`
  secauto version
  secauto version -o json`),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return versionRun(opts)
		},
	}
	addOutputFlag(cmd, &opts.Output)
	return cmd
}

// resolveBuild fills what the linker did not set from the module's build
// information, so "go install" builds report their version too.
func resolveBuild(b BuildInfo) BuildInfo {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if b.Version == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		b.Version = strings.TrimPrefix(info.Main.Version, "v")
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			if b.Commit == "" {
				b.Commit = s.Value
			}
		case "vcs.time":
			if b.Date == "" {
				b.Date = s.Value
			}
		}
	}
	return b
}

func versionRun(opts *VersionOptions) error {
	b := resolveBuild(opts.Build)
	if opts.Output != formatTable {
		return printData(opts.IO.Out, opts.Output, struct {
			BuildInfo
			Go string `json:"go"`
		}{b, runtime.Version()})
	}
	_, err := fmt.Fprintln(opts.IO.Out, versionLine(b))
	return err
}

func versionLine(b BuildInfo) string {
	s := "secauto " + b.Version
	var extra []string
	if b.Commit != "" {
		c := b.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		extra = append(extra, "commit "+c)
	}
	if b.Date != "" {
		extra = append(extra, "built "+b.Date)
	}
	extra = append(extra, runtime.Version())
	return s + " (" + strings.Join(extra, ", ") + ")"
}
