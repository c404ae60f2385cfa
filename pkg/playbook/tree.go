package playbook

import (
	"fmt"
	"text/template"
	"text/template/parse"
)

// prepareTree readies a freshly parsed template for bounded execution: it
// refuses templates that call themselves, rewrites optional references
// (markOptional) and adds the checkpoints that let a render be stopped.
func prepareTree(t *template.Template) error {
	if err := checkRecursion(t); err != nil {
		return fmt.Errorf("template: %s: %w", t.Name(), err)
	}
	for _, tt := range t.Templates() {
		if tt.Tree != nil && tt.Tree.Root != nil {
			markOptional(tt.Tree, tt.Tree.Root)
			addChecks(tt.Tree.Root)
		}
	}
	return nil
}

// addChecks puts an empty text node at the top of every list (the body of
// each range iteration, if, with and template call) and before every action
// in it. Executing a text node writes it, even empty, and each write checks
// the render's context: work that writes nothing, like
// {{range 1000000000}}{{end}}, is then stopped as promptly as output is.
func addChecks(l *parse.ListNode) {
	if l == nil {
		return
	}
	nodes := make([]parse.Node, 0, 2*len(l.Nodes)+1)
	nodes = append(nodes, checkpoint(l.Position()))
	for i, n := range l.Nodes {
		switch x := n.(type) {
		case *parse.TextNode:
			nodes = append(nodes, n)
			continue
		case *parse.IfNode:
			addChecks(x.List)
			addChecks(x.ElseList)
		case *parse.RangeNode:
			addChecks(x.List)
			addChecks(x.ElseList)
		case *parse.WithNode:
			addChecks(x.List)
			addChecks(x.ElseList)
		}
		if i > 0 {
			nodes = append(nodes, checkpoint(n.Position()))
		}
		nodes = append(nodes, n)
	}
	l.Nodes = nodes
}

func checkpoint(pos parse.Pos) *parse.TextNode {
	return &parse.TextNode{NodeType: parse.NodeText, Pos: pos, Text: []byte{}}
}

// checkRecursion refuses a template that calls itself, directly or through
// others. text/template allows 100,000 nested calls, each holding its
// goroutine's stack, and a template that calls itself twice does 2^100000
// calls; without recursion the nesting is bounded by the text's length.
func checkRecursion(t *template.Template) error {
	calls := map[string][]string{}
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			collectCalls(tt.Tree.Root, func(name string) { calls[tt.Name()] = append(calls[tt.Name()], name) })
		}
	}
	const (
		unseen = iota
		active
		done
	)
	state := map[string]int{}
	var visit func(name string) error
	visit = func(name string) error {
		switch state[name] {
		case active:
			return fmt.Errorf("template %q calls itself; templates may not be recursive", name)
		case done:
			return nil
		}
		state[name] = active
		for _, c := range calls[name] {
			if err := visit(c); err != nil {
				return err
			}
		}
		state[name] = done
		return nil
	}
	for name := range calls {
		if err := visit(name); err != nil {
			return err
		}
	}
	return nil
}

// collectCalls reports the name of every {{template}} call under n.
func collectCalls(n parse.Node, call func(string)) {
	switch x := n.(type) {
	case *parse.ListNode:
		if x == nil {
			return
		}
		for _, c := range x.Nodes {
			collectCalls(c, call)
		}
	case *parse.IfNode:
		collectCalls(x.List, call)
		collectCalls(x.ElseList, call)
	case *parse.RangeNode:
		collectCalls(x.List, call)
		collectCalls(x.ElseList, call)
	case *parse.WithNode:
		collectCalls(x.List, call)
		collectCalls(x.ElseList, call)
	case *parse.TemplateNode:
		call(x.Name)
	}
}
