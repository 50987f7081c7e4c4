package certfile_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/certfile"
)

func writePair(t *testing.T, dir string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
}

func serial(t *testing.T, r *certfile.Reloader) int64 {
	t.Helper()
	c, err := r.GetCertificate(&tls.ClientHelloInfo{ServerName: "localhost"})
	if err != nil || c == nil {
		t.Fatalf("GetCertificate = %v, %v", c, err)
	}
	if r.Leaf() != c.Leaf {
		t.Error("Leaf is not the served certificate's leaf")
	}
	return c.Leaf.SerialNumber.Int64()
}

// Reload swaps the pair; a pair that does not load keeps the one served.
func TestReloader(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if _, err := certfile.New(cert, key); err == nil {
		t.Fatal("New with missing files succeeded")
	}
	writePair(t, dir, 1)
	r, err := certfile.New(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	if got := serial(t, r); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}
	writePair(t, dir, 2)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := serial(t, r); got != 2 {
		t.Fatalf("after Reload serial %d, want 2", got)
	}
	os.WriteFile(key, []byte("-----BEGIN PRIVATE KEY-----\ncut short"), 0o600)
	if err := r.Reload(); err == nil {
		t.Fatal("Reload of a broken key succeeded")
	}
	if got := serial(t, r); got != 2 {
		t.Fatalf("after a failed Reload serial %d, want 2 (the running pair)", got)
	}
}
