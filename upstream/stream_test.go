package upstream_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/upstream"
)

// streams records OnStream's calls and lets the test stop the forwards.
type streams struct {
	mu    sync.Mutex
	stops []func()
	owner []any
	done  int
}

func (s *streams) hook(_ *upstream.Target, owner any, stop func()) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stops, s.owner = append(s.stops, stop), append(s.owner, owner)
	return func() { s.mu.Lock(); s.done++; s.mu.Unlock() }
}

func (s *streams) stopAll() {
	s.mu.Lock()
	stops := append([]func(){}, s.stops...)
	s.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
}

func (s *streams) counts() (opened, done int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.stops), s.done
}

// On both paths a stream of an owner is handed to OnStream and outlives the target's
// timeout, and its stop ends it; on the fast path the event stream is carried by the
// fast transport (which stops it on its connection), the WebSocket by the standard one.
func TestOnStreamEndsStreamsAndWebSockets(t *testing.T) {
	t.Parallel()
	for _, fast := range []bool{false, true} {
		t.Run(fmt.Sprintf("fast=%v", fast), func(t *testing.T) {
			t.Parallel()
			testOnStream(t, fast)
		})
	}
}

func testOnStream(t *testing.T, fast bool) {
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/events":
			w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
			for r.Context().Err() == nil {
				io.WriteString(w, "data: tick\n\n")
				http.NewResponseController(w).Flush()
				time.Sleep(10 * time.Millisecond)
			}
		case "/ws":
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			brw.Flush()
			for {
				line, err := brw.ReadString('\n')
				if err != nil {
					return
				}
				brw.WriteString("pong: " + line)
				brw.Flush()
			}
		default:
			io.WriteString(w, "plain")
		}
	}))
	rec := &streams{}
	p := newProxy(t, upstream.Config{OnStream: rec.hook})
	target := &upstream.Target{Name: "/", Prefix: "/", URL: up, Timeout: time.Second, Fast: fast}
	const owner = "session-1"
	g := startGateway(t, p, upstream.Forward{Target: target, Owner: owner}, nil)
	anonymous := startGateway(t, p, upstream.Forward{Target: target}, nil)

	// An ordinary response is no stream; a forward without an owner is nobody's.
	if _, body := g.get(t, "/plain"); body != "plain" {
		t.Fatalf("plain response %q", body)
	}
	resp, err := anonymous.client.Get(anonymous.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if opened, _ := rec.counts(); opened != 0 {
		t.Fatalf("OnStream called %d times for a plain response and an ownerless stream", opened)
	}

	// An event stream and a WebSocket of the owner.
	resp, err = g.client.Get(g.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if event := readEvent(t, bufio.NewReader(resp.Body)); event != "data: tick" {
		t.Fatalf("first event %q", event)
	}
	streamEnded := make(chan struct{})
	go func() { io.Copy(io.Discard, resp.Body); close(streamEnded) }()

	gw, _ := url.Parse(g.URL)
	conn, err := net.Dial("tcp", gw.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", gw.Host)
	br := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	time.Sleep(target.Timeout + 100*time.Millisecond) // the header timeout does not end it
	io.WriteString(conn, "ping\n")
	if line, _ := br.ReadString('\n'); line != "pong: ping\n" {
		t.Fatalf("WebSocket echo %q", line)
	}
	rec.mu.Lock()
	if len(rec.owner) != 2 || rec.owner[0] != owner || rec.owner[1] != owner {
		t.Fatalf("OnStream owners %v, want the stream's and the WebSocket's", rec.owner)
	}
	rec.mu.Unlock()

	select {
	case <-streamEnded:
		t.Fatal("the event stream ended before stop (the header timeout must not end it)")
	default:
	}
	rec.stopAll()
	select {
	case <-streamEnded:
	case <-time.After(5 * time.Second):
		t.Fatal("the event stream still runs 5 s after stop")
	}
	if _, err := br.ReadString('\n'); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("the WebSocket is still open after stop: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, done := rec.counts(); done != 2; _, done = rec.counts() {
		if time.Now().After(deadline) {
			t.Fatalf("done called %d times, want 2 (once per stream, after it ended)", done)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A stream's stop may come after the stream ended on its own (a session that ends as
// its event stream closes): it must not touch the connection of a later request.
func TestStreamStopAfterItsEnd(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/short" {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Content-Length", "12")
			io.WriteString(w, "data: tick\n\n")
			return
		}
		io.WriteString(w, "plain")
	}))
	for _, fast := range []bool{false, true} {
		rec := &streams{}
		p := newProxy(t, upstream.Config{OnStream: rec.hook})
		g := startGateway(t, p, upstream.Forward{Target: &upstream.Target{Name: "/", Prefix: "/", URL: up, Timeout: time.Second, Fast: fast}, Owner: "s"}, nil)
		if _, body := g.get(t, "/short"); body != "data: tick\n\n" {
			t.Fatalf("fast=%v: stream %q", fast, body)
		}
		rec.stopAll() // the stream is over; its stop comes late
		for i := range 3 {
			if resp, body := g.get(t, "/plain"); resp.StatusCode != http.StatusOK || body != "plain" {
				t.Fatalf("fast=%v: request %d after a late stop: %d %q", fast, i, resp.StatusCode, body)
			}
		}
	}
}
