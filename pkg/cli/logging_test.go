package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/secauto/secauto/pkg/config"
	"github.com/secauto/secauto/pkg/server"
)

// readJSONLines decodes every line of the file at path.
func readJSONLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("%s: line %q is not JSON: %v", path, sc.Text(), err)
		}
		recs = append(recs, rec)
	}
	return recs
}

func TestDaemonLoggerWritesFileAndStderr(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "logs", "secauto.log")
	var stderr bytes.Buffer
	log, closer, err := daemonLogger(&stderr, true, config.Logging{Level: "info", File: path})
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("hidden at info")
	log.Info("hello", "jobs", 3)
	log.With("job_id", "j1").WithGroup("step").Warn("grouped", "name", "a")
	if err := closer.Close(); err != nil {
		t.Fatal(err)
	}

	recs := readJSONLines(t, path)
	if len(recs) != 2 {
		t.Fatalf("log file holds %d records, want 2: %v", len(recs), recs)
	}
	if recs[0]["msg"] != "hello" || recs[0]["level"] != "INFO" || recs[0]["jobs"] != float64(3) {
		t.Errorf("first record: %v", recs[0])
	}
	step, _ := recs[1]["step"].(map[string]any)
	if recs[1]["msg"] != "grouped" || recs[1]["job_id"] != "j1" || step["name"] != "a" {
		t.Errorf("WithAttrs/WithGroup lost in the file: %v", recs[1])
	}
	// stderr keeps the terminal's text format, with the same records.
	out := stderr.String()
	if strings.Contains(out, "hidden") || !strings.Contains(out, "msg=hello jobs=3") || !strings.Contains(out, "job_id=j1 step.name=a") {
		t.Errorf("stderr: %q", out)
	}

	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("log file mode: %v %v, want 0600", st.Mode(), err)
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("log directory mode: %v %v, want 0700", st.Mode(), err)
	}
}

func TestDaemonLoggerOptions(t *testing.T) {
	t.Chdir(t.TempDir())

	// An empty logging.file logs to stderr only.
	var stderr bytes.Buffer
	log, closer, err := daemonLogger(&stderr, false, config.Logging{Level: "info"})
	if err != nil {
		t.Fatal(err)
	}
	log.Info("x")
	closer.Close()
	if ents, _ := os.ReadDir("."); len(ents) != 0 || !strings.HasPrefix(stderr.String(), "{") {
		t.Errorf("logging.file \"\": files %v, stderr %q", ents, stderr.String())
	}

	// A relative file is relative to the working directory; format text
	// applies to the file too; an existing, more open file becomes 0600.
	if err := os.Mkdir("var", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("var/s.log", []byte("earlier\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	log, closer, err = daemonLogger(&stderr, false, config.Logging{Level: "debug", Format: "text", File: "var/s.log"})
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("dbg")
	closer.Close()
	b, err := os.ReadFile("var/s.log")
	if err != nil || !strings.HasPrefix(string(b), "earlier\ntime=") || !strings.Contains(string(b), "level=DEBUG msg=dbg") {
		t.Errorf("text log file: %q %v", b, err)
	}
	if st, _ := os.Stat("var/s.log"); st.Mode().Perm() != 0o600 {
		t.Errorf("existing log file mode %v, want 0600", st.Mode())
	}

	// A file that cannot be opened stops the start with exit status 2 and
	// a sentence naming it.
	if err := os.WriteFile("notadir", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"notadir/secauto.log", "var"} {
		_, _, err := daemonLogger(&stderr, false, config.Logging{Level: "info", File: bad})
		if err == nil || exitCode(err) != ExitUsage || !strings.Contains(err.Error(), "cannot open the log file "+bad+":") || !strings.Contains(err.Error(), "logging.file") {
			t.Errorf("logging.file %s: %v (exit %d)", bad, err, exitCode(err))
		}
	}
}

// serveRun logs to logging.file as JSON records with mode 0600, and refuses
// to start (exit 2) when the file cannot be opened.
func TestServeLogsToFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "logs", "secauto.log")
	cfg, err := config.Parse("c.yaml", []byte("logging:\n  file: "+path+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	ios, _, _, errOut := TestStreams()
	ran := false
	opts := &ServeOptions{
		IO:       ios,
		Config:   func() (*config.Config, error) { return cfg, nil },
		StoreDir: func() (string, error) { return filepath.Join(dir, "data"), nil },
		Run: func(ctx context.Context, o server.Options) error {
			ran = true
			o.Logger.Info("listening", "address", "127.0.0.1:1")
			o.Store.Logger.Warn("from the store")
			return nil
		},
	}
	if err := serveRun(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	recs := readJSONLines(t, path)
	if len(recs) != 2 || recs[0]["msg"] != "listening" || recs[0]["address"] != "127.0.0.1:1" || recs[1]["msg"] != "from the store" {
		t.Errorf("log file records: %v", recs)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("log file mode %v %v", st.Mode(), err)
	}
	if !strings.Contains(errOut.String(), "listening") {
		t.Errorf("stderr lacks the record: %q", errOut.String())
	}

	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Logging.File = filepath.Join(dir, "file", "secauto.log")
	ran = false
	err = serveRun(context.Background(), opts)
	if exitCode(err) != ExitUsage || ran || !strings.Contains(err.Error(), cfg.Logging.File) {
		t.Errorf("unwritable logging.file: %v (exit %d), daemon ran: %v", err, exitCode(err), ran)
	}
}
