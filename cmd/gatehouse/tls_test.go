package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testPair is a self-signed certificate for localhost and 127.0.0.1 with a chosen
// serial number, as PEM.
func testPair(t *testing.T, serial int64) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	must(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// renameOver writes data next to path and renames it over path, as certbot and
// editors do: the file is replaced, never half-written.
func renameOver(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	must(t, os.WriteFile(tmp, data, 0o600))
	must(t, os.Rename(tmp, path))
}

// kubeSwap lays the pair out as the kubelet projects a Secret: a timestamped
// directory, the `..data` symlink to it (swapped by a rename), and tls.crt and tls.key
// as symlinks through ..data.
func kubeSwap(t *testing.T, dir, stamp string, certPEM, keyPEM []byte) {
	t.Helper()
	ts := filepath.Join(dir, "..20261202_"+stamp)
	must(t, os.Mkdir(ts, 0o700))
	must(t, os.WriteFile(filepath.Join(ts, "tls.crt"), certPEM, 0o600))
	must(t, os.WriteFile(filepath.Join(ts, "tls.key"), keyPEM, 0o600))
	must(t, os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	for _, f := range []string{"tls.crt", "tls.key"} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err != nil {
			must(t, os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)))
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startServe runs `gatehouse serve --config p` until stop is called or the test ends.
func startServe(t *testing.T, p string, stderr io.Writer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", p}, io.Discard, stderr) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case code := <-done:
				if code != 0 {
					t.Errorf("serve = %d", code)
				}
			case <-time.After(40 * time.Second):
				t.Error("serve did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// servedSerial is the serial number of the leaf the listener presents now, or "" when
// the handshake fails.
func servedSerial(addr, serverName string) string {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: serverName, InsecureSkipVerify: true}) // the test compares serials, not trust
	if err != nil {
		return ""
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func waitSerial(t *testing.T, addr, want string, within time.Duration) {
	t.Helper()
	var got string
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
		if got = servedSerial(addr, "localhost"); got == want {
			return
		}
	}
	t.Fatalf("served serial %q after %v, want %q", got, within, want)
}

// TestServeTLSCertFilesRenewal: serve with tls.cert_file/key_file answers over TLS with
// HTTP/2 and HSTS; a Kubernetes Secret update (..data swap), a rename over the files and
// certbot's symlink replacement reach the next handshakes without a restart, and a
// broken replacement keeps the running certificate and counts as a failed reload.
func TestServeTLSCertFilesRenewal(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	must(t, os.Mkdir(secret, 0o700))
	c1, k1 := testPair(t, 1001)
	kubeSwap(t, secret, "1", c1, k1)
	pub, adm := freePort(t), freePort(t)
	p := writeFile(t, dir, "gatehouse.yaml", fmt.Sprintf(`
public_url: https://localhost:%d
provider: {issuer: "http://127.0.0.1:1", client_id: bff, client_secret: s}
listen: 127.0.0.1:%d
admin: {listen: "127.0.0.1:%d"}
log: {level: error}
tls:
  cert_file: secret/tls.crt
  key_file: secret/tls.key
`, pub, pub, adm))
	startServe(t, p, io.Discard)
	addr := fmt.Sprintf("127.0.0.1:%d", pub)
	waitSerial(t, addr, "1001", 10*time.Second)

	// HTTP/2 (a browser offers h2 and http/1.1), HSTS with the default max-age, the
	// gateway's own JSON behind it.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c1)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
	res, err := client.Get("https://" + addr + "/bff/user")
	must(t, err)
	res.Body.Close()
	if res.ProtoMajor != 2 {
		t.Errorf("protocol %s, want HTTP/2", res.Proto)
	}
	if got := res.Header.Get("Strict-Transport-Security"); got != "max-age=31536000" {
		t.Errorf("Strict-Transport-Security = %q, want max-age=31536000", got)
	}
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("/bff/user = %d, want 401 without a session", res.StatusCode)
	}
	// TLS 1.2 at least.
	if c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "localhost", RootCAs: pool, MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Error("a TLS 1.1 handshake succeeded")
	}
	// Plain HTTP on the TLS port is refused, not served.
	if res, err := http.Get("http://" + addr + "/bff/user"); err == nil {
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("plain http on the TLS listener = %d, want 400", res.StatusCode)
		}
	}

	start := time.Now()
	c2, k2 := testPair(t, 1002)
	kubeSwap(t, secret, "2", c2, k2)
	waitSerial(t, addr, "1002", 5*time.Second)
	t.Logf("..data swap reached handshakes after %v", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	c3, k3 := testPair(t, 1003)
	renameOver(t, filepath.Join(secret, "tls.key"), k3)
	renameOver(t, filepath.Join(secret, "tls.crt"), c3)
	waitSerial(t, addr, "1003", 5*time.Second)
	t.Logf("rename-over reached handshakes after %v", time.Since(start).Round(time.Millisecond))

	// A key that is not the certificate's: the reload fails, the old pair stays.
	failed := func() int {
		res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", adm))
		if err != nil {
			return -1
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		m := regexp.MustCompile(`gatehouse_config_reloads_total\{outcome="failed"\} (\d+)`).FindSubmatch(b)
		if m == nil {
			return 0
		}
		n, _ := strconv.Atoi(string(m[1]))
		return n
	}
	before := failed()
	_, k4 := testPair(t, 1004)
	renameOver(t, filepath.Join(secret, "tls.key"), k4)
	for deadline := time.Now().Add(5 * time.Second); failed() <= before; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a broken certificate pair was not counted as a failed reload")
		}
	}
	if got := servedSerial(addr, "localhost"); got != "1003" {
		t.Errorf("after a broken replacement the serial is %q, want 1003 (the running pair)", got)
	}
	// Fixed again: served.
	c5, k5 := testPair(t, 1005)
	renameOver(t, filepath.Join(secret, "tls.key"), k5)
	renameOver(t, filepath.Join(secret, "tls.crt"), c5)
	waitSerial(t, addr, "1005", 5*time.Second)

	// certbot: the live names are symlinks into archive/, replaced by new symlinks.
	archive := filepath.Join(dir, "archive")
	must(t, os.Mkdir(archive, 0o700))
	c6, k6 := testPair(t, 1006)
	must(t, os.WriteFile(filepath.Join(archive, "privkey6.pem"), k6, 0o600))
	must(t, os.WriteFile(filepath.Join(archive, "fullchain6.pem"), c6, 0o600))
	for name, target := range map[string]string{"tls.key": "privkey6.pem", "tls.crt": "fullchain6.pem"} {
		tmp := filepath.Join(secret, name+".new")
		must(t, os.Symlink(filepath.Join("..", "archive", target), tmp))
		must(t, os.Rename(tmp, filepath.Join(secret, name)))
	}
	waitSerial(t, addr, "1006", 5*time.Second)
}

// TestTLSConfigProblems: every mistake in the tls section is named by its field.
func TestTLSConfigProblems(t *testing.T) {
	dir := t.TempDir()
	c, k := testPair(t, 1)
	writeFile(t, dir, "tls.crt", string(c))
	writeFile(t, dir, "tls.key", string(k))
	_, other := testPair(t, 2)
	writeFile(t, dir, "other.key", string(other))
	const base = "provider: {issuer: \"http://127.0.0.1:1\", client_id: bff, client_secret: s}\n"
	for _, tc := range []struct {
		name, yaml string
		want       []string // each must appear; nil: the file is valid
	}{
		{"files", "public_url: https://localhost\ntls: {cert_file: tls.crt, key_file: tls.key}\n", nil},
		{"acme", "public_url: https://app.example.com\ntls: {acme: {domains: [app.example.com], cache_dir: acme, http_listen: \":80\"}}\n", nil},
		{"http public_url", "public_url: http://127.0.0.1:9080\ntls: {cert_file: tls.crt, key_file: tls.key}\n",
			[]string{"public_url: must be https://"}},
		{"cert without key", "public_url: https://localhost\ntls: {cert_file: tls.crt}\n",
			[]string{"tls.cert_file: and tls.key_file go together"}},
		{"key not the certificate's", "public_url: https://localhost\ntls: {cert_file: tls.crt, key_file: other.key}\n",
			[]string{"tls.cert_file: cannot load the certificate and key"}},
		{"missing file", "public_url: https://localhost\ntls: {cert_file: nope.crt, key_file: tls.key}\n",
			[]string{"tls.cert_file: cannot load"}},
		{"both", "public_url: https://localhost\ntls: {cert_file: tls.crt, key_file: tls.key, acme: {domains: [localhost], cache_dir: a}}\n",
			[]string{"tls: set either cert_file and key_file or acme"}},
		{"acme without domains or cache", "public_url: https://app.example.com\ntls: {acme: {email: ops@example.com}}\n",
			[]string{"tls.acme.domains: is required", "tls.acme.cache_dir: is required"}},
		{"acme domains without the public host", "public_url: https://app.example.com\ntls: {acme: {domains: [www.example.com], cache_dir: a}}\n",
			[]string{`tls.acme.domains: does not list public_url's host "app.example.com"`}},
		{"acme bad values", "public_url: https://app.example.com\ntls: {acme: {domains: [app.example.com, 10.0.0.1, intranet], cache_dir: a, directory_url: \"http://ca\", directory_ca_file: nope.pem, http_listen: \"80\"}}\n",
			[]string{"tls.acme.domains[1]:", "tls.acme.domains[2]: \"intranet\" has one label", "tls.acme.directory_url:", "tls.acme.directory_ca_file: cannot read", "tls.acme.http_listen:"}},
		{"hsts without tls", "public_url: https://app.example.com\ntls: {hsts: {include_subdomains: true}}\n",
			[]string{"tls.hsts: is set but TLS is off"}},
		{"preload too weak", "public_url: https://localhost\ntls: {cert_file: tls.crt, key_file: tls.key, hsts: {preload: true, max_age: 1h}}\n",
			[]string{"tls.hsts.preload: needs include_subdomains"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, dir, "gatehouse.yaml", base+tc.yaml)
			code, _, errOut := runCmd(t, "check", "--config", p)
			if tc.want == nil {
				if code != 0 {
					t.Fatalf("check = %d: %s", code, errOut)
				}
				return
			}
			if code == 0 {
				t.Fatalf("check accepted %s", tc.yaml)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("problems lack %q:\n%s", w, errOut)
				}
			}
		})
	}
}

func TestHSTSValue(t *testing.T) {
	for _, tc := range []struct {
		h    fileHSTS
		want string
	}{
		{fileHSTS{}, "max-age=31536000"},
		{fileHSTS{MaxAge: duration(time.Hour)}, "max-age=3600"},
		{fileHSTS{MaxAge: duration(2 * defaultHSTSMaxAge), IncludeSubdomains: true, Preload: true}, "max-age=63072000; includeSubDomains; preload"},
	} {
		var probs problems
		if got, _ := hstsValue(tc.h, &probs); got != tc.want || len(probs) > 0 {
			t.Errorf("hstsValue(%+v) = %q %v, want %q", tc.h, got, probs, tc.want)
		}
	}
}

// TestCheckWarnsAboutTheCertificate: check warns when the certificate does not cover
// public_url's host or is about to expire, and not when it is fine.
func TestCheckWarnsAboutTheCertificate(t *testing.T) {
	dir := t.TempDir()
	c, k := testPair(t, 1) // localhost, 24 h
	writeFile(t, dir, "tls.crt", string(c))
	writeFile(t, dir, "tls.key", string(k))
	const base = "provider: {issuer: \"http://127.0.0.1:1\", client_id: bff, client_secret: s}\ntls: {cert_file: tls.crt, key_file: tls.key}\n"
	for _, tc := range []struct{ public, want string }{
		{"https://localhost", "expires on"},
		{"https://app.example.com", `not valid for public_url's host "app.example.com"`},
	} {
		p := writeFile(t, dir, "gatehouse.yaml", "public_url: "+tc.public+"\n"+base)
		code, out, errOut := runCmd(t, "check", "--config", p)
		if code != 0 || !strings.Contains(out, "warning: tls.cert_file: ") || !strings.Contains(out, tc.want) {
			t.Errorf("check with public_url %s = %d, want a warning with %q:\n%s%s", tc.public, code, tc.want, out, errOut)
		}
	}
}
