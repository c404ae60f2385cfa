package main

import (
	"strings"
	"testing"
)

func TestPlot(t *testing.T) {
	in := `{"cpus":2,"results":[
		{"jobs":0,"open_seconds":0.1,"vm_hwm_bytes":104857600,"phase_a":{"bench":{"per_second":20000,"latency_ms":{"p99":12}}},"phase_b":{"write_bytes_per_ack":13000}},
		{"jobs":1000000,"open_seconds":3.1,"vm_hwm_bytes":2147483648,"phase_a":{"bench":{"per_second":15000,"latency_ms":{"p99":14}}},"phase_b":{"write_bytes_per_ack":14000}}]}`
	var out strings.Builder
	if err := run(strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	svg := out.String()
	for _, want := range []string{"<svg", ">1m<", ">0<", ">20000<", ">15000<", "limit 50", "peak memory (MiB)", ">2048<"} {
		if !strings.Contains(svg, want) {
			t.Errorf("the plot lacks %q", want)
		}
	}
	if err := run(strings.NewReader(`{"results":[]}`), &out); err == nil {
		t.Error("an empty report was plotted")
	}
}
