package postgres

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
)

// proxy forwards TCP connections to the test database, until stop: then it
// closes every connection and refuses new ones, as a database that went
// away does, until start.
type proxy struct {
	t      testing.TB
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
}

// proxied returns a URL like u that goes through a new proxy, with a
// password (the test server trusts every connection, whatever it says).
func proxied(t testing.TB, u, password string) (string, *proxy) {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, target: pu.Host, addr: "127.0.0.1:0", conns: map[net.Conn]bool{}}
	p.start()
	t.Cleanup(p.stop)
	pu.Host = p.addr
	pu.User = url.UserPassword(pu.User.Username(), password)
	return pu.String(), p
}

func (p *proxy) start() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			if !p.track(c, d) {
				continue
			}
			go p.pipe(c, d)
			go p.pipe(d, c)
		}
	}()
}

// track remembers c and d, unless the proxy was stopped meanwhile.
func (p *proxy) track(c, d net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		c.Close()
		d.Close()
		return false
	}
	p.conns[c], p.conns[d] = true, true
	return true
}

func (p *proxy) pipe(dst, src net.Conn) {
	io.Copy(dst, src)
	dst.Close()
	src.Close()
}

func (p *proxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return
	}
	p.ln.Close()
	p.ln = nil
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}
