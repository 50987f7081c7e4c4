package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// acmeDomain is the name the test gets a certificate for. autocert refuses names
// without a dot (localhost), so Pebble resolves this one at pebble-challtestsrv's DNS
// server, which answers 127.0.0.1 for every name.
const acmeDomain = "app.gatehouse.test"

// pebbleBinaries builds Let's Encrypt's ACME test server and its DNS server from the
// module's tool dependencies (go.mod's tool directive) once per test run.
var pebbleBinaries = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "gatehouse-pebble")
	if err != nil {
		return "", err
	}
	for _, cmd := range []string{"pebble", "pebble-challtestsrv"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, cmd), "github.com/letsencrypt/pebble/v2/cmd/"+cmd).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("building %s: %v\n%s", cmd, err, out)
		}
	}
	return dir, nil
})

// startProcess runs a test server until the test ends; its output is logged when the
// test fails.
func startProcess(t *testing.T, env []string, name string, args ...string) (stop func()) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("%s:\n%s", filepath.Base(name), logs.String())
		}
	})
	return stop
}

// pebble is a running Pebble: its directory URL, the CA file that verifies the
// directory's own certificate, its management address, and how to stop it.
type pebble struct {
	directory, directoryCA, management string
	stop                               func()
}

// startPebble runs Pebble with validation for real: its VA resolves acmeDomain (to
// 127.0.0.1) and connects on httpPort (HTTP-01) and tlsPort (TLS-ALPN-01), where the
// gateway listens.
func startPebble(t *testing.T, httpPort, tlsPort int) pebble {
	t.Helper()
	bins, err := pebbleBinaries()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/letsencrypt/pebble/v2").Output()
	if err != nil {
		t.Fatalf("go list pebble: %v", err)
	}
	certs := filepath.Join(strings.TrimSpace(string(out)), "test", "certs")
	dns := freePort(t)
	// Only the DNS server: the challenges are the gateway's to answer. No AAAA records:
	// the gateway listens on 127.0.0.1.
	startProcess(t, nil, filepath.Join(bins, "pebble-challtestsrv"), "-dnsserver", fmt.Sprintf("127.0.0.1:%d", dns),
		"-management", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-http01", "", "-https01", "", "-doh", "", "-tlsalpn01", "")
	api, mgmt := freePort(t), freePort(t)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  fmt.Sprintf("127.0.0.1:%d", api),
		"managementListenAddress":        fmt.Sprintf("127.0.0.1:%d", mgmt),
		"certificate":                    filepath.Join(certs, "localhost", "cert.pem"),
		"privateKey":                     filepath.Join(certs, "localhost", "key.pem"),
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
	}}
	b, _ := json.Marshal(cfg)
	p := writeFile(t, t.TempDir(), "pebble.json", string(b))
	// No random sleep before validating, no nonces rejected at random: the test's time
	// goes to real validation only.
	stop := startProcess(t, []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0"}, filepath.Join(bins, "pebble"),
		"-config", p, "-strict", "-dnsserver", fmt.Sprintf("127.0.0.1:%d", dns))
	pb := pebble{directory: fmt.Sprintf("https://127.0.0.1:%d/dir", api),
		directoryCA: filepath.Join(certs, "pebble.minica.pem"), management: fmt.Sprintf("127.0.0.1:%d", mgmt), stop: stop}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", api))
		if err == nil {
			c.Close()
			return pb
		}
		if time.Now().After(deadline) {
			t.Fatal("pebble did not listen")
		}
	}
}

// root is the root of the chains Pebble issues (a new one at each start), from its
// management interface.
func (pb pebble) root(t *testing.T) *x509.CertPool {
	t.Helper()
	ca, err := os.ReadFile(pb.directoryCA)
	must(t, err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	res, err := c.Get("https://" + pb.management + "/roots/0")
	must(t, err)
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	roots := x509.NewCertPool()
	if res.StatusCode != http.StatusOK || !roots.AppendCertsFromPEM(b) {
		t.Fatalf("pebble /roots/0 = %d %q", res.StatusCode, b)
	}
	return roots
}

// TestServeACMEWithPebble: with tls.acme the gateway gets its certificate from a real
// ACME server on its first start, with the CA validating for real: TLS-ALPN-01 on the
// public listener, and HTTP-01 on tls.acme.http_listen when TLS-ALPN-01 cannot pass
// (Pebble's TLS-ALPN-01 port points nowhere). The served chain verifies against
// Pebble's root for the domain; a restart with Pebble gone serves the same certificate
// from cache_dir; the HTTP listener redirects everything but challenges.
func TestServeACMEWithPebble(t *testing.T) {
	for _, tc := range []struct {
		name string
		http bool // an http_listen, and TLS-ALPN-01 sent elsewhere
	}{{"tls-alpn-01", false}, {"http-01", true}} {
		t.Run(tc.name, func(t *testing.T) {
			pub, httpPort := freePort(t), freePort(t)
			alpnPort := pub
			if tc.http {
				alpnPort = freePort(t) // nothing listens there
			}
			pb := startPebble(t, httpPort, alpnPort)
			dir := t.TempDir()
			httpListen := ""
			if tc.http {
				httpListen = fmt.Sprintf("\n    http_listen: 127.0.0.1:%d", httpPort)
			}
			p := writeFile(t, dir, "gatehouse.yaml", fmt.Sprintf(`
public_url: https://%[1]s:%[2]d
provider: {issuer: "http://127.0.0.1:1", client_id: bff, client_secret: s}
listen: 127.0.0.1:%[2]d
log: {level: error}
tls:
  acme:
    directory_url: %[3]s
    directory_ca_file: %[4]s
    email: ops@example.com
    domains: [%[1]s]
    cache_dir: acme%[5]s
`, acmeDomain, pub, pb.directory, pb.directoryCA, httpListen))
			// check --online reads the directory (the provider is unreachable: exit 1).
			if _, out, _ := runCmd(t, "check", "--online", "--timeout", "2s", "--config", p); !strings.Contains(out, "ok   tls.acme.directory_url: ") {
				t.Errorf("check --online does not report the ACME directory:\n%s", out)
			}
			start := time.Now()
			stopServe := startServe(t, p, io.Discard)
			roots := pb.root(t)
			addr := fmt.Sprintf("127.0.0.1:%d", pub)
			var state tls.ConnectionState
			for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
				c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
					&tls.Config{ServerName: acmeDomain, RootCAs: roots, NextProtos: []string{"h2", "http/1.1"}})
				if err == nil {
					state = c.ConnectionState()
					c.Close()
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no certificate from pebble that verifies for %s: %v", acmeDomain, err)
				}
			}
			t.Logf("certificate issued and served %v after the start", time.Since(start).Round(time.Millisecond))
			leaf := state.PeerCertificates[0]
			if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != acmeDomain {
				t.Errorf("leaf names %v", leaf.DNSNames)
			}
			if state.NegotiatedProtocol != "h2" {
				t.Errorf("ALPN %q, want h2", state.NegotiatedProtocol)
			}
			// The account key and the certificate are kept in cache_dir for the next start.
			// autocert may write the certificate just after it first serves it: wait a little.
			var names []string
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				entries, _ := os.ReadDir(filepath.Join(dir, "acme"))
				names = names[:0]
				for _, e := range entries {
					names = append(names, e.Name())
				}
				if len(names) >= 2 || time.Now().After(deadline) {
					break
				}
			}
			if len(names) < 2 {
				t.Errorf("cache_dir holds %v, want the account key and the certificate", names)
			}
			// A name outside tls.acme.domains gets no certificate (the host policy).
			if _, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "other.gatehouse.test", InsecureSkipVerify: true}); err == nil {
				t.Error("a handshake for a name outside tls.acme.domains succeeded")
			}
			// A restart takes the certificate from cache_dir: the same one, with the CA gone.
			pb.stop()
			stopServe()
			startServe(t, p, io.Discard)
			for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				if got := servedSerial(addr, acmeDomain); got == leaf.SerialNumber.String() {
					break
				} else if time.Now().After(deadline) {
					t.Fatalf("after a restart without the CA the serial is %q, want %s from cache_dir", got, leaf.SerialNumber)
				}
			}
			if tc.http {
				c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
				res, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/app/page?x=1", httpPort))
				must(t, err)
				res.Body.Close()
				if want := fmt.Sprintf("https://%s:%d/app/page?x=1", acmeDomain, pub); res.StatusCode != http.StatusPermanentRedirect || res.Header.Get("Location") != want {
					t.Errorf("http listener: %d Location %q, want 308 to %s", res.StatusCode, res.Header.Get("Location"), want)
				}
			}
		})
	}
}
