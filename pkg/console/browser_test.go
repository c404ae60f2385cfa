package console_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/secauto/secauto/pkg/console"
	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/server"
	"github.com/secauto/secauto/pkg/store"
)

// The browser test drives Chromium, headless, against a real daemon
// (server.Run on a loopback port, the console mounted as serve mounts it).
// Its screenshots are kept in $SECAUTO_SCREENSHOTS when set, else in the
// test's temporary directory; with -update-screenshots the overview and a
// job page are also written to docs/img for the README:
//
//	go test ./pkg/console -run TestBrowser -update-screenshots
var updateScreenshots = flag.Bool("update-screenshots", false, "write the README's screenshots to docs/img")

// chromium finds a Chromium or Chrome to drive: $SECAUTO_CHROMIUM, else
// the usual names on $PATH.
func chromium() string {
	if p := os.Getenv("SECAUTO_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// daemon runs server.Run, the daemon serve runs, on a free loopback port
// and returns its base URL.
func daemon(t *testing.T, dir string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, server.Options{
			Store:           store.Options{Dir: dir},
			Port:            0,
			Workers:         2,
			AuthTokens:      []string{testToken},
			ShutdownTimeout: 2 * time.Second,
			Maintenance: server.Maintenance{
				Retention: 30 * 24 * time.Hour, CleanupInterval: 24 * time.Hour,
				BackupEnabled: true, BackupInterval: 24 * time.Hour, BackupKeep: 10,
			},
			Console: console.Mount(console.Options{}),
			Ready:   func(addr string) { ready <- addr },
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
	})
	select {
	case addr := <-ready:
		return "http://" + addr
	case err := <-done:
		t.Fatalf("daemon did not start: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("daemon did not start in 20s")
	}
	return ""
}

// api calls the daemon's JSON API with the token.
func api(t *testing.T, method, url, body string, out any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode >= 300 {
		t.Fatalf("%s %s: %s", method, url, res.Status)
	}
	if out != nil {
		if err := json.NewDecoder(res.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
}

func waitAPI(t *testing.T, base, id string, want job.Status) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var j job.Job
		api(t, "GET", base+"/job/"+id, "", &j)
		if j.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s is %s, want %s", id, j.Status, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func submitAPI(t *testing.T, base, body string) string {
	t.Helper()
	var res server.SubmitResponse
	api(t, "POST", base+"/playbook/async", body, &res)
	return res.JobID
}

func TestBrowser(t *testing.T) {
	path := chromium()
	if path == "" {
		t.Skip("no Chromium found (set SECAUTO_CHROMIUM, or install Debian's chromium); the browser test is skipped")
	}
	shots := os.Getenv("SECAUTO_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	// A remote tool that fails the first call and answers the next: the
	// failed job's rerun completes.
	var calls atomic.Int64
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			http.Error(w, "firewall busy", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"blocked":true}`)
	}))
	defer flaky.Close()

	base := daemon(t, t.TempDir())
	for i := range 14 {
		pb := okPlaybook
		if i%5 == 4 {
			pb = failPlaybook
		}
		submitAPI(t, base, pb)
	}
	// Job data is attacker-influenced: markup in the context and in a
	// step's output must be shown as text, and no script of it may run.
	failedID := submitAPI(t, base, `{"playbook":[
	 {"name":"enrich","action":"log","params":{"message":"<script>window.__injected=1</script><img src=x onerror=\"window.__injected=2\">"}},
	 {"name":"wait","action":"sleep","params":{"duration":"1500ms"}},
	 {"name":"block-ip","action":"http","params":{"method":"POST","url":"`+flaky.URL+`/block"}}],
	 "context":{"ip":"203.0.113.7","api_token":"tok-SECRET-1234","note":"<b onmouseover=\"window.__injected=3\">hi</b><script>window.__injected=4</script>"}}`)
	waitAPI(t, base, failedID, job.Failed)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	bctx, cancelT := context.WithTimeout(bctx, 90*time.Second)
	defer cancelT()

	var (
		mu       sync.Mutex
		problems []string
	)
	if err := chromedp.Listen(bctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *page.EventJavascriptDialogOpening:
			problems = append(problems, "a dialog opened: "+ev.Message)
			go chromedp.Call(bctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		case *runtime.EventExceptionThrown:
			problems = append(problems, "script error: "+(&chromedp.ExceptionError{ExceptionDetails: ev.ExceptionDetails}).Error())
		case *log.EventEntryAdded:
			// A CSP report means the page tried something inline.
			if strings.Contains(ev.Entry.Text, "Content Security Policy") || ev.Entry.Level == log.EntryLevelError {
				problems = append(problems, "console: "+ev.Entry.Text)
			}
		}
	}); err != nil {
		t.Fatalf("listen: %v", err)
	}
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			buf, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return chromedp.Void{}, err
			}
			p := filepath.Join(shots, name+".png")
			t.Logf("screenshot %s", p)
			return chromedp.Void{}, os.WriteFile(p, buf, 0o644)
		}
	}
	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(expr string) any {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Evaluate[any](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return v
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return v
	}
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }

	if _, err := chromedp.Call(bctx, log.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("enable the log: %v", err)
	}
	// Sign in with the keyboard only: the form is focused, Enter sends it.
	do("sign in",
		chromedp.Navigate(base+"/ui/"),
		chromedp.WaitVisible(css(`#token`)),
		shot("signin"),
		chromedp.KeyEvent(testToken+"\r"),
		chromedp.WaitVisible(css(`svg[role="img"]`)),
	)
	do("tab to the skip link", chromedp.KeyEvent("\t"))
	if got := eval(`document.activeElement.className`); got != "skip" {
		t.Errorf("first Tab focuses %q, want the skip link", got)
	}

	// Filter the list to failed jobs.
	do("filter the jobs",
		chromedp.Click(css(`nav a[href="/ui/jobs"]`)),
		chromedp.WaitVisible(css(`form.filters`)),
		chromedp.Click(css(`#st-failed`)),
		chromedp.Click(css(`form.filters button[type="submit"]`)),
		chromedp.WaitVisible(css(`#st-failed[checked]`)),
		shot("jobs-failed"),
	)
	listed := fmt.Sprint(eval(`Array.from(document.querySelectorAll('#jobs-body a.mono')).map(a => a.textContent).join(" ")`))
	if ids := strings.Fields(listed); len(ids) != 3 || ids[0] != failedID {
		t.Errorf("failed jobs listed: %v, want 3 with %s first", ids, failedID)
	}

	// The list shows a job that fails meanwhile, without a reload.
	eval(`window.__marker = 7`)
	late := submitAPI(t, base, failPlaybook)
	do("see a new job arrive", chromedp.WaitVisible(css(`#jobs-body a[href="/ui/jobs/`+late+`"]`)))
	if eval(`window.__marker`) != float64(7) {
		t.Error("the jobs page reloaded instead of refreshing its list")
	}

	// Open the failed job: its markup is text, its secret masked.
	do("open the failed job",
		chromedp.Click(css(`#jobs-body a[href="/ui/jobs/`+failedID+`"]`)),
		chromedp.WaitVisible(css(`#job-steps`)),
		shot("job-failed"),
	)
	if eval(`window.__injected === undefined`) != true {
		t.Error("a script from the job's data ran")
	}
	if ctxText := text(`#job-context pre`); !strings.Contains(ctxText, `<b onmouseover=\"window.__injected=3\">hi</b>`) || strings.Contains(ctxText, "tok-SECRET") || !strings.Contains(ctxText, console.Masked) {
		t.Errorf("context shown as:\n%s", ctxText)
	}
	if out := text(`#job-steps li:first-child pre`); !strings.Contains(out, "<script>window.__injected=1</script>") {
		t.Errorf("output shown as:\n%s", out)
	}

	// Rerun it and watch the rerun complete without reloading the page.
	do("rerun",
		chromedp.Click(css(`a[href="/ui/jobs/`+failedID+`/rerun"]`)),
		chromedp.WaitVisible(css(`form.confirm button`)),
		shot("confirm-rerun"),
		chromedp.Click(css(`form.confirm button`)),
		chromedp.WaitVisible(css(`.flash`)),
	)
	eval(`window.__marker = 42`)
	do("watch the rerun",
		chromedp.WaitVisible(css(`#job-live .s-running`)),
		shot("rerun-running"),
		chromedp.WaitVisible(css(`#job-live .s-completed`)),
		chromedp.WaitVisible(css(`#job-steps li:nth-child(3) .t-ok`)),
		shot("rerun-completed"),
	)
	if eval(`window.__marker`) != float64(42) {
		t.Error("the page reloaded instead of updating live")
	}

	do("backups",
		chromedp.Click(css(`nav a[href="/ui/backups"]`)),
		chromedp.WaitVisible(css(`main form button[type="submit"]`)),
		chromedp.Click(css(`main form button[type="submit"]`)),
		chromedp.WaitVisible(css(`.flash`)),
		shot("backups"),
	)
	do("overview",
		chromedp.Click(css(`nav a[href="/ui/"]`)),
		chromedp.WaitVisible(css(`svg[role="img"]`)),
		shot("overview"),
	)
	mu.Lock()
	for _, p := range problems {
		t.Error(p)
	}
	mu.Unlock()

	if *updateScreenshots {
		for name, to := range map[string]string{"overview": "console-overview.png", "job-failed": "console-job.png"} {
			b, err := os.ReadFile(filepath.Join(shots, name+".png"))
			if err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join("..", "..", "docs", "img", to)
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, b, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("updated %s", dst)
		}
	}
}
