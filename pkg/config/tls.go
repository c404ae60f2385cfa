package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// ServerTLS loads server.tls_cert and server.tls_key for the API; nil
// when neither is set. A mistake is an *Error naming the key and its line;
// no message shows what the key file holds.
func (c *Config) ServerTLS() (*tls.Config, error) {
	s := c.Server
	if s.TLSCert == "" && s.TLSKey == "" {
		return nil, nil
	}
	certPEM, chain, err := readCerts(s.TLSCert)
	if err != nil {
		return nil, c.KeyError("server.tls_cert", err.Error())
	}
	keyPEM, err := os.ReadFile(s.TLSKey)
	if err != nil {
		return nil, c.KeyError("server.tls_key", fmt.Sprintf("cannot read %s: %v; give the PEM private key of server.tls_cert", s.TLSKey, unwrapPath(err)))
	}
	switch hasPEMKey(keyPEM) {
	case "":
		return nil, c.KeyError("server.tls_key", fmt.Sprintf("%s holds no PEM private key; give the key of server.tls_cert", s.TLSKey))
	case "ENCRYPTED PRIVATE KEY":
		return nil, c.KeyError("server.tls_key", fmt.Sprintf("%s is encrypted; give the key unencrypted, in a file only the daemon's user may read", s.TLSKey))
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The key's parse errors are not passed on: they could quote it.
		return nil, c.KeyError("server.tls_key", fmt.Sprintf("%s is not a private key of the certificate in %s; give the key that belongs to it", s.TLSKey, s.TLSCert))
	}
	pair.Leaf = chain[0]
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
	}, nil
}

// ClientTLS is what a command uses to reach a daemon that serves HTTPS.
// With server.tls_cert set (the same configuration as the daemon's) it
// accepts that certificate, self-signed or not and whatever address the
// command dials; a certificate that chains to a system root is accepted
// too. Without it, the system roots decide as for any HTTPS site.
func (c *Config) ClientTLS() (*tls.Config, error) {
	if c.Server.TLSCert == "" {
		return &tls.Config{MinVersion: tls.VersionTLS12}, nil
	}
	_, certs, err := readCerts(c.Server.TLSCert)
	if err != nil {
		return nil, c.KeyError("server.tls_cert", err.Error())
	}
	pinned := certs[0]
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Replaced by VerifyConnection: the daemon's own certificate is
		// accepted even when it names no address a command dials.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the daemon sent no certificate")
			}
			leaf := cs.PeerCertificates[0]
			if bytes.Equal(leaf.Raw, pinned.Raw) {
				return nil
			}
			inter := x509.NewCertPool()
			for _, ct := range cs.PeerCertificates[1:] {
				inter.AddCert(ct)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: cs.ServerName, Intermediates: inter}); err != nil {
				return fmt.Errorf("the daemon's certificate is not the one in server.tls_cert (%s) and does not verify: %w", c.Server.TLSCert, err)
			}
			return nil
		},
	}, nil
}

// readCerts reads a PEM file of certificates, the daemon's first.
func readCerts(path string) ([]byte, []*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot read %s: %v; give a PEM certificate file", path, unwrapPath(err))
	}
	var certs []*x509.Certificate
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			if isKeyBlock(b.Type) {
				return nil, nil, fmt.Errorf("%s holds a private key; give the certificate here and the key in server.tls_key", path)
			}
			continue
		}
		ct, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("%s holds a certificate that does not parse (%v); give a PEM certificate file", path, err)
		}
		certs = append(certs, ct)
	}
	if len(certs) == 0 {
		return nil, nil, fmt.Errorf("%s holds no PEM certificate; give the daemon's certificate, then its chain", path)
	}
	return data, certs, nil
}

func isKeyBlock(typ string) bool {
	return typ == "PRIVATE KEY" || typ == "RSA PRIVATE KEY" || typ == "EC PRIVATE KEY" || typ == "ENCRYPTED PRIVATE KEY"
}

// hasPEMKey returns the type of the first private key block in data, ""
// when there is none.
func hasPEMKey(data []byte) string {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return ""
		}
		if isKeyBlock(b.Type) {
			return b.Type
		}
	}
}

// KeyError is a mistake in the value of key (a dotted path such as
// playbook.http.allowed_hosts[2]) found after loading, by the code that
// uses the value: it names the file and line as loading would.
func (c *Config) KeyError(key, msg string) error {
	return Errors{{File: c.File, Line: c.lines[key], Key: redactURLs(key), Msg: redactURLs(msg)}}
}
