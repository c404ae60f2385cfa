// Command historyplot draws historybench's figures as an SVG: for each
// store size, how the daemon's open time, throughput, tail latency, disk
// writes per submission and peak memory compare with the empty store's.
//
//	go -C bench run ./cmd/historybench -jobs 0,100k,1m -o json > history.json
//	go -C bench run ./cmd/historyplot < history.json > ../docs/img/history-cost.svg
package main

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"os"
	"strings"
)

// The subset of historybench's -o json that is drawn.
type report struct {
	CPUs    int `json:"cpus"`
	Results []struct {
		Jobs          int     `json:"jobs"`
		JobsJSONBytes int64   `json:"jobs_json_bytes"`
		OpenSeconds   float64 `json:"open_seconds"`
		PeakHWM       int64   `json:"vm_hwm_bytes"`
		A             *struct {
			Bench struct {
				PerSecond float64 `json:"per_second"`
				Latency   struct {
					P99 float64 `json:"p99"`
				} `json:"latency_ms"`
			} `json:"bench"`
		} `json:"phase_a"`
		B *struct {
			WritePerAck float64 `json:"write_bytes_per_ack"`
		} `json:"phase_b"`
	} `json:"results"`
}

// panel is one figure across the store sizes.
type panel struct {
	title string
	unit  string
	vals  []float64
	limit float64 // a threshold line, 0 for none
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "historyplot:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	var r report
	if err := json.NewDecoder(in).Decode(&r); err != nil {
		return fmt.Errorf("read historybench -o json: %w", err)
	}
	if len(r.Results) == 0 {
		return fmt.Errorf("the report holds no store sizes")
	}
	var labels []string
	ps := []*panel{
		{title: "open", unit: "s", limit: 10},
		{title: "acks/s, 64 clients", unit: "/s"},
		{title: "p99, 64 clients", unit: "ms", limit: 50},
		{title: "written per ack, 200/s", unit: "KiB"},
		{title: "peak memory", unit: "MiB"},
	}
	for _, res := range r.Results {
		labels = append(labels, sizeLabel(res.Jobs))
		var acks, p99, wpa float64
		if res.A != nil {
			acks, p99 = res.A.Bench.PerSecond, res.A.Bench.Latency.P99
		}
		if res.B != nil {
			wpa = res.B.WritePerAck / 1024
		}
		for i, v := range []float64{res.OpenSeconds, acks, p99, wpa, float64(res.PeakHWM) / (1 << 20)} {
			ps[i].vals = append(ps[i].vals, v)
		}
	}
	const pw, ph, pad = 220, 180, 40
	w := len(ps)*pw + pad
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", w, ph+90)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%d" y="18" font-size="13">secauto serve with a growing history (historybench, %d CPUs): jobs stored on the x axis</text>`+"\n", pad/2, r.CPUs)
	for i, p := range ps {
		x0, y0 := pad/2+i*pw, 40
		drawPanel(&b, p, labels, x0, y0, pw-30, ph)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(out, b.String())
	return err
}

// drawPanel draws p's bars in the box at x0, y0 of w by h.
func drawPanel(b *strings.Builder, p *panel, labels []string, x0, y0, w, h int) {
	top := p.limit
	for _, v := range p.vals {
		top = max(top, v)
	}
	if top <= 0 {
		top = 1
	}
	top *= 1.15
	fmt.Fprintf(b, `<text x="%d" y="%d" font-weight="bold">%s (%s)</text>`+"\n", x0, y0, html.EscapeString(p.title), p.unit)
	base := y0 + h
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", x0, base, x0+w, base)
	bw := w / max(len(p.vals), 1)
	for i, v := range p.vals {
		bh := int(float64(h-20) * v / top)
		x := x0 + i*bw + bw/6
		fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="#4a7ab8"/>`+"\n", x, base-bh, bw*2/3, bh)
		fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", x+bw/3, base-bh-4, figure(v))
		fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", x+bw/3, base+14, labels[i])
	}
	if p.limit > 0 {
		y := base - int(float64(h-20)*p.limit/top)
		fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#c03030" stroke-dasharray="4,3"/>`+"\n", x0, y, x0+w, y)
		fmt.Fprintf(b, `<text x="%d" y="%d" fill="#c03030" text-anchor="end">limit %s</text>`+"\n", x0+w, y-3, figure(p.limit))
	}
}

func sizeLabel(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dm", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

func figure(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}
