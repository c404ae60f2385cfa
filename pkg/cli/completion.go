package cli

import (
	"strings"

	"github.com/spf13/cobra"
)

// NewCmdCompletion is "secauto completion".
func NewCmdCompletion(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print a shell completion script",
		Long: strings.TrimSpace(`
Print the completion script for a shell. Besides commands and flags, it
completes job ids for "jobs show" and backup files for "backup restore"
from the data directory.

    bash        source <(secauto completion bash)
                or save it as /etc/bash_completion.d/secauto
    zsh         secauto completion zsh > "${fpath[1]}/_secauto"
    fish        secauto completion fish > ~/.config/fish/completions/secauto.fish
    powershell  secauto completion powershell | Out-String | Invoke-Expression

The same scripts are shipped in the completions/ directory.
` + exitStatus("")),
		Example: example(`
  source <(secauto completion bash)
  secauto completion zsh > ~/.zsh/completions/_secauto`),
		ValidArgs: []string{"bash", "zsh", "fish", "powershell"},
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf("name one shell: bash, zsh, fish or powershell")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return writeCompletion(cmd.Root(), args[0], f.IOStreams.Out)
		},
	}
	return cmd
}
