package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestServerBounds: both listeners bound header reads, idle connections and header
// size; the admin listener also bounds the whole request, since it has no streams.
func TestServerBounds(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	h := http.NotFoundHandler()
	for _, v := range []struct {
		name           string
		file           fileServerOpts
		header, idle   time.Duration
		publicMaxBytes int
	}{
		{"defaults", fileServerOpts{}, 10 * time.Second, 120 * time.Second, 64 << 10},
		{"configured", fileServerOpts{ReadHeaderTimeout: duration(3 * time.Second), IdleTimeout: duration(40 * time.Second)}, 3 * time.Second, 40 * time.Second, 64 << 10},
	} {
		l := &loaded{file: fileConfig{Server: v.file}}
		pub := publicServer(l, h, context.Background(), log)
		adm := adminServer(l, h, log)
		for _, s := range []struct {
			name     string
			srv      *http.Server
			maxBytes int
			read     time.Duration
		}{{"public", pub, 64 << 10, 0}, {"admin", adm, 16 << 10, 30 * time.Second}} {
			if s.srv.ReadHeaderTimeout != v.header || s.srv.IdleTimeout != v.idle || s.srv.MaxHeaderBytes != s.maxBytes || s.srv.ReadTimeout != s.read {
				t.Errorf("%s, %s listener: ReadHeaderTimeout %v, IdleTimeout %v, MaxHeaderBytes %d, ReadTimeout %v; want %v, %v, %d, %v",
					v.name, s.name, s.srv.ReadHeaderTimeout, s.srv.IdleTimeout, s.srv.MaxHeaderBytes, s.srv.ReadTimeout, v.header, v.idle, s.maxBytes, s.read)
			}
		}
		if pub.ReadTimeout != 0 || pub.WriteTimeout != 0 {
			t.Errorf("public listener: ReadTimeout %v, WriteTimeout %v; want none (streams and WebSockets; bodies have the gateway's deadlines)", pub.ReadTimeout, pub.WriteTimeout)
		}
	}

	// The admin listener, for real: an idle connection is closed after idle_timeout and
	// a 32 KiB header is refused.
	l := &loaded{file: fileConfig{Server: fileServerOpts{IdleTimeout: duration(300 * time.Millisecond)}}}
	adm := adminServer(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }), log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go adm.Serve(ln)
	defer adm.Close()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("first request: %v %v", res, err)
	}
	io.Copy(io.Discard, res.Body)
	start := time.Now()
	if _, err := br.ReadByte(); err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("the idle admin connection was not closed after idle_timeout (%v, %v)", time.Since(start), err)
	}
	conn2, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	conn2.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn2, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 32<<10))
	if res, err := http.ReadResponse(bufio.NewReader(conn2), nil); err != nil || res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a 32 KiB header on the admin listener: %v %v; want 431", res, err)
	}
}

// TestConnectionLimitSettings: the file's body deadlines and connection cap reach the
// gateway's configuration, and bad values are reported by their keys, all at once.
func TestConnectionLimitSettings(t *testing.T) {
	dir := t.TempDir()
	const head = `
public_url: http://127.0.0.1:9080
provider:
  issuer: http://127.0.0.1:9000
  client_id: bff
  client_secret: s3cret
`
	l, err := loadConfig(writeFile(t, dir, "ok.yaml", head+`
server:
  body_timeout: 5s
  max_connections_per_client: 1000
routes:
  - path: /upload/
    upstream: http://127.0.0.1:9001
    body_timeout: 2m
  - path: /stream/
    upstream: http://127.0.0.1:9001
    streaming: true
`))
	if err != nil {
		t.Fatal(err)
	}
	s, r := l.gw.Server, l.gw.Routes
	if s.BodyTimeout != 5*time.Second || s.MaxConnectionsPerClient != 1000 || r[0].BodyTimeout != 2*time.Minute || r[0].Streaming || !r[1].Streaming || r[1].BodyTimeout != 0 {
		t.Fatalf("server %+v, routes[0] body_timeout %v streaming %v, routes[1] body_timeout %v streaming %v",
			s, r[0].BodyTimeout, r[0].Streaming, r[1].BodyTimeout, r[1].Streaming)
	}

	_, err = loadConfig(writeFile(t, dir, "bad.yaml", head+`
server:
  max_connections_per_client: -1
routes:
  - path: /stream/
    upstream: http://127.0.0.1:9001
    streaming: true
    body_timeout: 10s
`))
	for _, want := range []string{"server.max_connections_per_client", "routes[0].body_timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("the bad file's error %v does not name %s", err, want)
		}
	}
}
