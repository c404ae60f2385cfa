package cli

import (
	"context"
	"errors"
	"strings"

	"github.com/spf13/cobra"

	"github.com/secauto/secauto/pkg/config"
	"github.com/secauto/secauto/pkg/store"
)

// NewCmdKeys is "secauto keys".
func NewCmdKeys(f *Factory) *cobra.Command {
	cmd := groupCommand("keys",
		"Manage the keys that encrypt the job store",
		strings.TrimSpace(`
With jobs.encryption_key_file set, the secret-bearing fields of every job
(context, submitted context, step outputs) and the webhook outbox are
encrypted in every file of the data directory: jobs.json, the journal and
backups. The key file holds one 256-bit key a line (64 hex digits or 44
characters of base64); the first encrypts, every key decrypts.
`+exitStatus("")),
		example(`
  secauto keys list
  secauto keys rotate`))
	cmd.AddCommand(NewCmdKeysList(f, nil), NewCmdKeysRotate(f, nil))
	return cmd
}

// KeysListOptions holds "keys list"'s flags and dependencies.
type KeysListOptions struct {
	IO     *IOStreams
	Config func() (*config.Config, error)

	Output outputFormat
}

// KeyInfo is one key of jobs.encryption_key_file, as "keys list" prints it.
type KeyInfo struct {
	KeyID    string `json:"key_id"`
	Encrypts bool   `json:"encrypts"`
}

// NewCmdKeysList is "secauto keys list".
func NewCmdKeysList(f *Factory, runF func(*KeysListOptions) error) *cobra.Command {
	opts := &KeysListOptions{IO: f.IOStreams, Config: f.Config}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the key ids of jobs.encryption_key_file",
		Long: strings.TrimSpace(`
List the ids of the keys in jobs.encryption_key_file, the one that
encrypts first. A key id (8 hex digits) names a key without revealing it:
jobs, backups ('secauto backup list -o json', key_ids) and error messages
name the key they need by it. Reads only the key file, never the data
directory.
` + exitStatus("")),
		Example: example(`
  secauto keys list
  # can the oldest key go? only if no backup still needs it
  secauto backup list -o json | jq -r '.[].key_ids[]?' | sort -u`),
		Aliases: []string{"ls"},
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return keysListRun(opts)
		},
	}
	addOutputFlag(cmd, &opts.Output)
	return cmd
}

func keysListRun(opts *KeysListOptions) error {
	cfg, err := opts.Config()
	if err != nil {
		return err
	}
	if cfg.Jobs.Keyring == nil {
		return &configError{errors.New("no jobs.encryption_key_file is configured; jobs are stored unencrypted")}
	}
	keys := []KeyInfo{}
	for i, id := range cfg.Jobs.Keyring.IDs() {
		keys = append(keys, KeyInfo{KeyID: id, Encrypts: i == 0})
	}
	if opts.Output != formatTable {
		return printData(opts.IO.Out, opts.Output, keys)
	}
	t := newTable(opts.IO, "key id", "use")
	for _, k := range keys {
		use := "decrypts"
		if k.Encrypts {
			use = "encrypts and decrypts"
		}
		t.addRow(k.KeyID, use)
	}
	return t.render()
}

// KeysRotateOptions holds "keys rotate"'s flags and dependencies.
type KeysRotateOptions struct {
	IO    *IOStreams
	Admin func(lockMode) (Admin, error)

	Output outputFormat
}

// NewCmdKeysRotate is "secauto keys rotate".
func NewCmdKeysRotate(f *Factory, runF func(*KeysRotateOptions) error) *cobra.Command {
	opts := &KeysRotateOptions{IO: f.IOStreams, Admin: adminFor(f, "keys rotate")}
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Re-encrypt the job store under the first key",
		Long: strings.TrimSpace(`
Re-encrypt every job that is not yet encrypted with the first key of
jobs.encryption_key_file: jobs written in plain before a key was
configured, and jobs under an older key. Jobs are rewritten in durable
batches through the journal, so the command may be stopped at any point
(even by kill -9): every job stays readable, since every key of the file
decrypts, and running it again goes on where it stopped.

While the daemon runs, the daemon does the work with its own key file.

To rotate: put a new key on the first line of the key file and keep the old
ones below it, restart the daemon (or run this offline), run this command,
and remove an old key only once no backup you keep needs it (see the key_ids
of 'secauto backup list -o json').
` + exitStatus("")),
		Example: example(`
  # a new key first, the old one kept below it
  { openssl rand -hex 32; cat /etc/secauto/keys; } >/etc/secauto/keys.new
  chmod 600 /etc/secauto/keys.new && mv /etc/secauto/keys.new /etc/secauto/keys
  secauto keys rotate

  # in scripts
  secauto keys rotate -o json   # {"jobs": 1200, ...}`),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return keysRotateRun(opts)
		},
	}
	addOutputFlag(cmd, &opts.Output)
	return cmd
}

func keysRotateRun(opts *KeysRotateOptions) error {
	admin, err := opts.Admin(exclusive)
	if err != nil {
		return err
	}
	defer admin.Close()
	var res *store.RotateResult
	err = busy(opts.IO, "re-encrypting jobs", func(progress store.Progress) (err error) {
		res, err = admin.RotateKeys(context.Background(), progress)
		return err
	})
	if err != nil {
		return err
	}
	if opts.Output != formatTable {
		return printData(opts.IO.Out, opts.Output, res)
	}
	w := &errWriter{w: opts.IO.Out}
	cs := opts.IO.ColorScheme()
	w.printf("%s %s under key id %s", cs.Green("Re-encrypted"), plural(res.Jobs, "job"), res.KeyID)
	if res.Records > 0 {
		w.printf(" (and %s)", plural(res.Records, "record"))
	}
	w.printf("\n")
	return w.err
}
