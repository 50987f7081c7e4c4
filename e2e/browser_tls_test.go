package e2e

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	bin "encoding/binary"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBrowserTLS: gatehouse terminates TLS itself (tls.cert_file with a certificate made
// here). Headless Chromium signs in through oidc-provider, loads the SPA and calls the API:
// the page and the API calls go over HTTP/2, every gateway response carries HSTS, and a
// WebSocket opened by the page works through the TLS listener.
func TestBrowserTLS(t *testing.T) {
	root := checkBrowserSetup(t)
	demoapi := buildDemoAPI(t, root, t.TempDir())
	dir := t.TempDir()
	certFile, keyFile := writeTestCert(t, dir)
	s := startBrowserStack(t, "oidc-provider", root, demoapi, false, browserStackTLS{certFile: certFile, keyFile: keyFile,
		routes: "  - path: /ws/\n    upstream: " + wsEchoUpstream(t) + "\n    token: user\n"})
	var res struct {
		APIStatus string `json:"apiStatus"`
		APISub    string `json:"apiSub"`
		Timing    struct {
			Navigation []struct{ URL, Protocol string } `json:"navigation"`
			Resources  []struct{ URL, Protocol string } `json:"resources"`
		} `json:"timing"`
		HSTS map[string]*string `json:"hsts"`
		WS   struct {
			URL, Reply, Error string
			Opened            bool
		} `json:"ws"`
	}
	s.runScenario(t, "h2", &res, "alice")
	t.Logf("navigation %+v; resources %+v; hsts %v; ws %+v", res.Timing.Navigation, res.Timing.Resources, res.HSTS, res.WS)

	if !strings.HasPrefix(res.APIStatus, "200") || res.APISub != "alice" {
		t.Errorf("GET /api/me through the TLS listener: %q sub %q, want 200 for alice", res.APIStatus, res.APISub)
	}
	if len(res.Timing.Navigation) != 1 || res.Timing.Navigation[0].Protocol != "h2" {
		t.Errorf("the page loaded over %+v, want h2", res.Timing.Navigation)
	}
	gotAPI, gotUser := false, false
	for _, r := range res.Timing.Resources {
		if !strings.HasPrefix(r.URL, s.gw.URL+"/") {
			continue
		}
		path := strings.TrimPrefix(r.URL, s.gw.URL)
		if strings.HasPrefix(path, "/api/") || strings.HasPrefix(path, "/bff/user") {
			if r.Protocol != "h2" {
				t.Errorf("%s went over %q, want h2", path, r.Protocol)
			}
			gotAPI = gotAPI || strings.HasPrefix(path, "/api/")
			gotUser = gotUser || strings.HasPrefix(path, "/bff/user")
		}
	}
	if !gotAPI || !gotUser {
		t.Errorf("no resource timing for the API call (%v) or /bff/user (%v): %+v", gotAPI, gotUser, res.Timing.Resources)
	}
	for _, path := range []string{"/", "/bff/user"} {
		if v := res.HSTS[path]; v == nil || *v != "max-age=31536000" {
			t.Errorf("Strict-Transport-Security on %s = %v, want max-age=31536000", path, v)
		}
	}
	if !res.WS.Opened || res.WS.Reply != "echo:hello over tls" {
		t.Errorf("WebSocket over the TLS listener: %+v, want the echo", res.WS)
	}
}

// writeTestCert writes a self-signed certificate for 127.0.0.1 and localhost.
func writeTestCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gatehouse e2e"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// wsEchoUpstream is a WebSocket server (RFC 6455, enough for a browser): it answers the
// handshake and echoes each text message back as "echo:<message>".
func wsEchoUpstream(t *testing.T) string {
	return serveLoopback(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Sec-WebSocket-Key")
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || key == "" {
			http.Error(w, "WebSocket only", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
			base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n")
		brw.Flush()
		for {
			op, msg, err := readWSFrame(brw.Reader)
			if err != nil || op == 8 { // close
				return
			}
			if op != 1 {
				continue
			}
			reply := append([]byte("echo:"), msg...)
			if len(reply) > 125 {
				return // the test's messages are short
			}
			brw.Write(append([]byte{0x81, byte(len(reply))}, reply...))
			brw.Flush()
		}
	}))
}

// readWSFrame reads one client frame (masked, as clients send them) and unmasks it.
func readWSFrame(r *bufio.Reader) (opcode byte, payload []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err = io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(bin.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err = io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n = bin.BigEndian.Uint64(b[:])
	}
	if n > 1<<16 {
		return 0, nil, io.ErrUnexpectedEOF
	}
	var mask [4]byte
	if h[1]&0x80 != 0 {
		if _, err = io.ReadFull(r, mask[:]); err != nil {
			return 0, nil, err
		}
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	for i := range payload {
		payload[i] ^= mask[i%4]
	}
	return h[0] & 0x0f, payload, nil
}
