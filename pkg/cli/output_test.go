package cli

import (
	"testing"
	"time"
)

func TestRelativeTime(t *testing.T) {
	base := time.Date(2025, 7, 9, 12, 0, 0, 0, time.UTC)
	for d, want := range map[time.Duration]string{
		10 * time.Second:     "just now",
		-10 * time.Second:    "in a moment",
		time.Minute:          "1 minute ago",
		59 * time.Minute:     "59 minutes ago",
		2 * time.Hour:        "2 hours ago",
		-3 * time.Hour:       "3 hours from now",
		36 * time.Hour:       "1 day ago",
		45 * 24 * time.Hour:  "1 month ago",
		400 * 24 * time.Hour: "1 year ago",
		800 * 24 * time.Hour: "2 years ago",
	} {
		if got := relativeTime(base.Add(-d), base); got != want {
			t.Errorf("relativeTime(-%v) = %q, want %q", d, got, want)
		}
	}
}

func TestHumanUnits(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1 KiB", 1536: "1.5 KiB", 10 << 20: "10 MiB", 3 << 30: "3 GiB"} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		850 * time.Millisecond: "850ms", 4200 * time.Millisecond: "4.2s", 3 * time.Second: "3s",
		184 * time.Second: "3m4s", 125 * time.Minute: "2h5m", 76 * time.Hour: "3d4h", -time.Second: "-",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
	if got := truncate("a  very\nlong line", 8); got != "a very …" {
		t.Errorf("truncate = %q", got)
	}
	if got := truncate("short", 8); got != "short" {
		t.Errorf("truncate = %q", got)
	}
}

func TestColorDecision(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	if !colorAllowed(true, env("TERM", "xterm")) {
		t.Error("no colour on a plain terminal")
	}
	if colorAllowed(false, env()) {
		t.Error("colour on a pipe")
	}
	if colorAllowed(true, env("NO_COLOR", "1")) {
		t.Error("colour despite NO_COLOR")
	}
	if colorAllowed(true, env("TERM", "dumb")) {
		t.Error("colour on a dumb terminal")
	}

	// --no-color turns it off for the whole run.
	ios, _, out, _ := TestStreams()
	ios.SetStdoutTTY(true)
	ios.SetColorEnabled(true)
	f := NewFactory(ios, nil)
	if code := Run(f, []string{"--no-color", "version"}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if ios.ColorEnabled() {
		t.Error("--no-color left colour on")
	}
	if out.Len() == 0 {
		t.Error("no output")
	}
}
