package embedded

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// TLSFiles are the PEM files WithTLS generates: the certificate authority
// that signed the server's certificate, and a client certificate and key
// it signed too (for clients that present one; the server does not ask).
type TLSFiles struct {
	CA, Cert, Key string

	serverCert, serverKey string
}

// certValidity is how long the generated certificates are valid: long
// enough for any test or demo, and a restarted WithDir server reuses them.
const certValidity = 10 * 365 * 24 * time.Hour

// tlsFiles returns the TLS files under dir/tls, generating them unless they
// are all there from an earlier start.
func tlsFiles(dir string) (*TLSFiles, error) {
	d := filepath.Join(dir, "tls")
	f := &TLSFiles{
		CA: filepath.Join(d, "ca.crt"), Cert: filepath.Join(d, "client.crt"), Key: filepath.Join(d, "client.key"),
		serverCert: filepath.Join(d, "server.crt"), serverKey: filepath.Join(d, "server.key"),
	}
	if allExist(f.CA, f.Cert, f.Key, f.serverCert, f.serverKey) {
		return f, nil
	}
	if err := os.MkdirAll(d, 0o700); err != nil {
		return nil, fmt.Errorf("embedded: tls dir: %w", err)
	}
	ca, caKey, err := newCert(nil, nil, "lockstep embedded CA", true)
	if err != nil {
		return nil, err
	}
	srv, srvKey, err := newCert(ca, caKey, "lockstep embedded server", false)
	if err != nil {
		return nil, err
	}
	cli, cliKey, err := newCert(ca, caKey, "root", false)
	if err != nil {
		return nil, err
	}
	for _, w := range []struct {
		path string
		cert *x509.Certificate
		key  *ecdsa.PrivateKey
	}{{f.CA, ca, nil}, {f.serverCert, srv, srvKey}, {f.Cert, cli, cliKey}} {
		if err := writePEM(w.path, "CERTIFICATE", w.cert.Raw, 0o644); err != nil {
			return nil, err
		}
		if w.key == nil {
			continue
		}
		der, err := x509.MarshalECPrivateKey(w.key)
		if err != nil {
			return nil, fmt.Errorf("embedded: encode key: %w", err)
		}
		keyPath := f.Key
		if w.cert == srv {
			keyPath = f.serverKey
		}
		if err := writePEM(keyPath, "EC PRIVATE KEY", der, 0o600); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// newCert makes a certificate for name, signed by parent (self-signed if
// parent is nil), valid for loopback addresses.
func newCert(parent *x509.Certificate, parentKey *ecdsa.PrivateKey, name string, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("embedded: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, fmt.Errorf("embedded: serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.ExtKeyUsage, tmpl.DNSNames, tmpl.IPAddresses = nil, nil, nil
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("embedded: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("embedded: parse certificate: %w", err)
	}
	return cert, key, nil
}

func writePEM(path, kind string, der []byte, mode os.FileMode) error {
	b := pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
	if err := os.WriteFile(path, b, mode); err != nil {
		return fmt.Errorf("embedded: write %s: %w", path, err)
	}
	return nil
}

func allExist(paths ...string) bool {
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

// clientTLS is the client side of f: it trusts f's authority and presents
// its client certificate.
func (f *TLSFiles) clientTLS() (*tls.Config, error) {
	pemCA, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("embedded: read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemCA) {
		return nil, errors.New("embedded: no certificate in " + f.CA)
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("embedded: client certificate: %w", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
