package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/server"
	"github.com/secauto/secauto/pkg/store"
)

// pageNames are the templates of templates/, each a page over layout.html.
var pageNames = []string{"overview", "jobs", "job", "confirm", "backups", "signin", "error"}

var funcs = template.FuncMap{
	"time":     timeText,
	"timeptr":  func(t *time.Time) string { return timePtrText(t) },
	"iso":      func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"bytes":    bytesText,
	"duration": durationText,
	"pct":      func(f float64) string { return fmt.Sprintf("%.1f%%", f*100) },
}

func parsePages() map[string]*template.Template {
	base := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t := template.Must(base.Clone())
		pages[name] = template.Must(t.ParseFS(templateFS, "templates/"+name+".html"))
	}
	return pages
}

// page is what layout.html renders around a page's own view.
type page struct {
	Title   string
	Nav     string
	Flash   string
	CSRF    string
	Auth    bool
	Signed  bool
	Content any
}

var titles = map[string]string{
	"overview": "Overview", "jobs": "Jobs", "job": "Job", "confirm": "Confirm",
	"backups": "Backups", "signin": "Sign in", "error": "Error",
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, s *session, code int, name string, v any) {
	p := page{Title: titles[name], Nav: name, Auth: c.srv.AuthRequired(), Content: v}
	if name == "confirm" || name == "job" {
		p.Nav = "jobs"
	}
	if s != nil {
		p.CSRF, p.Flash, p.Signed = s.csrf, s.takeFlash(), true
	}
	if jv, ok := v.(jobView); ok {
		p.Title = "Job " + jv.ID
	}
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, "layout.html", p); err != nil {
		http.Error(w, "render page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, code int, msg string) {
	c.render(w, r, s, code, "error", errorView{Code: code, Status: http.StatusText(code), Message: msg})
}

type errorView struct {
	Code            int
	Status, Message string
}

type signInView struct{ Next, Error string }

type statusCount struct {
	Status job.Status
	Count  int
}

func statusCounts(m map[job.Status]int) []statusCount {
	out := make([]statusCount, 0, len(job.Statuses))
	for _, st := range job.Statuses {
		out = append(out, statusCount{st, m[st]})
	}
	return out
}

type overviewView struct {
	Stats  *server.StatsResponse
	Counts []statusCount
	Chart  chart
}

type statusOption struct {
	Status  job.Status
	Checked bool
}

type jobsView struct {
	Statuses     []statusOption
	Window       string
	Windows      []option
	Jobs         []jobRow
	Page         int
	First, Last  int
	Newer, Older string
	Filtered     bool
	// Live is set when a job shown may still change.
	Live bool
	// Refresh makes the page redraw its list every few seconds.
	Refresh bool
}

type jobRow struct {
	ID       string
	Status   job.Status
	Created  time.Time
	Duration string
	Steps    string
	Error    string
	RerunOf  string
}

func newJobRow(j *job.Job, now time.Time) jobRow {
	return jobRow{
		ID: j.ID, Status: j.Status, Created: j.CreatedAt, Duration: jobDuration(j, now),
		Steps: fmt.Sprintf("%d/%d", len(j.Results), len(j.Playbook)), Error: j.Error, RerunOf: j.RerunOf,
	}
}

// jobDuration is how long j ran, or has run so far.
func jobDuration(j *job.Job, now time.Time) string {
	if j.StartedAt == nil {
		return ""
	}
	end := now
	if j.CompletedAt != nil {
		end = *j.CompletedAt
	}
	return durationText(end.Sub(*j.StartedAt))
}

type jobView struct {
	jobRow
	Job     *job.Job
	Live    bool
	Reveal  bool
	Masked  int
	Context string
	// ContextCut is set when Context was clipped to maxShown.
	ContextCut bool
	Timeline   []stepView
	Reruns     []string
}

type stepView struct {
	Index           int
	Name, Action    string
	Status          string
	Started         *time.Time
	Duration        string
	Output, Error   string
	ContinueOnError bool
	// Cut is set when Output was clipped to maxShown.
	Cut bool
}

// maxShown bounds the text of one output or context on a page; the whole
// is in secauto jobs show ID -o json.
const maxShown = 64 << 10

// clip cuts s to maxShown bytes, at a character boundary, and reports
// whether it did.
func clip(s string) (string, bool) {
	if len(s) <= maxShown {
		return s, false
	}
	i := maxShown
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i], true
}

func newJobView(j *job.Job, reveal bool, now time.Time) jobView {
	v := jobView{jobRow: newJobRow(j, now), Job: j, Live: !j.Status.Terminal(), Reveal: reveal, Reruns: j.Reruns}
	ctx, n := maskValue(map[string]any(j.Context), reveal)
	v.Context, v.Masked = prettyJSON(ctx), n
	v.Context, v.ContextCut = clip(v.Context)
	results := map[string]job.Result{}
	for _, res := range j.Results {
		results[res.Step] = res
	}
	for i, step := range j.Playbook {
		sv := stepView{Index: i + 1, Name: step.Name, Action: step.Action, ContinueOnError: step.ContinueOnError}
		res, ran := results[step.Name]
		switch {
		case ran:
			sv.Status, sv.Error = res.Status, res.Error
			started := res.StartedAt
			sv.Started = &started
			if res.CompletedAt != nil {
				sv.Duration = durationText(res.CompletedAt.Sub(res.StartedAt))
			}
			if res.Output != nil {
				out, m := maskValue(res.Output, reveal)
				v.Masked += m
				if s, ok := out.(string); ok {
					sv.Output = s
				} else {
					sv.Output = prettyJSON(out)
				}
				sv.Output, sv.Cut = clip(sv.Output)
			}
		case j.Status == job.Running && i == len(j.Results):
			sv.Status = "running"
		case j.Status.Terminal():
			sv.Status = "not run"
		default:
			sv.Status = "waiting"
		}
		v.Timeline = append(v.Timeline, sv)
	}
	return v
}

// secretWords mark a key whose value is masked until the user asks to
// see it: a key containing any of them, in any case.
var secretWords = []string{"token", "secret", "password", "passwd", "pwd", "key", "auth", "credential", "cookie", "session", "private", "bearer", "signature"}

// SecretKey reports whether a context or output key looks as if its value
// is a secret (token, secret, password, key, auth, api_key…).
func SecretKey(k string) bool {
	k = strings.ToLower(k)
	for _, w := range secretWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// Masked replaces a secret value on a page until the user reveals it.
const Masked = "•••••• (masked)"

// maskValue returns v with the values under secret-looking keys, at any
// depth, replaced by Masked, and how many it replaced; with reveal, v as
// it is.
func maskValue(v any, reveal bool) (any, int) {
	if reveal {
		return v, 0
	}
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		n := 0
		for k, val := range x {
			if SecretKey(k) && val != nil && val != "" {
				out[k] = Masked
				n++
				continue
			}
			mv, m := maskValue(val, false)
			out[k], n = mv, n+m
		}
		return out, n
	case []any:
		out := make([]any, len(x))
		n := 0
		for i, val := range x {
			mv, m := maskValue(val, false)
			out[i], n = mv, n+m
		}
		return out, n
	}
	return v, 0
}

// prettyJSON is v as indented JSON, unescaped: the template escapes it.
func prettyJSON(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimRight(buf.String(), "\n")
}

type confirmView struct {
	Action  string
	Info    actionInfo
	Job     jobRow
	Allowed bool
}

type backupsView struct {
	Backups     []backupRow
	LastBackup  *time.Time
	NextBackup  *time.Time
	BackupError string
}

type backupRow struct {
	store.BackupInfo
	Name string
}

func timeText(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func timePtrText(t *time.Time) string {
	if t == nil {
		return "—"
	}
	return timeText(*t)
}

func durationText(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// chart is the throughput chart of the overview: jobs ended per five
// minutes over the last hour, drawn as SVG by the template.
type chart struct {
	Width, Height, Base int
	Bars                []bar
	Total, Failed       int
	PerMinute           float64
	FailureRate         float64
	Max                 int
	Start, End          time.Time
	Ticks               []tick
}

type bar struct {
	X, W                    int
	OKY, OKH                int
	FailY, FailH            int
	CancelY, CancelH        int
	Label                   string
	Completed, Failed, Canc int
}

type tick struct {
	X     int
	Label string
}

const chartBucket = 5 // minutes a bar covers

func newChart(t server.Throughput) chart {
	c := chart{Width: 600, Height: 180, Base: 150, Start: t.Start, End: t.Start.Add(time.Duration(len(t.Minutes)) * time.Minute)}
	var buckets []server.EndCounts
	for i := 0; i < len(t.Minutes); i += chartBucket {
		var b server.EndCounts
		for _, m := range t.Minutes[i:min(i+chartBucket, len(t.Minutes))] {
			b.Completed += m.Completed
			b.Failed += m.Failed
			b.Cancelled += m.Cancelled
		}
		buckets = append(buckets, b)
		c.Total += b.Total()
		c.Failed += b.Failed
		c.Max = max(c.Max, b.Total())
	}
	if len(t.Minutes) > 0 {
		c.PerMinute = float64(c.Total) / float64(len(t.Minutes))
	}
	if ended := c.Total; ended > 0 {
		c.FailureRate = float64(c.Failed) / float64(ended)
	}
	top := max(c.Max, 1)
	plot := c.Base - 20
	slot := (c.Width - 40) / max(len(buckets), 1)
	for i, b := range buckets {
		x := 40 + i*slot
		h := func(n int) int { return n * plot / top }
		ok, fail, canc := h(b.Completed), h(b.Failed), h(b.Cancelled)
		start := t.Start.Add(time.Duration(i*chartBucket) * time.Minute)
		c.Bars = append(c.Bars, bar{
			X: x + 2, W: slot - 4,
			OKY: c.Base - ok, OKH: ok,
			FailY: c.Base - ok - fail, FailH: fail,
			CancelY: c.Base - ok - fail - canc, CancelH: canc,
			Label:     fmt.Sprintf("%s–%s UTC: %d completed, %d failed, %d cancelled", start.UTC().Format("15:04"), start.Add(chartBucket*time.Minute).UTC().Format("15:04"), b.Completed, b.Failed, b.Cancelled),
			Completed: b.Completed, Failed: b.Failed, Canc: b.Cancelled,
		})
		if i%3 == 0 {
			c.Ticks = append(c.Ticks, tick{X: x, Label: start.UTC().Format("15:04")})
		}
	}
	return c
}
