package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/config"
	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/seal"
	"github.com/secauto/secauto/pkg/store"
)

func TestVerifyRun(t *testing.T) {
	bad := &store.VerifyResult{OK: false, Jobs: 3, Journal: 1, Backups: 2, Problems: []store.Problem{
		{File: "data/jobs.json", JobID: "x1", Message: "running job has no started_at"},
		{File: "data/jobs.json.backup.20250709-120000", Message: "checksum mismatch"},
	}}
	backups := []store.BackupInfo{
		{Path: "data/jobs.json.backup.20250709-130000", Verified: true},
		{Path: "data/jobs.json.backup.20250709-120000"},
	}
	ios, _, out, errOut := TestStreams()
	opts := &VerifyOptions{IO: ios, Admin: (&fakeAdmin{verify: bad, backups: backups}).open, Output: formatTable}
	err := verifyRun(opts)
	if exitCode(err) != ExitFailure || !errors.Is(err, errSilent) {
		t.Fatalf("problems found: err %v", err)
	}
	want := `problem: data/jobs.json: job x1: running job has no started_at
problem: data/jobs.json.backup.20250709-120000: checksum mismatch

2 problems found (3 jobs, 1 journal record, 2 backups)
To repair:
  secauto recover
      cuts damaged journal records and takes damaged or unusable jobs from the newest backup that verifies
  secauto backup restore data/jobs.json.backup.20250709-130000
      or restores the backup you choose instead
  rm data/jobs.json.backup.20250709-120000 data/jobs.json.backup.20250709-120000.sha256
      a damaged backup cannot be repaired; remove it
  secauto backup create
      then write a fresh backup
`
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
	if errOut.Len() != 0 {
		t.Errorf("stderr: %s", errOut)
	}

	// The JSON summary is printed even when verification fails.
	out.Reset()
	opts.Output = formatJSON
	if err := verifyRun(opts); exitCode(err) != ExitFailure {
		t.Fatalf("json: exit %d", exitCode(err))
	}
	var res store.VerifyResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.OK || len(res.Problems) != 2 {
		t.Errorf("json summary: %v %+v\n%s", err, res, out)
	}

	out.Reset()
	opts.Output = formatTable
	good := &store.VerifyResult{OK: true, Jobs: 1, Backups: 1}
	opts.Admin = (&fakeAdmin{verify: good}).open
	if err := verifyRun(opts); err != nil {
		t.Fatal(err)
	}
	if out.String() != "no problems found: 1 job, 0 journal records, 1 backup\n" {
		t.Errorf("ok: %q", out)
	}
}

// A job or backup encrypted with a key the configuration lacks is not
// damaged: verify says to add the key, not to repair or remove anything.
func TestVerifyRunMissingKey(t *testing.T) {
	res := &store.VerifyResult{Jobs: 2, Backups: 1, Problems: []store.Problem{
		{File: "data/jobs.json", Message: "2 jobs are encrypted with key id 3f2a9c01, which jobs.encryption_key_file does not hold; add that key to check and read them", MissingKeyID: "3f2a9c01"},
		{File: "data/jobs.json.backup.20250709-120000", Message: "1 jobs are encrypted with key id 0badc0de, which jobs.encryption_key_file does not hold; add that key to check and read them", MissingKeyID: "0badc0de"},
	}}
	ios, _, out, _ := TestStreams()
	err := verifyRun(&VerifyOptions{IO: ios, Admin: (&fakeAdmin{verify: res}).open, Output: formatTable})
	if exitCode(err) != ExitFailure {
		t.Fatalf("exit %d", exitCode(err))
	}
	want := `To repair:
  add the key with id 3f2a9c01, 0badc0de to jobs.encryption_key_file
      nothing is damaged: the jobs are encrypted with a key this configuration lacks (after the first line: the first key encrypts)
`
	if !strings.HasSuffix(out.String(), want) {
		t.Errorf("got:\n%s\nwant it to end with:\n%s", out, want)
	}
}

// keys rotate prints what it did; -o json is {"jobs": N, ...}.
func TestKeysRotateRun(t *testing.T) {
	ios, _, out, _ := TestStreams()
	fake := &fakeAdmin{rotated: &store.RotateResult{Jobs: 12, Records: 1, KeyID: "3f2a9c01"}}
	if err := keysRotateRun(&KeysRotateOptions{IO: ios, Admin: fake.open, Output: formatTable}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "Re-encrypted 12 jobs under key id 3f2a9c01 (and 1 record)\n" {
		t.Errorf("table: %q", out)
	}
	out.Reset()
	if err := keysRotateRun(&KeysRotateOptions{IO: ios, Admin: fake.open, Output: formatJSON}); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || got["jobs"] != 12.0 || got["key_id"] != "3f2a9c01" {
		t.Errorf("json: %v %s", err, out)
	}
}

// keys list names the configured keys by id, the encrypting one first,
// and never shows key material.
func TestKeysListRun(t *testing.T) {
	k1, k2 := bytes.Repeat([]byte{1}, seal.KeySize), bytes.Repeat([]byte{2}, seal.KeySize)
	kr, err := seal.New(k1, k2)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{}
	cfg.Jobs.Keyring = kr
	ios, _, out, _ := TestStreams()
	opts := &KeysListOptions{IO: ios, Config: func() (*config.Config, error) { return cfg, nil }, Output: formatJSON}
	if err := keysListRun(opts); err != nil {
		t.Fatal(err)
	}
	var got []KeyInfo
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := []KeyInfo{{seal.KeyID(k1), true}, {seal.KeyID(k2), false}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("keys %+v, want %+v", got, want)
	}
	out.Reset()
	opts.Output = formatTable
	if err := keysListRun(opts); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), seal.KeyID(k1)+"  encrypts and decrypts") || strings.Contains(out.String(), "0101") {
		t.Fatalf("table:\n%s", out)
	}
	opts.Config = func() (*config.Config, error) { return &config.Config{}, nil }
	if err := keysListRun(opts); exitCode(err) != ExitUsage {
		t.Fatalf("without a key file: %v (exit %d)", err, exitCode(err))
	}
}

func TestCleanupRun(t *testing.T) {
	ios, _, out, _ := TestStreams()
	var got store.CleanupOptions
	opts := &CleanupOptions{
		IO: ios,
		Retention: func() (time.Duration, map[job.Status]time.Duration, error) {
			return 30 * 24 * time.Hour, map[job.Status]time.Duration{job.Failed: 90 * 24 * time.Hour}, nil
		},
		Admin: (&fakeAdmin{cleanup: func(o store.CleanupOptions) (*store.CleanupResult, error) {
			got = o
			return &store.CleanupResult{Deleted: 2, DryRun: o.DryRun, IDs: []string{"a", "b"}}, nil
		}}).open,
		DryRun: true,
		Output: formatTable,
	}
	if err := cleanupRun(opts); err != nil {
		t.Fatal(err)
	}
	if got.Retention != 30*24*time.Hour || got.ByStatus[job.Failed] != 90*24*time.Hour || !got.DryRun {
		t.Errorf("configured retention not used: %+v", got)
	}
	if out.String() != "Would delete 2 jobs (terminal jobs older than 30d; failed older than 90d):\n  a\n  b\n" {
		t.Errorf("dry run output: %q", out)
	}

	out.Reset()
	opts.DryRun, opts.OlderThan, opts.Output = false, "1d12h", formatJSON
	if err := cleanupRun(opts); err != nil {
		t.Fatal(err)
	}
	if got.Retention != 36*time.Hour || got.ByStatus != nil || got.DryRun {
		t.Errorf("--older-than must replace every retention: %+v", got)
	}
	var res map[string]any
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res["deleted"] != 2.0 || res["dry_run"] != false {
		t.Errorf("json: %v %s", err, out)
	}
}

func TestBackupOutputs(t *testing.T) {
	ios, _, out, _ := TestStreams()
	create := &BackupCreateOptions{IO: ios, Output: formatTable, Admin: (&fakeAdmin{backup: &store.BackupResult{
		Path: "data/jobs.json.backup.20250709-180000", Jobs: 3, SHA256: "ab12", Size: 2048,
		Removed: []string{"data/jobs.json.backup.20250601-000000"}}}).open}
	if err := backupCreateRun(create); err != nil {
		t.Fatal(err)
	}
	want := "Wrote backup data/jobs.json.backup.20250709-180000 (3 jobs, 2 KiB)\nsha256: ab12\nRemoved old backup data/jobs.json.backup.20250601-000000\n"
	if out.String() != want {
		t.Errorf("create:\n%q\nwant\n%q", out, want)
	}

	out.Reset()
	restore := &BackupRestoreOptions{IO: ios, File: "b", Output: formatTable,
		Resolve: func(dir, file string) (string, error) { return "data/jobs.json.backup.20250709-180000", nil },
		Check:   func(string) (int, bool, error) { return 3, true, nil },
		Admin: (&fakeAdmin{restored: &Restored{
			RestoreResult: store.RestoreResult{RestoredJobs: 3, SafetyBackup: "data/jobs.json.backup.20250709-180001"},
			Repaired:      store.OpenReport{SnapshotCorruptPath: "data/jobs.json.corrupt-20250709-180001"},
		}}).open}
	if err := backupRestoreRun(restore); err != nil {
		t.Fatal(err)
	}
	want = `Moved corrupt jobs.json aside to data/jobs.json.corrupt-20250709-180001
Verified data/jobs.json.backup.20250709-180000 (3 jobs)
Saved the previous state as data/jobs.json.backup.20250709-180001
Restored 3 jobs from data/jobs.json.backup.20250709-180000
To undo: secauto backup restore data/jobs.json.backup.20250709-180001
`
	if out.String() != want {
		t.Errorf("restore:\n%s\nwant\n%s", out, want)
	}
	out.Reset()
	restore.Output = formatJSON
	if err := backupRestoreRun(restore); err != nil {
		t.Fatal(err)
	}
	if out.String() != "{\n  \"restored_jobs\": 3,\n  \"safety_backup\": \"data/jobs.json.backup.20250709-180001\"\n}\n" {
		t.Errorf("restore json: %s", out)
	}

	out.Reset()
	list := &BackupListOptions{IO: ios, Now: func() time.Time { return now }, Output: formatTable, Admin: (&fakeAdmin{dir: "data", backups: []store.BackupInfo{
		{Path: "data/jobs.json.backup.20250709-120000.gz", Time: *tp("2025-07-09T12:00:00Z"), Size: 1536, Jobs: 3, Compressed: true, Verified: true},
		{Path: "data/jobs.json.backup.20250708-120000", Time: *tp("2025-07-08T12:00:00Z"), Size: 100, Problem: "checksum mismatch"},
	}}).open}
	if err := backupListRun(list); err != nil {
		t.Fatal(err)
	}
	want = `BACKUP                                    CREATED               SIZE     JOBS  VERIFIED
data/jobs.json.backup.20250709-120000.gz  2025-07-09T12:00:00Z  1.5 KiB  3     yes
data/jobs.json.backup.20250708-120000     2025-07-08T12:00:00Z  100 B    -     no: checksum mismatch
`
	if out.String() != want {
		t.Errorf("list:\n%s\nwant\n%s", out, want)
	}
}

// Completion offers the files the store names as backups, newest first,
// and nothing beside them.
func TestCompleteBackupsByTheStoresRule(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := os.Mkdir("data", 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"jobs.json.backup.20250709-120000", "jobs.json.backup.20250709-120000.sha256",
		"jobs.json.backup.20250710-120000.gz", "jobs.json.backup.20250710-120000.gz.sha256",
		"jobs.json.backup.20250711-120000.tmp", "jobs.json.backup.old", "jobs.json",
	} {
		if err := os.WriteFile(filepath.Join("data", name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ios, _, _, _ := TestStreams()
	f := NewFactory(ios, nil)
	f.DataDir = "data"
	want := []string{filepath.Join("data", "jobs.json.backup.20250710-120000.gz"), filepath.Join("data", "jobs.json.backup.20250709-120000")}
	if got := completeBackups(f, "data/"); !reflect.DeepEqual(got, want) {
		t.Errorf("completion %q, want %q", got, want)
	}
	if got := completeBackups(f, "data/jobs.json.backup.20250709"); !reflect.DeepEqual(got, want[1:]) {
		t.Errorf("completion of a prefix %q, want %q", got, want[1:])
	}
}
