package playbook

import (
	"fmt"
	"strconv"
	"strings"
	"text/template/parse"
)

// optionalKeyFn is the function optional and default arguments are
// rewritten to call. Its name is an identifier only because text/template
// insists; templates have no reason to call it themselves.
const optionalKeyFn = "optionalKey"

// optional returns v; a missing key has already become "" by the time it
// is called (see markOptional).
func optional(v any) any {
	if v == nil {
		return ""
	}
	return v
}

// defaultValue returns v, or def when v is missing, null or "". Zero and
// false are values, not absences, and are kept.
func defaultValue(def, v any) any {
	if v == nil || v == "" {
		return def
	}
	return v
}

// optionalKey walks path from base through maps, returning "" at the first
// missing key. A null (which templates see as "") has no keys either, so
// {{optional .steps.lookup.body.id}} is empty when lookup failed and kept
// going. Any other value in the way is an error: a string where an object
// was expected is a mistake, not an absence.
func optionalKey(base any, path ...string) (any, error) {
	v := base
	for i, k := range path {
		switch x := v.(type) {
		case map[string]any:
			e, ok := x[k]
			if !ok {
				return "", nil
			}
			v = e
		case nil:
			return "", nil
		case string:
			if x == "" {
				return "", nil
			}
			return nil, fmt.Errorf("can't evaluate field %s in a string at %s", k, "."+strings.Join(path[:i], "."))
		default:
			return nil, fmt.Errorf("can't evaluate field %s in type %T", k, v)
		}
	}
	return v, nil
}

// markOptional rewrites, in the tree under n, every field reference given to
// optional or default, as an argument or piped in, into a call of
// optionalKey, so that a missing key there is an absence instead of the
// error it is everywhere else (missingkey=error applies to the whole
// template, and an argument is evaluated before the function sees it).
//
// {{optional .context.ticket}} becomes {{optional (optionalKey . "context"
// "ticket")}}; {{.context.ticket | default "none"}} and {{default "none"
// $.context.ticket}} likewise. Only default's last argument is optional: its
// first is the fallback, and a typo there should still fail.
func markOptional(tr *parse.Tree, n parse.Node) {
	switch x := n.(type) {
	case *parse.ListNode:
		if x == nil {
			return
		}
		for _, c := range x.Nodes {
			markOptional(tr, c)
		}
	case *parse.ActionNode:
		markOptional(tr, x.Pipe)
	case *parse.IfNode:
		markBranch(tr, &x.BranchNode)
	case *parse.RangeNode:
		markBranch(tr, &x.BranchNode)
	case *parse.WithNode:
		markBranch(tr, &x.BranchNode)
	case *parse.TemplateNode:
		markOptional(tr, x.Pipe)
	case *parse.PipeNode:
		if x == nil {
			return
		}
		for i, c := range x.Cmds {
			if i+1 < len(x.Cmds) && isOptionalCall(x.Cmds[i+1]) && len(c.Args) == 1 {
				if lk := lenient(tr, c.Args[0]); lk != nil {
					c.Args[0] = lk
				}
			}
			markOptional(tr, c)
		}
	case *parse.CommandNode:
		if isOptionalCall(x) {
			if lk := lenient(tr, x.Args[len(x.Args)-1]); lk != nil && len(x.Args) > 1 {
				x.Args[len(x.Args)-1] = lk
			}
		}
		for _, a := range x.Args {
			markOptional(tr, a)
		}
	case *parse.ChainNode:
		markOptional(tr, x.Node)
	}
}

func markBranch(tr *parse.Tree, b *parse.BranchNode) {
	markOptional(tr, b.Pipe)
	markOptional(tr, b.List)
	markOptional(tr, b.ElseList)
}

func isOptionalCall(c *parse.CommandNode) bool {
	id, ok := c.Args[0].(*parse.IdentifierNode)
	return ok && (id.Ident == "optional" || id.Ident == "default")
}

// lenient returns the optionalKey call that reads the field reference n,
// or nil when n is not one (a literal, a function call).
func lenient(tr *parse.Tree, n parse.Node) parse.Node {
	var base parse.Node
	var path []string
	switch x := n.(type) {
	case *parse.FieldNode:
		base, path = &parse.DotNode{NodeType: parse.NodeDot, Pos: x.Pos}, x.Ident
	case *parse.VariableNode:
		if len(x.Ident) < 2 {
			return nil
		}
		base, path = &parse.VariableNode{NodeType: parse.NodeVariable, Pos: x.Pos, Ident: x.Ident[:1]}, x.Ident[1:]
	case *parse.ChainNode:
		base, path = x.Node, x.Field
	default:
		return nil
	}
	pos := n.Position()
	args := []parse.Node{parse.NewIdentifier(optionalKeyFn).SetTree(tr).SetPos(pos), base}
	for _, k := range path {
		args = append(args, &parse.StringNode{NodeType: parse.NodeString, Pos: pos, Quoted: strconv.Quote(k), Text: k})
	}
	cmd := &parse.CommandNode{NodeType: parse.NodeCommand, Pos: pos, Args: args}
	return &parse.PipeNode{NodeType: parse.NodePipe, Pos: pos, Cmds: []*parse.CommandNode{cmd}}
}

// optionalRef recognises the optionalKey call markOptional made of
// .steps.NAME or $.steps.NAME, so that an optional reference to a step is
// still checked to be an earlier step.
func optionalRef(c *parse.CommandNode, dotIsRoot bool) (string, bool) {
	if len(c.Args) < 4 {
		return "", false
	}
	if id, ok := c.Args[0].(*parse.IdentifierNode); !ok || id.Ident != optionalKeyFn {
		return "", false
	}
	steps, ok1 := c.Args[2].(*parse.StringNode)
	name, ok2 := c.Args[3].(*parse.StringNode)
	if !ok1 || !ok2 || steps.Text != "steps" {
		return "", false
	}
	switch b := c.Args[1].(type) {
	case *parse.DotNode:
		return name.Text, dotIsRoot
	case *parse.VariableNode:
		return name.Text, len(b.Ident) == 1 && b.Ident[0] == "$"
	}
	return "", false
}
