// Command gendocs writes secauto's shell completion scripts and its
// Markdown and man page reference from the command tree. It runs through
// "go generate ./..." from the repository root.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/secauto/secauto/pkg/cli"
)

func main() {
	completions := flag.String("completions", "completions", "directory for the completion scripts")
	docs := flag.String("docs", "docs/cli", "directory for the Markdown pages; man pages go into its man/ subdirectory")
	flag.Parse()
	if err := cli.GenerateDocs(*completions, *docs); err != nil {
		fmt.Fprintf(os.Stderr, "gendocs: %v\n", err)
		os.Exit(1)
	}
}
