package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/store"
)

// selfSigned makes a certificate for 127.0.0.1 that signs itself.
func selfSigned(t *testing.T) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "secauto test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf
}

// With TLS, Run serves HTTPS only and records https://host:port in the
// lock file, which is what commands read to reach it.
func TestRunServesTLS(t *testing.T) {
	dir := t.TempDir()
	cert, leaf := selfSigned(t)
	ready := make(chan string, 1)
	ctx, stop := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() {
		runErr <- Run(ctx, Options{
			Store: store.Options{Dir: dir},
			TLS:   &tls.Config{Certificates: []tls.Certificate{cert}},
			Ready: func(addr string) { ready <- addr },
		})
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-runErr:
		t.Fatalf("Run: %v", err)
	}
	defer func() {
		stop()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	if !strings.HasPrefix(addr, TLSScheme) {
		t.Fatalf("Ready got %q, want an https:// address", addr)
	}
	owner, err := store.ReadOwner(dir)
	if err != nil || owner.Address != addr {
		t.Errorf("lock file owner %+v (%v), want address %s", owner, err, addr)
	}

	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	defer c.CloseIdleConnections()
	resp, err := c.Get(addr + "/health")
	if err != nil {
		t.Fatalf("GET /health over TLS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Errorf("GET /health over TLS: %d, tls %v", resp.StatusCode, resp.TLS != nil)
	}

	// Plain HTTP on the TLS port gets no API answer.
	plain := "http://" + strings.TrimPrefix(addr, TLSScheme)
	if resp, err := http.Get(plain + "/health"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP on the TLS port answered 200: %s", b)
		}
	}
}
