package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/secauto/secauto/pkg/server"
	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/webhook"
	"github.com/spf13/cobra"
)

// webhookAdmin is what "secauto webhooks" needs of an Admin beyond the
// Admin interface; both Admins implement it, below, over the same
// functions of pkg/webhook.
type webhookAdmin interface {
	// ListWebhooks returns the dead letters and pending deliveries,
	// newest first.
	ListWebhooks(ctx context.Context) ([]webhook.Delivery, error)
	// RetryWebhooks queues the dead letters ids name (all when none)
	// again; an id that names none is an error wrapping
	// webhook.ErrNoDeadLetter and changes nothing.
	RetryWebhooks(ctx context.Context, ids []string) (int, error)
	// ClearWebhooks deletes the dead letters ids name (all when none),
	// with the same rule for unknown ids.
	ClearWebhooks(ctx context.Context, ids []string) (int, error)
}

var (
	_ webhookAdmin = (*offlineAdmin)(nil)
	_ webhookAdmin = (*daemonClient)(nil)
)

// WebhooksOptions holds the flags and dependencies of the "webhooks"
// subcommands.
type WebhooksOptions struct {
	IO    *IOStreams
	Now   func() time.Time
	Admin func(lockMode) (Admin, error)

	IDs    []string
	Yes    bool
	Output outputFormat
}

// WebhooksRetried is the -o json output of "webhooks retry".
type WebhooksRetried struct {
	Retried int `json:"retried"`
}

// WebhooksCleared is the -o json output of "webhooks clear".
type WebhooksCleared struct {
	Cleared int `json:"cleared"`
}

// NewCmdWebhooks is "secauto webhooks".
func NewCmdWebhooks(f *Factory) *cobra.Command {
	cmd := groupCommand("webhooks",
		"List, retry and clear webhook deliveries",
		strings.TrimSpace(`
Webhook events wait in the data directory until their endpoint accepts
them, retried with backoff. An event that no attempt delivered within 72
hours, or whose endpoint was removed from the configuration, becomes a dead
letter: it stays in the data directory, counted by GET /stats
(webhook_dead_letters) and /metrics (secauto_webhook_dead_letters), until
it is retried or cleared here.

While the daemon runs, it does the work and delivers retried events at
once; otherwise the next "secauto serve" delivers them.
`+exitStatus("the command failed, or an id names no dead letter")),
		example(`
  secauto webhooks list
  secauto webhooks retry
  secauto webhooks clear 0198a2c4-5b1e-7c3d-9f00-1a2b3c4d5e6f --yes`))
	cmd.AddCommand(newCmdWebhooksList(f), newCmdWebhooksRetry(f), newCmdWebhooksClear(f))
	return cmd
}

func newWebhooksOptions(f *Factory) *WebhooksOptions {
	return &WebhooksOptions{IO: f.IOStreams, Now: f.Now, Admin: adminFor(f, "webhooks")}
}

func newCmdWebhooksList(f *Factory) *cobra.Command {
	opts := newWebhooksOptions(f)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List dead-lettered and pending webhook deliveries, newest first",
		Long: strings.TrimSpace(`
List every webhook delivery not yet made: dead letters (state dead, with
the reason they gave up) and deliveries still being tried (state pending,
with their next attempt). Each row is one event for one endpoint; its id is
what "webhooks retry" and "webhooks clear" take. Endpoint URLs are shown
without credentials and query, which often hold tokens.
` + exitStatus("")),
		Example: example(`
  secauto webhooks list

  # dead letters only, for a script
  secauto webhooks list -o json | jq '.[] | select(.state == "dead")'`),
		Aliases: []string{"ls"},
		Args:    noArgs,
		RunE:    func(cmd *cobra.Command, args []string) error { return webhooksListRun(opts) },
	}
	addOutputFlag(cmd, &opts.Output)
	return cmd
}

func newCmdWebhooksRetry(f *Factory) *cobra.Command {
	opts := newWebhooksOptions(f)
	cmd := &cobra.Command{
		Use:   "retry [ID...]",
		Short: "Send dead-lettered webhook events again",
		Long: strings.TrimSpace(`
Move dead letters back to the deliveries being tried: every one, or those
the ids name. An id is a delivery id from "webhooks list", or an event id,
which names that event's dead letters for every endpoint. Each is tried at
once and then with the usual backoff for another 72 hours, under its
original event id, so receivers can tell a repeat. A dead letter whose
endpoint is no longer configured comes back as a dead letter.
` + exitStatus("the command failed, or an id names no dead letter (nothing is retried then)")),
		Example: example(`
  # every dead letter, once the receiver is back
  secauto webhooks retry

  # one event, for every endpoint it failed to reach
  secauto webhooks retry 0198a2c4-5b1e-7c3d-9f00-1a2b3c4d5e6f -o json`),
		ValidArgsFunction: completeDeadLetters(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.IDs = args
			return webhooksRetryRun(opts)
		},
	}
	addOutputFlag(cmd, &opts.Output)
	return cmd
}

func newCmdWebhooksClear(f *Factory) *cobra.Command {
	opts := newWebhooksOptions(f)
	cmd := &cobra.Command{
		Use:   "clear [ID...] --yes",
		Short: "Delete dead-lettered webhook events for good",
		Long: strings.TrimSpace(`
Delete dead letters: those the ids name, or with no id every one. Their
events are never delivered then, so --yes is required. Deliveries still
being tried are never deleted. Ids are as for "webhooks retry".
` + exitStatus("the command failed, or an id names no dead letter (nothing is deleted then)")),
		Example: example(`
  secauto webhooks clear 0198a2c4-5b1e-7c3d-9f00-1a2b3c4d5e6f/3f2a9c81d0e4 --yes

  # every dead letter
  secauto webhooks clear --yes -o json`),
		ValidArgsFunction: completeDeadLetters(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.IDs = args
			return webhooksClearRun(opts)
		},
	}
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "confirm that the events are to be deleted undelivered")
	addOutputFlag(cmd, &opts.Output)
	return cmd
}

// completeDeadLetters offers the dead letters' ids, with their event and
// reason as the description.
func completeDeadLetters(f *Factory) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(_ *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
		var out []string
		_ = withWebhookAdmin(adminFor(f, "webhooks"), readOnly, func(a webhookAdmin) error {
			list, err := a.ListWebhooks(context.Background())
			for _, d := range list {
				if d.State == webhook.StateDead && strings.HasPrefix(d.ID, prefix) && !slices.Contains(args, d.ID) {
					out = append(out, fmt.Sprintf("%s\t%s: %s", d.ID, d.Event, d.Reason))
				}
			}
			return err
		})
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// withWebhookAdmin opens the Admin in mode and runs fn on it.
func withWebhookAdmin(open func(lockMode) (Admin, error), mode lockMode, fn func(webhookAdmin) error) error {
	admin, err := open(mode)
	if err != nil {
		return err
	}
	defer admin.Close()
	wa, ok := admin.(webhookAdmin)
	if !ok {
		return fmt.Errorf("cannot manage webhook deliveries of data directory %s this way", admin.Dir())
	}
	return fn(wa)
}

func webhooksListRun(opts *WebhooksOptions) error {
	var list []webhook.Delivery
	err := withWebhookAdmin(opts.Admin, readOnly, func(a webhookAdmin) (err error) {
		list, err = a.ListWebhooks(context.Background())
		return err
	})
	if err != nil {
		return err
	}
	if opts.Output != formatTable {
		if list == nil {
			list = []webhook.Delivery{}
		}
		return printData(opts.IO.Out, opts.Output, list)
	}
	if len(list) == 0 {
		fmt.Fprintln(opts.IO.ErrOut, "no webhook deliveries are waiting or dead-lettered")
		return nil
	}
	tty, now, cs := opts.IO.IsStdoutTTY(), opts.Now(), opts.IO.ColorScheme()
	width := 0
	if tty {
		width = max(opts.IO.TerminalWidth()-110, 30)
	}
	t := newTable(opts.IO, "id", "state", "event", "url", "attempts", "created", "detail")
	for _, d := range list {
		state, detail := cs.Red(d.State), d.Reason
		if d.State == webhook.StatePending {
			state = d.State
			detail = "next attempt " + formatTime(tty, d.NextAttemptAt, now)
			if d.LastError != "" {
				detail += "; last error: " + d.LastError
			}
		}
		t.addRow(d.ID, state, d.Event, d.URL, fmt.Sprint(d.Attempts), formatTime(tty, &d.CreatedAt, now), truncate(detail, width))
	}
	return t.render()
}

func webhooksRetryRun(opts *WebhooksOptions) error {
	var n int
	err := withWebhookAdmin(opts.Admin, exclusive, func(a webhookAdmin) (err error) {
		n, err = a.RetryWebhooks(context.Background(), opts.IDs)
		return err
	})
	if err != nil {
		return err
	}
	if opts.Output != formatTable {
		return printData(opts.IO.Out, opts.Output, WebhooksRetried{Retried: n})
	}
	if n == 0 {
		_, err = fmt.Fprintln(opts.IO.Out, "No dead letters to retry")
		return err
	}
	_, err = fmt.Fprintf(opts.IO.Out, "Queued %s for delivery again\n", plural(n, "dead letter"))
	return err
}

func webhooksClearRun(opts *WebhooksOptions) error {
	if !opts.Yes {
		what := "every dead-lettered webhook event"
		if len(opts.IDs) > 0 {
			what = "the dead letters named"
		}
		return usageErrorf("clearing deletes %s undelivered, for good; add --yes to confirm", what)
	}
	var n int
	err := withWebhookAdmin(opts.Admin, exclusive, func(a webhookAdmin) (err error) {
		n, err = a.ClearWebhooks(context.Background(), opts.IDs)
		return err
	})
	if err != nil {
		return err
	}
	if opts.Output != formatTable {
		return printData(opts.IO.Out, opts.Output, WebhooksCleared{Cleared: n})
	}
	_, err = fmt.Fprintf(opts.IO.Out, "Deleted %s\n", plural(n, "dead letter"))
	return err
}

func (a *offlineAdmin) ListWebhooks(context.Context) (list []webhook.Delivery, err error) {
	err = a.with(readOnly, func(s store.Store) error {
		list = webhook.List(s)
		return nil
	})
	return list, err
}

func (a *offlineAdmin) RetryWebhooks(_ context.Context, ids []string) (n int, err error) {
	return a.changeWebhooks("cannot retry webhook dead letters", func(s store.Store) (int, error) {
		return webhook.Retry(s, ids, a.now())
	})
}

func (a *offlineAdmin) ClearWebhooks(_ context.Context, ids []string) (n int, err error) {
	return a.changeWebhooks("cannot clear webhook dead letters", func(s store.Store) (int, error) {
		return webhook.Clear(s, ids)
	})
}

func (a *offlineAdmin) changeWebhooks(what string, fn func(store.Store) (int, error)) (n int, err error) {
	mode, err := a.writeMode()
	if err != nil {
		return 0, err
	}
	err = a.with(mode, func(s store.Store) error {
		n, err = fn(s)
		if err != nil && !errors.Is(err, webhook.ErrNoDeadLetter) {
			return fmt.Errorf("%s: %w", what, err)
		}
		return err
	})
	return n, err
}

func (c *daemonClient) ListWebhooks(ctx context.Context) ([]webhook.Delivery, error) {
	var list []webhook.Delivery
	if err := c.work(ctx, "GET", "/admin/webhooks", nil, &list); err != nil {
		return nil, err
	}
	return list, nil
}

func (c *daemonClient) RetryWebhooks(ctx context.Context, ids []string) (int, error) {
	var res server.AdminWebhooksRetryResponse
	err := c.work(ctx, "POST", "/admin/webhooks/retry", server.AdminWebhooksRequest{IDs: ids, All: len(ids) == 0}, &res)
	return res.Retried, deadLetterError(err)
}

func (c *daemonClient) ClearWebhooks(ctx context.Context, ids []string) (int, error) {
	var res server.AdminWebhooksClearResponse
	err := c.work(ctx, "POST", "/admin/webhooks/clear", server.AdminWebhooksRequest{IDs: ids, All: len(ids) == 0}, &res)
	return res.Cleared, deadLetterError(err)
}

// deadLetterError gives the daemon's 404 for an unknown id the error the
// offline Admin returns, whose text the daemon sent.
func deadLetterError(err error) error {
	var re *remoteError
	if errors.As(err, &re) && re.code == http.StatusNotFound {
		return &deadLetterNotFound{re.msg}
	}
	return err
}

type deadLetterNotFound struct{ msg string }

func (e *deadLetterNotFound) Error() string { return e.msg }
func (e *deadLetterNotFound) Unwrap() error { return webhook.ErrNoDeadLetter }
