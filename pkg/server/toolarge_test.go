package server

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// tooLargeBody is what the clients below send: far more than the limit,
// as one JSON object whose string never ends before the limit does.
const (
	tooLargeBody   = 8 << 20
	tooLargePrefix = `{"playbook":[],"context":{"blob":"`
)

// A submission far above server.max_body_bytes is answered 413 on a real
// connection, whether the client sends it in one go or slowly, with a
// Content-Length or chunked: the server reads the rest of the body before
// it closes, so the client is not reset before it reads the answer.
func TestTooLargeIsAnsweredNotReset(t *testing.T) {
	e := newEnv(t, Options{MaxBodyBytes: 64 << 10})
	addr := strings.TrimPrefix(e.ts.URL, "http://")
	runs := 50
	if testing.Short() {
		runs = 5
	}
	for _, tt := range []struct {
		name    string
		chunked bool
		pause   time.Duration
	}{
		{"fast", false, 0},
		{"fast chunked", true, 0},
		{"slow", false, time.Millisecond},
		{"slow chunked", true, time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// A few clients at once, as a busy daemon meets them.
			var wg sync.WaitGroup
			errs := make(chan error, runs)
			sem := make(chan struct{}, 5)
			for i := range runs {
				wg.Go(func() {
					sem <- struct{}{}
					defer func() { <-sem }()
					if err := sendTooLarge(addr, tt.chunked, tt.pause); err != nil {
						errs <- fmt.Errorf("run %d: %w", i, err)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
	t.Run("http client", func(t *testing.T) {
		body := bytes.Repeat([]byte("x"), tooLargeBody)
		copy(body, tooLargePrefix)
		for i := range runs {
			resp, err := e.ts.Client().Post(e.ts.URL+"/playbook/async", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatalf("run %d: %v", i, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("run %d: status %d: %s", i, resp.StatusCode, b)
			}
		}
	})
}

// sendTooLarge posts tooLargeBody bytes over a fresh connection, writing
// and reading at once as browsers and curl do, pausing after every 256KiB
// when pause is set, and checks the answer.
func sendTooLarge(addr string, chunked bool, pause time.Duration) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	head := "POST /playbook/async HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
	if chunked {
		head += "Transfer-Encoding: chunked\r\n\r\n"
	} else {
		head += fmt.Sprintf("Content-Length: %d\r\n\r\n", tooLargeBody)
	}
	var wg sync.WaitGroup
	var werr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, werr = io.WriteString(c, head); werr != nil {
			return
		}
		first := bytes.Repeat([]byte("x"), 64<<10)
		copy(first, tooLargePrefix)
		rest := bytes.Repeat([]byte("x"), len(first))
		chunk := first
		for sent := 0; sent < tooLargeBody; sent += len(chunk) {
			if chunked {
				if _, werr = fmt.Fprintf(c, "%x\r\n%s\r\n", len(chunk), chunk); werr != nil {
					return
				}
			} else if _, werr = c.Write(chunk); werr != nil {
				return
			}
			chunk = rest
			if pause > 0 && sent%(256<<10) == 0 {
				time.Sleep(pause)
			}
		}
		if chunked {
			_, werr = io.WriteString(c, "0\r\n\r\n")
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		wg.Wait()
		return fmt.Errorf("reading the answer: %w (writing: %v)", err, werr)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("reading the answer's body: %w", err)
	}
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		return fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	if !strings.Contains(string(b), "server.max_body_bytes") {
		return fmt.Errorf("answer does not name server.max_body_bytes: %s", b)
	}
	wg.Wait()
	if werr != nil {
		return fmt.Errorf("sending the body: %w", werr)
	}
	return nil
}
