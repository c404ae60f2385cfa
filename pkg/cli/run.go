package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/secauto/secauto/pkg/config"
	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/server"
	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

// RunOptions holds "run"'s flags and dependencies.
type RunOptions struct {
	IO     *IOStreams
	Now    func() time.Time
	Config func() (*config.Config, error)
	Admin  func(lockMode) (Admin, error)
	// Context is what waiting runs under: cancelled on SIGINT or SIGTERM.
	Context func() (context.Context, context.CancelFunc)

	File        string // a path, or "-" for stdin
	Contexts    []string
	ContextFile string
	Wait        bool
	Output      outputFormat
}

// interruptContext is a context cancelled by SIGINT or SIGTERM.
func interruptContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// NewCmdRun is "secauto run".
func NewCmdRun(f *Factory, runF func(*RunOptions) error) *cobra.Command {
	opts := &RunOptions{IO: f.IOStreams, Now: f.Now, Config: f.Config, Admin: adminFor(f, "run"), Context: interruptContext}
	cmd := &cobra.Command{
		Use:   "run FILE|-",
		Short: "Submit a playbook as a job",
		Long: strings.TrimSpace(`
Submit a playbook file (JSON or YAML; "-" reads standard input) as a new
job, validated exactly as POST /playbook/async validates it. The file holds
what the API takes:

    {"playbook": [STEP...], "context": {...}, "on_interrupt": "fail"|"retry", "max_attempts": N}

--context-file adds the keys of a JSON or YAML object to the file's
context, and each --context KEY=VALUE adds one string value, each winning
over what came before it. Values are never printed in errors.

While the daemon runs it queues the job at once. With no daemon the job is
stored as pending in the data directory, and the next "secauto serve" runs
it; a note on stderr says so.

Printed: the job's id and status, as the API's 202 answer
({"job_id", "status"} with -o json). With --wait the command follows the
job to its end instead, a line per step on stderr, and prints the job as it
ended; --wait needs a running daemon.
` + exitStatus("the command failed, or with --wait the job failed or was cancelled")),
		Example: example(`
  secauto run triage.yaml --context ip=203.0.113.7 --context case=IR-1042

  # submit, wait for the end, keep the job for a script
  secauto run triage.json --wait -o json > job.json

  # a playbook from another tool, context values from a file
  generate-playbook | secauto run - --context-file alert.json`),
		Args: exactArgs(1, "playbook FILE (or - for standard input)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.File = args[0]
			if runF != nil {
				return runF(opts)
			}
			return runRun(opts)
		},
	}
	cmd.Flags().StringArrayVarP(&opts.Contexts, "context", "c", nil, "add KEY=VALUE to the job's context (repeatable; VALUE is a string)")
	cmd.Flags().StringVar(&opts.ContextFile, "context-file", "", "add the keys of the JSON or YAML object in FILE to the job's context")
	cmd.Flags().BoolVarP(&opts.Wait, "wait", "w", false, "follow the job to its end and print it; exit 1 unless it completed")
	_ = cmd.MarkFlagFilename("context-file", "json", "yaml", "yml")
	addOutputFlag(cmd, &opts.Output)
	return cmd
}

func runRun(opts *RunOptions) error {
	cfg, err := opts.Config()
	if err != nil {
		return err
	}
	maxBytes := int64(cfg.Server.MaxBodyBytes)
	if maxBytes <= 0 {
		maxBytes = server.DefaultMaxBodyBytes
	}
	req, err := readSubmission(opts.IO.In, opts.File, maxBytes)
	if err != nil {
		return err
	}
	if opts.ContextFile != "" {
		extra, err := readContextFile(opts.ContextFile, maxBytes)
		if err != nil {
			return err
		}
		req.Context = merge(req.Context, extra)
	}
	for i, kv := range opts.Contexts {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			// The argument may be a secret typed without its key: never
			// repeat it.
			return usageErrorf("invalid --context (the %s): give KEY=VALUE", ordinal(i+1))
		}
		req.Context = merge(req.Context, map[string]any{k: v})
	}
	// Checked before anything is stored, so a mistake changes nothing.
	if err := req.Validate(); err != nil {
		return usageErrorf("%s: %v", displayName(opts.File), err)
	}

	return withJobAdmin(opts.Admin, exclusive, func(a jobAdmin) error {
		if opts.Wait && !a.Daemon() {
			return &noDaemonError{"--wait needs a running daemon to run the job, and none holds data directory " +
				a.Dir() + "; start 'secauto serve', or run without --wait to queue the job for the next serve"}
		}
		ctx, stop := opts.Context()
		defer stop()
		res, err := a.Submit(ctx, req)
		if err != nil {
			return err
		}
		if !a.Daemon() {
			fmt.Fprintf(opts.IO.ErrOut, "no daemon is running: job %s is stored as pending and runs when 'secauto serve' starts\n", res.JobID)
		}
		if !opts.Wait {
			return printSubmitted(opts.IO, opts.Output, res)
		}
		fmt.Fprintf(opts.IO.ErrOut, "job %s submitted; waiting for it to end (Ctrl+C stops waiting, not the job)\n", res.JobID)
		return followJob(ctx, a, opts.IO, res.JobID, opts.Output, opts.Now, false)
	})
}

// printSubmitted prints a 202 answer: as it is with -o json or yaml, as a
// one-row table otherwise.
func printSubmitted(ios *IOStreams, format outputFormat, res *server.SubmitResponse) error {
	if format != formatTable {
		return printData(ios.Out, format, res)
	}
	headers, row := []string{"job id", "status"}, []string{res.JobID, ios.ColorScheme().Status(string(res.Status))}
	if res.RerunOf != "" {
		headers, row = append(headers, "rerun of"), append(row, res.RerunOf)
	}
	t := newTable(ios, headers...)
	t.addRow(row...)
	return t.render()
}

// readSubmission reads a playbook file of at most max bytes: JSON, read as
// the API reads a body (unknown fields refused), or YAML with the same
// fields.
func readSubmission(stdin io.Reader, file string, max int64) (*server.SubmitRequest, error) {
	data, err := readLimited(stdin, file, max)
	if err != nil {
		return nil, err
	}
	raw, err := asJSON(data)
	if err != nil {
		return nil, usageErrorf("%s is not a JSON or YAML playbook: %v", displayName(file), err)
	}
	var req server.SubmitRequest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, usageErrorf("%s: %s", displayName(file), jsonProblem(err))
	}
	if dec.More() {
		return nil, usageErrorf("%s must hold a single playbook object", displayName(file))
	}
	return &req, nil
}

// readContextFile reads a JSON or YAML object of context keys.
func readContextFile(file string, max int64) (map[string]any, error) {
	data, err := readLimited(nil, file, max)
	if err != nil {
		return nil, err
	}
	raw, err := asJSON(data)
	if err != nil {
		return nil, usageErrorf("--context-file %s is not JSON or YAML: %v", file, err)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, usageErrorf("--context-file %s: %s", file, jsonProblem(err))
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, usageErrorf("--context-file %s must hold an object of KEY: VALUE, not %s", file, jsonKindOf(v))
	}
	return m, nil
}

// readLimited reads file ("-": stdin), refusing more than max bytes.
func readLimited(stdin io.Reader, file string, max int64) ([]byte, error) {
	var r io.Reader
	if file == "-" {
		if stdin == nil {
			return nil, usageErrorf("standard input is already read for the playbook; name a file")
		}
		r = stdin
	} else {
		st, err := os.Stat(file)
		if err != nil {
			return nil, usageErrorf("cannot read %s: %v", file, errors.Unwrap(err))
		}
		if st.IsDir() {
			return nil, usageErrorf("%s is a directory; give a file", file)
		}
		fh, err := os.Open(file)
		if err != nil {
			return nil, usageErrorf("cannot read %s: %v", file, errors.Unwrap(err))
		}
		defer fh.Close()
		r = fh
	}
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", displayName(file), err)
	}
	if int64(len(data)) > max {
		return nil, usageErrorf("%s is larger than %d bytes, the most the API accepts (server.max_body_bytes); send a smaller playbook", displayName(file), max)
	}
	return data, nil
}

// asJSON returns data as JSON: as it is when it is a JSON value, else
// decoded as one YAML document and encoded as JSON.
func asJSON(data []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("it is empty")
	}
	if trimmed[0] == '{' || trimmed[0] == '[' {
		if !json.Valid(trimmed) {
			var v any
			err := json.Unmarshal(trimmed, &v)
			return nil, fmt.Errorf("not valid JSON: %s", jsonProblem(err))
		}
		return trimmed, nil
	}
	var v any
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&v); err != nil {
		return nil, yamlProblem(err)
	}
	var extra any
	if dec.Decode(&extra) != io.EOF {
		return nil, errors.New("it holds more than one YAML document")
	}
	v, err := jsonValue(v)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// yamlProblem keeps the position of a YAML error and drops the text it
// quotes, which may be a secret of the document.
func yamlProblem(err error) error {
	msg := err.Error()
	if i := strings.Index(msg, "line "); i >= 0 {
		line := msg[i:]
		if j := strings.IndexByte(line, ':'); j >= 0 {
			line = line[:j]
		}
		return fmt.Errorf("YAML syntax error at %s", line)
	}
	return errors.New("YAML syntax error")
}

// jsonValue turns what YAML decoded into values JSON encodes: mappings
// with string keys only.
func jsonValue(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			c, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			x[k] = c
		}
		return x, nil
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("a mapping has a key that is not a string (%T)", k)
			}
			c, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			m[ks] = c
		}
		return m, nil
	case []any:
		for i, e := range x {
			c, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			x[i] = c
		}
		return x, nil
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano), nil
	}
	return v, nil
}

// jsonProblem says what is wrong with a playbook's JSON without quoting
// its values.
func jsonProblem(err error) string {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return fmt.Sprintf("must be an object, not %s", typ.Value)
		}
		return fmt.Sprintf("field %q must not be %s", typ.Field, typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "the JSON ends too early"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ") + "; a playbook file has playbook, context, on_interrupt and max_attempts"
	}
	return "not a valid playbook"
}

func jsonKindOf(v any) string {
	switch v.(type) {
	case []any:
		return "an array"
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return "a value"
}

// merge returns base with extra's keys set over it.
func merge(base, extra map[string]any) map[string]any {
	if base == nil {
		base = map[string]any{}
	}
	for k, v := range extra {
		base[k] = v
	}
	return base
}

func displayName(file string) string {
	if file == "-" {
		return "standard input"
	}
	return file
}

func ordinal(n int) string {
	switch n {
	case 1:
		return "first"
	case 2:
		return "second"
	case 3:
		return "third"
	}
	return fmt.Sprintf("%dth", n)
}

// followJob watches job id to its end. Each step and status change is a
// line (on stdout with table output and toStdout, else on stderr, so that
// stdout carries only the job); then the job is printed with the format.
// It returns nil when the job completed, errSilent (exit 1) otherwise.
func followJob(ctx context.Context, a jobAdmin, ios *IOStreams, id string, format outputFormat, now func() time.Time, toStdout bool) error {
	lines, tty := ios.ErrOut, ios.IsStderrTTY()
	if toStdout && format == formatTable {
		lines, tty = ios.Out, ios.IsStdoutTTY()
	}
	p := &eventPrinter{w: lines, cs: ios.ColorScheme()}
	print, live := p.print, (*liveLine)(nil)
	if tty {
		live = newLiveLine(lines, id, now)
		print = live.wrap(print)
	}
	j, err := a.WatchJob(ctx, id, print)
	if live != nil {
		live.close()
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return fmt.Errorf("stopped waiting; the job goes on: follow it with 'secauto jobs watch %s'", id)
		}
		return jobRefError(id, err)
	}
	if !toStdout || format != formatTable {
		if format != formatTable {
			err = printData(ios.Out, format, j)
		} else {
			err = printJob(ios, j, now())
		}
		if err != nil {
			return err
		}
	}
	if j.Status != job.Completed {
		if !toStdout || format != formatTable {
			fmt.Fprintf(ios.ErrOut, "job %s %s\n", j.ID, j.Status)
		}
		return errSilent
	}
	return nil
}

// eventPrinter writes a watched job's events as plain lines.
type eventPrinter struct {
	w  io.Writer
	cs *ColorScheme
}

func (p *eventPrinter) print(ev jobEvent) error {
	var err error
	switch ev.Kind {
	case server.EventStep:
		r := ev.Step.Result
		dur := ""
		if r.CompletedAt != nil {
			dur = "  " + humanDuration(r.CompletedAt.Sub(r.StartedAt))
		}
		line := fmt.Sprintf("step %d %s %s  %s%s", ev.Step.Index+1, p.cs.Bold(r.Step), p.cs.Gray("("+r.Action+")"), p.cs.Status(r.Status), dur)
		if r.Error != "" {
			line += "  " + p.cs.Red(truncate(r.Error, 200))
		}
		_, err = fmt.Fprintln(p.w, line)
	case server.EventStatus:
		line := fmt.Sprintf("job %s %s", ev.Status.JobID, p.cs.Status(string(ev.Status.Status)))
		if ev.Status.Error != "" {
			line += ": " + truncate(ev.Status.Error, 200)
		}
		_, err = fmt.Fprintln(p.w, line)
	case server.EventResync:
		_, err = fmt.Fprintf(p.w, "job %s %s (caught up: %d of %d steps recorded)\n", ev.Job.ID, p.cs.Status(string(ev.Job.Status)), len(ev.Job.Results), len(ev.Job.Playbook))
	case server.EventEnd:
		j := ev.Job
		d := ""
		if j.StartedAt != nil && j.CompletedAt != nil {
			d = " in " + humanDuration(j.CompletedAt.Sub(*j.StartedAt))
		}
		_, err = fmt.Fprintf(p.w, "job %s ended %s%s, %d of %d steps recorded\n", j.ID, p.cs.Status(string(j.Status)), d, len(j.Results), len(j.Playbook))
	}
	return err
}
