package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/secauto/secauto/pkg/cli"
	"github.com/secauto/secauto/pkg/store"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"secauto": func() { os.Exit(cli.Main(os.Args[1:])) },
	})
}

// TestScripts runs every testdata/*.txtar script against the real binary.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			// A user's own configuration must not leak into the scripts.
			env.Setenv("SECAUTO_CONFIG", "")
			env.Setenv("NO_COLOR", "1")
			// Race-enabled binaries sleep a second at exit by default, which
			// would make every command in the scripts take a second.
			env.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits":       cmdExits,
			"replace":     cmdReplace,
			"count":       cmdCount,
			"newest":      cmdNewest,
			"writebytes":  cmdWriteBytes,
			"appendbytes": cmdAppendBytes,
			"waitserve":   cmdWaitServe,
			"jsonfield":   cmdJSONField,
			"httpget":     cmdHTTPGet,
		},
	})
}

// exits N command [args...] runs a command and checks its exact exit code,
// which "exec" and "! exec" cannot tell apart.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits CODE command [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exit code %q is not a number", args[0])
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("%v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited %d, want %d", strings.Join(args[1:], " "), got, want)
	}
}

// replace FILE OLD NEW changes the first OLD in FILE to NEW, keeping the
// size when both have the same length: the tampering a checksum must catch.
func cmdReplace(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: replace FILE OLD NEW")
	}
	path := ts.MkAbs(args[0])
	data, err := os.ReadFile(path)
	ts.Check(err)
	s := string(data)
	if !strings.Contains(s, args[1]) {
		ts.Fatalf("%s does not contain %q", args[0], args[1])
	}
	ts.Check(os.WriteFile(path, []byte(strings.Replace(s, args[1], args[2], 1)), 0o600))
}

// count N GLOB checks how many files match GLOB.
func cmdCount(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: count N GLOB")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("count %q is not a number", args[0])
	}
	matches, err := filepath.Glob(ts.MkAbs(args[1]))
	ts.Check(err)
	if len(matches) != want {
		ts.Fatalf("%d files match %s, want %d: %v", len(matches), args[1], want, matches)
	}
}

// newest VAR GLOB sets VAR to the path, relative to $WORK, of the last file
// matching GLOB in name order (for timestamped backups, the newest), and
// VAR_name to its base name.
func cmdNewest(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: newest VAR GLOB")
	}
	matches, err := filepath.Glob(ts.MkAbs(args[1]))
	ts.Check(err)
	if len(matches) == 0 {
		ts.Fatalf("no file matches %s", args[1])
	}
	sort.Strings(matches)
	rel, err := filepath.Rel(ts.Getenv("WORK"), matches[len(matches)-1])
	ts.Check(err)
	ts.Setenv(args[0], rel)
	ts.Setenv(args[0]+"_name", filepath.Base(rel))
}

// writebytes FILE TEXT writes TEXT, with Go escapes such as \x00, to FILE:
// for files that must not be valid.
func cmdWriteBytes(ts *testscript.TestScript, neg bool, args []string) {
	writeBytes(ts, neg, args, os.O_TRUNC)
}

// appendbytes FILE TEXT appends TEXT to FILE, as a torn write would.
func cmdAppendBytes(ts *testscript.TestScript, neg bool, args []string) {
	writeBytes(ts, neg, args, os.O_APPEND)
}

func writeBytes(ts *testscript.TestScript, neg bool, args []string, mode int) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: writebytes|appendbytes FILE TEXT")
	}
	s, err := strconv.Unquote(`"` + strings.ReplaceAll(args[1], `"`, `\"`) + `"`)
	ts.Check(err)
	f, err := os.OpenFile(ts.MkAbs(args[0]), os.O_CREATE|os.O_WRONLY|mode, 0o600)
	ts.Check(err)
	_, err = f.WriteString(s)
	ts.Check(errors.Join(err, f.Close()))
}

// waitserve DIR waits until the daemon started in the background on data
// directory DIR has recorded its API address and answers /health.
func cmdWaitServe(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitserve DIR")
	}
	dir := ts.MkAbs(args[0])
	deadline := time.Now().Add(30 * time.Second)
	for {
		if held, owner, err := store.Locked(dir); err == nil && held && owner.Address != "" {
			resp, err := http.Get("http://" + owner.Address + "/health")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			ts.Fatalf("no daemon answers for %s", args[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// jsonfield VAR KEY sets VAR to the string KEY holds in the JSON object
// the last command printed.
func cmdJSONField(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: jsonfield VAR KEY")
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(ts.ReadFile("stdout")), &obj); err != nil {
		ts.Fatalf("stdout is not a JSON object: %v", err)
	}
	v, ok := obj[args[1]].(string)
	if !ok {
		ts.Fatalf("stdout has no string %q", args[1])
	}
	ts.Setenv(args[0], v)
}

// httpget DIR PATH sends GET PATH to the daemon serving data directory DIR,
// without following redirects, and prints the status, the headers
// Location, Content-Security-Policy, X-Frame-Options and Set-Cookie (one
// "Name: value" line each, when present) and the body.
func cmdHTTPGet(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: httpget DIR PATH")
	}
	_, owner, err := store.Locked(ts.MkAbs(args[0]))
	ts.Check(err)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get("http://" + owner.Address + args[1])
	ts.Check(err)
	defer resp.Body.Close()
	var out strings.Builder
	fmt.Fprintf(&out, "%d\n", resp.StatusCode)
	for _, h := range []string{"Location", "Content-Security-Policy", "X-Frame-Options", "Set-Cookie"} {
		if v := resp.Header.Get(h); v != "" {
			fmt.Fprintf(&out, "%s: %s\n", h, v)
		}
	}
	b, err := io.ReadAll(resp.Body)
	ts.Check(err)
	out.Write(b)
	ts.Stdout().Write([]byte(out.String()))
}
