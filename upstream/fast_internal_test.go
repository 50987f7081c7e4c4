package upstream

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestFastIdleConnectionsAreReaped: a connection left idle for longer than the idle
// timeout is closed by the fast path itself, without a request coming to find it stale,
// and a connection still in use is not.
func TestFastIdleConnectionsAreReaped(t *testing.T) {
	var open, closed atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed:
			closed.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	const idleFor = 200 * time.Millisecond
	ft := newFastTransport(&http.Transport{IdleConnTimeout: idleFor})
	get := func() {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
		resp, err := ft.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := io.ReadAll(resp.Body); string(b) != "ok" {
			t.Fatalf("body %q", b)
		}
		resp.Body.Close()
	}
	idle := func() int {
		ft.mu.Lock()
		defer ft.mu.Unlock()
		n := 0
		for _, l := range ft.idle {
			n += len(l)
		}
		return n
	}

	get()
	if n := idle(); n != 1 {
		t.Fatalf("%d idle connections after one request, want 1", n)
	}
	// Used again before it expires: the same connection, still open.
	time.Sleep(idleFor / 2)
	get()
	if open.Load() != 1 || closed.Load() != 0 {
		t.Fatalf("opened %d, closed %d connections; want the one connection reused", open.Load(), closed.Load())
	}
	deadline := time.Now().Add(5 * time.Second)
	for closed.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the idle connection was not closed %v after its idle timeout (%d idle)", 5*time.Second, idle())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := idle(); n != 0 {
		t.Fatalf("%d idle connections after the reaper ran, want 0", n)
	}
	// The reaper stopped with the last connection and starts again with the next one.
	get()
	if open.Load() != 2 {
		t.Fatalf("opened %d connections, want a new one after the reaping", open.Load())
	}
	ft.CloseIdleConnections()
	for deadline := time.Now().Add(5 * time.Second); closed.Load() != 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("CloseIdleConnections left the idle connection open")
		}
	}
}
