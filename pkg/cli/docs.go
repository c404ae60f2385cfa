package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// docsDate is the date written into generated man pages. It is fixed so
// that regenerating unchanged help gives byte-identical files.
var docsDate = time.Date(2025, time.July, 9, 0, 0, 0, 0, time.UTC)

// Shells that "secauto completion" supports, with the file each script is
// shipped as under completions/.
var completionFiles = map[string]string{
	"bash":       "secauto.bash",
	"zsh":        "secauto.zsh",
	"fish":       "secauto.fish",
	"powershell": "secauto.ps1",
}

func writeCompletion(root *cobra.Command, shell string, w io.Writer) error {
	switch shell {
	case "bash":
		return root.GenBashCompletionV2(w, true)
	case "zsh":
		return root.GenZshCompletion(w)
	case "fish":
		return root.GenFishCompletion(w, true)
	case "powershell":
		return root.GenPowerShellCompletionWithDesc(w)
	}
	return usageErrorf("unsupported shell %q: use bash, zsh, fish or powershell", shell)
}

// docsRoot is the command tree as documented: built without any
// environment, so nothing of the machine that generates leaks in.
func docsRoot() *cobra.Command {
	ios, _, _, _ := TestStreams()
	f := NewFactory(ios, nil)
	root := NewCmdRoot(f)
	root.DisableAutoGenTag = true
	return root
}

// GenerateDocs writes the shell completion scripts into completionsDir and
// the command reference into docsDir: one Markdown page per command and,
// under docsDir/man, one man page per command. Files it wrote before are
// replaced, so pages of removed commands disappear.
func GenerateDocs(completionsDir, docsDir string) error {
	manDir := filepath.Join(docsDir, "man")
	for _, d := range []string{completionsDir, docsDir, manDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("cannot create %s: %w", d, err)
		}
	}
	for _, pattern := range []string{filepath.Join(docsDir, "secauto*.md"), filepath.Join(manDir, "secauto*.1")} {
		old, _ := filepath.Glob(pattern)
		for _, p := range old {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("cannot remove stale %s: %w", p, err)
			}
		}
	}

	for shell, name := range completionFiles {
		var b strings.Builder
		if err := writeCompletion(docsRoot(), shell, &b); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(completionsDir, name), []byte(b.String()), 0o644); err != nil {
			return fmt.Errorf("cannot write completion script: %w", err)
		}
	}

	if err := doc.GenMarkdownTree(docsRoot(), docsDir); err != nil {
		return fmt.Errorf("cannot write Markdown docs: %w", err)
	}
	header := &doc.GenManHeader{
		Title:   "SECAUTO",
		Section: "1",
		Date:    &docsDate,
		Source:  "secauto",
		Manual:  "secauto manual",
	}
	if err := doc.GenManTree(docsRoot(), header, manDir); err != nil {
		return fmt.Errorf("cannot write man pages: %w", err)
	}
	return nil
}
