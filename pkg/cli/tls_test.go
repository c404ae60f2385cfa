package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/server"
)

// writeSelfSigned writes a certificate that signs itself, and its key,
// as PEM files. It names only a host name, no address: commands given the
// daemon's configuration trust it whatever address they dial.
func writeSelfSigned(t *testing.T, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "secauto.example"},
		DNSNames:     []string{"secauto.example"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A daemon with server.tls_cert and server.tls_key serves HTTPS, and the
// commands given its configuration reach it over HTTPS with a token from
// server.auth_tokens_file; a command without the certificate is told to
// use the daemon's configuration.
func TestDaemonOverTLS(t *testing.T) {
	t.Chdir(t.TempDir())
	seedJobs(t, "data")
	writeSelfSigned(t, "cert.pem", "key.pem")
	const token = "tls-test-token-0123456789"
	if err := os.WriteFile("tokens", []byte("# the operators' token\n"+token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := "server:\n  tls_cert: cert.pem\n  tls_key: key.pem\n  auth_tokens_file: tokens\n"
	if err := os.WriteFile("config.yaml", []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("untrusting.yaml", []byte("server:\n  auth_tokens_file: tokens\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	ios, _, _, _ := TestStreams()
	f := NewFactory(ios, func(string) string { return "" })
	cfg, err := f.Config()
	if err != nil {
		t.Fatal(err)
	}
	so, err := serveOptions(&ServeOptions{}, cfg, "data")
	if err != nil {
		t.Fatal(err)
	}
	if so.TLS == nil || len(so.AuthTokens) != 1 || so.AuthTokens[0] != token {
		t.Fatalf("serve options: tls %v, %d tokens", so.TLS != nil, len(so.AuthTokens))
	}
	addr, _ := startDaemon(t, "data", so)
	if !strings.HasPrefix(addr, server.TLSScheme) {
		t.Fatalf("daemon address %q is not https", addr)
	}

	if code, out, errOut := run(t, nil, "jobs", "list", "-o", "json"); code != ExitOK || !strings.Contains(out, "0197f0a1") {
		t.Errorf("jobs list over TLS: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := run(t, nil, "backup", "create"); code != ExitOK || !strings.Contains(out, "Wrote backup") {
		t.Errorf("backup create over TLS: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := run(t, nil, "--config", "untrusting.yaml", "jobs", "list")
	if code != ExitUsage || out != "" || !strings.Contains(errOut, "certificate is not trusted") || !strings.Contains(errOut, "server.tls_cert") {
		t.Errorf("without the certificate: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if strings.Contains(errOut, token) {
		t.Errorf("stderr shows the token: %q", errOut)
	}
}

// A certificate or key that cannot be used stops serve before it starts,
// with exit 2, naming the key and never what the key file holds.
func TestServeRefusesBadTLS(t *testing.T) {
	t.Chdir(t.TempDir())
	writeSelfSigned(t, "cert.pem", "key.pem")
	writeSelfSigned(t, "other.pem", "otherkey.pem")
	if err := os.WriteFile("garbage.pem", []byte("-----BEGIN PRIVATE KEY-----\nS3CRETS3CRET\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	otherKey, err := os.ReadFile("otherkey.pem")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		cert, key, want string
	}{
		{"missing.pem", "key.pem", "c.yaml:2: server.tls_cert: cannot read missing.pem"},
		{"key.pem", "key.pem", "c.yaml:2: server.tls_cert: key.pem holds a private key"},
		{"cert.pem", "missing.pem", "c.yaml:3: server.tls_key: cannot read missing.pem"},
		{"cert.pem", "cert.pem", "c.yaml:3: server.tls_key: cert.pem holds no PEM private key"},
		{"cert.pem", "otherkey.pem", "c.yaml:3: server.tls_key: otherkey.pem is not a private key of the certificate in cert.pem"},
		{"cert.pem", "garbage.pem", "c.yaml:3: server.tls_key: garbage.pem is not a private key of the certificate in cert.pem"},
	} {
		src := "server:\n  tls_cert: " + tt.cert + "\n  tls_key: " + tt.key + "\n"
		if err := os.WriteFile("c.yaml", []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, errOut := run(t, nil, "--config", "c.yaml", "serve", "--port", "0")
		if code != ExitUsage || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s, %s: exit %d, stderr %q; want exit 2 and %q", tt.cert, tt.key, code, errOut, tt.want)
		}
		for _, line := range strings.Split(string(otherKey), "\n")[1:3] {
			if strings.Contains(errOut, line) {
				t.Errorf("stderr shows the key: %q", errOut)
			}
		}
		if strings.Contains(errOut, "S3CRET") {
			t.Errorf("stderr shows the key file: %q", errOut)
		}
	}
}
