// Package certfile serves a TLS certificate read from a pair of PEM files and reads it
// again when asked, so that a renewal (cert-manager, certbot, a Kubernetes Secret's
// `..data` swap) reaches new handshakes without a restart.
//
// A Reloader is what tls.Config.GetCertificate calls; Reload re-reads the files and,
// when the new pair does not load (a half-written file, a key that does not match),
// keeps serving the pair it has and returns the error. When to call Reload is the
// program's choice: on SIGHUP, from a file watcher, or on a timer. cmd/gatehouse calls
// it when its configuration watcher sees the files change.
//
//	r, err := certfile.New("tls.crt", "tls.key")
//	if err != nil { … }
//	srv := &http.Server{Handler: gw, TLSConfig: &tls.Config{GetCertificate: r.GetCertificate}}
//	go func() { for range hup { if err := r.Reload(); err != nil { log.Print(err) } } }()
//	srv.ListenAndServeTLS("", "")
package certfile

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync/atomic"
)

// Reloader holds the certificate of a certificate and key file pair. Its methods are
// safe for concurrent use: handshakes read the pair without locks while Reload replaces
// it.
type Reloader struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// New reads the pair: certFile holds the PEM certificate chain, leaf first; keyFile the
// PEM private key of the leaf.
func New(certFile, keyFile string) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the files again. On an error the pair served stays the one read last.
func (r *Reloader) Reload() error {
	c, err := Load(r.certFile, r.keyFile)
	if err != nil {
		return err
	}
	r.cur.Store(c)
	return nil
}

// GetCertificate returns the pair read last, for tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cur.Load(), nil
}

// Leaf is the leaf certificate served now (to log its serial number and expiry).
func (r *Reloader) Leaf() *x509.Certificate {
	return r.cur.Load().Leaf
}

// Load reads a certificate and key pair and checks that the key is the leaf's and that
// the leaf parses, as tls.LoadX509KeyPair does, with errors that name the files.
func Load(certFile, keyFile string) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("certfile: %s and %s: %w", certFile, keyFile, err)
	}
	if c.Leaf == nil { // set by LoadX509KeyPair since Go 1.23; kept for clarity
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("certfile: %s: %w", certFile, err)
		}
	}
	return &c, nil
}
