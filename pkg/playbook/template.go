package playbook

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"text/template"
	"text/template/parse"

	"github.com/secauto/secauto/pkg/job"
)

// parseTemplate parses text as the template called name and prepares it
// for bounded execution (prepareTree). missingkey=error makes a reference to
// an absent key fail with the key named instead of rendering "<no value>".
//
// Parsed templates are cached: the same playbooks arrive again and again
// with other contexts, and parsing costs more than executing. A parsed
// template is safe to execute from many goroutines at once.
func parseTemplate(name, text string) (*template.Template, error) {
	key := templateKey{name, text}
	if len(text) <= maxCachedTemplate {
		parsedMu.Lock()
		t := parsed[key]
		parsedMu.Unlock()
		if t != nil {
			return t, nil
		}
	}
	t, err := template.New(name).Option("missingkey=error").Funcs(templateFuncs).Parse(text)
	if err == nil {
		err = prepareTree(t)
	}
	if err != nil {
		return nil, err
	}
	if len(text) > maxCachedTemplate {
		return t, nil
	}
	parsedMu.Lock()
	if len(parsed) >= maxCachedTemplates {
		clear(parsed) // a crude bound; refilling costs one parse each
	}
	parsed[key] = t
	parsedMu.Unlock()
	return t, nil
}

// The template cache's bounds: entries, and the longest text cached.
const (
	maxCachedTemplates = 4096
	maxCachedTemplate  = 4096
)

type templateKey struct{ name, text string }

var (
	parsedMu sync.Mutex
	parsed   = map[templateKey]*template.Template{}
)

// isTemplate reports whether s holds a template action; plain strings skip
// parsing, which keeps large literal bodies cheap.
func isTemplate(s string) bool {
	return strings.Contains(s, "{{")
}

// renderString executes text over data within the bounds data carries
// (see renderKey). The error names the param path: text/template's names
// the expression that failed too, a bound's says which bound stopped it.
func renderString(name, text string, data map[string]any) (string, error) {
	if !isTemplate(text) {
		return text, nil
	}
	env, view := splitRender(data)
	t, err := parseTemplate(name, text)
	if err != nil {
		return "", err
	}
	return env.execute(t, name, view)
}

// renderValue renders every string inside v, descending into objects and
// arrays, and returns a fresh value: step params are shared with the stored
// playbook and must never be modified.
func renderValue(name string, v any, data map[string]any) (any, error) {
	switch x := v.(type) {
	case string:
		return renderString(name, x, data)
	case map[string]any:
		out := make(map[string]any, len(x))
		for _, k := range sortedKeys(x) {
			r, err := renderValue(name+"."+k, x[k], data)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			r, err := renderValue(fmt.Sprintf("%s[%d]", name, i), e, data)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	}
	return v, nil
}

// checkTemplates parses every string inside v and checks that each
// .steps.NAME it mentions is one of the earlier steps. A template longer
// than maxTemplate (when positive) is refused before it is parsed.
func checkTemplates(name string, v any, earlier map[string]int, maxTemplate int) error {
	switch x := v.(type) {
	case string:
		if !isTemplate(x) {
			return nil
		}
		if maxTemplate > 0 && len(x) > maxTemplate {
			return fmt.Errorf("%s: %w", name, &job.LimitError{Limit: LimitTemplateBytes, Max: int64(maxTemplate), Got: int64(len(x))})
		}
		t, err := parseTemplate(name, x)
		if err != nil {
			return err
		}
		for _, ref := range stepRefs(t) {
			if _, ok := earlier[ref]; !ok {
				return fmt.Errorf("%s refers to step %q, which does not run before this step", name, ref)
			}
		}
	case map[string]any:
		for _, k := range sortedKeys(x) {
			if err := checkTemplates(name+"."+k, x[k], earlier, maxTemplate); err != nil {
				return err
			}
		}
	case []any:
		for i, e := range x {
			if err := checkTemplates(fmt.Sprintf("%s[%d]", name, i), e, earlier, maxTemplate); err != nil {
				return err
			}
		}
	}
	return nil
}

// stepRefs lists the step names a template reads through .steps.NAME,
// $.steps.NAME or index .steps "NAME". References made where the dot has
// been rebound (inside range and with) cannot be resolved statically and are
// left to run time.
func stepRefs(t *template.Template) []string {
	var refs []string
	for _, tt := range t.Templates() {
		if tt.Tree != nil && tt.Tree.Root != nil {
			// Bodies of {{define}} run with whatever dot the caller passes,
			// so only the main template's dot is known to be the root.
			walkRefs(tt.Tree.Root, tt == t, &refs)
		}
	}
	return refs
}

func walkRefs(n parse.Node, dotIsRoot bool, refs *[]string) {
	switch x := n.(type) {
	case *parse.ListNode:
		if x == nil {
			return
		}
		for _, c := range x.Nodes {
			walkRefs(c, dotIsRoot, refs)
		}
	case *parse.ActionNode:
		walkRefs(x.Pipe, dotIsRoot, refs)
	case *parse.IfNode:
		walkBranch(&x.BranchNode, dotIsRoot, dotIsRoot, refs)
	case *parse.RangeNode:
		walkBranch(&x.BranchNode, false, dotIsRoot, refs)
	case *parse.WithNode:
		walkBranch(&x.BranchNode, false, dotIsRoot, refs)
	case *parse.TemplateNode:
		walkRefs(x.Pipe, dotIsRoot, refs)
	case *parse.PipeNode:
		if x == nil {
			return
		}
		for _, c := range x.Cmds {
			walkRefs(c, dotIsRoot, refs)
		}
	case *parse.CommandNode:
		if ref, ok := indexRef(x, dotIsRoot); ok {
			*refs = append(*refs, ref)
		}
		if ref, ok := optionalRef(x, dotIsRoot); ok {
			*refs = append(*refs, ref)
		}
		for _, a := range x.Args {
			walkRefs(a, dotIsRoot, refs)
		}
	case *parse.ChainNode:
		walkRefs(x.Node, dotIsRoot, refs)
	case *parse.FieldNode:
		if dotIsRoot && len(x.Ident) >= 2 && x.Ident[0] == "steps" {
			*refs = append(*refs, x.Ident[1])
		}
	case *parse.VariableNode:
		if len(x.Ident) >= 3 && x.Ident[0] == "$" && x.Ident[1] == "steps" {
			*refs = append(*refs, x.Ident[2])
		}
	}
}

// walkBranch walks an if, range or with: its pipeline and else branch see
// the outer dot, its body sees bodyDot.
func walkBranch(b *parse.BranchNode, bodyDot, outerDot bool, refs *[]string) {
	walkRefs(b.Pipe, outerDot, refs)
	walkRefs(b.List, bodyDot, refs)
	walkRefs(b.ElseList, outerDot, refs)
}

// indexRef recognises `index .steps "NAME" ...`, the way to reach a step
// whose name is not an identifier.
func indexRef(c *parse.CommandNode, dotIsRoot bool) (string, bool) {
	if len(c.Args) < 3 {
		return "", false
	}
	if id, ok := c.Args[0].(*parse.IdentifierNode); !ok || id.Ident != "index" {
		return "", false
	}
	name, ok := c.Args[2].(*parse.StringNode)
	if !ok {
		return "", false
	}
	switch m := c.Args[1].(type) {
	case *parse.FieldNode:
		if dotIsRoot && len(m.Ident) == 1 && m.Ident[0] == "steps" {
			return name.Text, true
		}
	case *parse.VariableNode:
		if len(m.Ident) == 2 && m.Ident[0] == "$" && m.Ident[1] == "steps" {
			return name.Text, true
		}
	}
	return "", false
}

// templateView returns the copy of v that templates see: null becomes the
// empty string, and whole numbers (float64 after JSON decoding, json.Number
// in HTTP bodies) become int64 so they print as 1000000 rather than 1e+06 and
// compare equal to integer literals.
func templateView(v any) any {
	switch x := v.(type) {
	case nil:
		return ""
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = templateView(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = templateView(e)
		}
		return out
	case float64:
		if x == math.Trunc(x) && math.Abs(x) <= 1<<53 {
			return int64(x)
		}
		return x
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		if f, err := x.Float64(); err == nil {
			return templateView(f)
		}
		return x.String()
	}
	return v
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
