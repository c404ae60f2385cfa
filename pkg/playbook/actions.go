package playbook

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// action describes one built-in action.
type action struct {
	// params lists the params the action takes; nil means any key (set).
	params []string
	// literal lists the params that are not templates.
	literal []string
	// check validates params without rendering them; Run calls it too, so a
	// stored playbook that was never validated still fails cleanly.
	check func(p map[string]any) error
	run   func(ctx context.Context, r *Runner, p map[string]any, data map[string]any) (outcome, error)
}

// outcome is what a step produced.
type outcome struct {
	// output is the step's Result.Output; it may be set on failure too (an
	// http step that got a non-2xx answer still reports it).
	output any
	// set holds the keys a set step merges into the job context.
	set map[string]any
}

// actions maps each action name to its implementation.
var actions = map[string]action{
	"log":   {params: []string{"message"}, check: needString("message"), run: runLog},
	"sleep": {params: []string{"duration"}, literal: []string{"duration"}, check: checkSleep, run: runSleep},
	"set":   {check: checkSet, run: runSet},
	"http": {
		params:  []string{"method", "url", "headers", "body", "timeout", "allow_status"},
		literal: []string{"method", "timeout", "allow_status"},
		check:   checkHTTP,
		run:     runHTTP,
	},
	"fail": {params: []string{"message"}, check: needString("message"), run: runFail},
}

// templated returns the sorted names of the params of p that are templates.
func (a action) templated(p map[string]any) []string {
	var names []string
	for _, k := range sortedKeys(p) {
		if !slices.Contains(a.literal, k) {
			names = append(names, k)
		}
	}
	return names
}

func needString(name string) func(map[string]any) error {
	return func(p map[string]any) error {
		v, ok := p[name]
		if !ok {
			return fmt.Errorf("params.%s is missing", name)
		}
		if _, ok := v.(string); !ok {
			return fmt.Errorf("params.%s must be a string, not %s", name, typeName(v))
		}
		return nil
	}
}

func runLog(_ context.Context, _ *Runner, p map[string]any, data map[string]any) (outcome, error) {
	msg, err := renderString("params.message", p["message"].(string), data)
	if err != nil {
		return outcome{}, err
	}
	return outcome{output: map[string]any{"message": msg}}, nil
}

func runFail(_ context.Context, _ *Runner, p map[string]any, data map[string]any) (outcome, error) {
	msg, err := renderString("params.message", p["message"].(string), data)
	if err != nil {
		return outcome{}, err
	}
	return outcome{}, errors.New(msg)
}

func checkSleep(p map[string]any) error {
	v, ok := p["duration"]
	if !ok {
		return errors.New("params.duration is missing; give a duration like \"2s\"")
	}
	_, err := parseDuration("params.duration", v)
	return err
}

func runSleep(ctx context.Context, _ *Runner, p map[string]any, _ map[string]any) (outcome, error) {
	d, _ := parseDuration("params.duration", p["duration"])
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return outcome{output: map[string]any{"duration": d.String()}}, nil
	case <-ctx.Done():
		return outcome{}, ctx.Err()
	}
}

func checkSet(p map[string]any) error {
	if len(p) == 0 {
		return errors.New("params is empty; set needs at least one key to merge into the context")
	}
	if _, ok := p[""]; ok {
		return errors.New("params has an empty key; every key set needs a name")
	}
	return nil
}

// runSet renders every value. Keys replace top-level context keys whole
// (objects are not merged deeply), so a set step's effect reads off its
// params. Its output lists the keys, not the values: values often come from
// secrets in the context and need not be copied into the results.
func runSet(_ context.Context, _ *Runner, p map[string]any, data map[string]any) (outcome, error) {
	set := make(map[string]any, len(p))
	keys := sortedKeys(p)
	for _, k := range keys {
		v, err := renderValue("params."+k, p[k], data)
		if err != nil {
			return outcome{}, err
		}
		set[k] = v
	}
	return outcome{output: map[string]any{"keys": keys}, set: set}, nil
}
