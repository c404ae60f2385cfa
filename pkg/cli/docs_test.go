package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// The committed completion scripts and command reference must match the
// command tree; regenerate them into a temporary directory and compare.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	tmp := t.TempDir()
	comp, docs := filepath.Join(tmp, "completions"), filepath.Join(tmp, "docs")
	if err := GenerateDocs(comp, docs); err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join("..", "..")
	pairs := [][2]string{
		{comp, filepath.Join(repo, "completions")},
		{docs, filepath.Join(repo, "docs", "cli")},
		{filepath.Join(docs, "man"), filepath.Join(repo, "docs", "cli", "man")},
	}
	stale := false
	for _, p := range pairs {
		fresh, committed := listFiles(t, p[0]), listFiles(t, p[1])
		for name := range fresh {
			want, err := os.ReadFile(filepath.Join(p[0], name))
			if err != nil {
				t.Fatal(err)
			}
			got, ok := committed[name]
			if !ok {
				t.Errorf("%s is missing", filepath.Join(p[1], name))
				stale = true
				continue
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s is stale", filepath.Join(p[1], name))
				stale = true
			}
		}
		for name := range committed {
			if _, ok := fresh[name]; !ok {
				t.Errorf("%s belongs to no command", filepath.Join(p[1], name))
				stale = true
			}
		}
	}
	if stale {
		t.Log("regenerate with 'go generate ./...' from the repository root and commit the result")
	}

	// Regenerating gives the same bytes: no dates or machine details leak in.
	again := filepath.Join(tmp, "again")
	if err := GenerateDocs(filepath.Join(again, "c"), filepath.Join(again, "d")); err != nil {
		t.Fatal(err)
	}
	a, b := listFiles(t, filepath.Join(docs, "man")), listFiles(t, filepath.Join(again, "d", "man"))
	for name, data := range a {
		if !bytes.Equal(data, b[name]) {
			t.Errorf("man page %s differs between two runs", name)
		}
	}
}

func listFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("%v; regenerate with 'go generate ./...'", err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = data
	}
	return out
}

// Every command's help has examples and says what its exit codes mean.
func TestHelpHasExamplesAndExitStatus(t *testing.T) {
	root := docsRoot()
	var names []string
	for _, c := range allCommands(root) {
		if c.Hidden || c.Name() == "help" {
			continue
		}
		names = append(names, c.CommandPath())
		if !strings.Contains(c.Long, "EXIT STATUS") {
			t.Errorf("%s: Long help has no EXIT STATUS section", c.CommandPath())
		}
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("%s: no examples", c.CommandPath())
		}
	}
	sort.Strings(names)
	if len(names) < 14 {
		t.Errorf("only %d commands found: %v", len(names), names)
	}
}

func allCommands(c *cobraCommand) []*cobraCommand {
	out := []*cobraCommand{c}
	for _, sub := range c.Commands() {
		out = append(out, allCommands(sub)...)
	}
	return out
}

type cobraCommand = cobra.Command
