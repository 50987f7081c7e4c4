package gatehouse_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestDrainWaitsForWebSockets(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up)
	b := e.browser()
	b.login()
	cookie := b.cookie("__Host-gatehouse").Value

	conn, br, resp := openWebSocket(t, e, "/api/ws", e.url, cookie, 10*time.Second)
	defer conn.Close()
	if resp.StatusCode != 101 {
		t.Fatalf("upgrade: %s", resp.Status)
	}

	// Drain waits while the WebSocket is open…
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := e.gw.Drain(ctx); err != context.DeadlineExceeded {
		t.Fatalf("Drain with an open WebSocket = %v, want DeadlineExceeded", err)
	}
	if err := e.gw.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "draining") {
		t.Fatalf("Ready while draining = %v", err)
	}
	// …which still works…
	fmt.Fprint(conn, "still here\n")
	if echo, _ := br.ReadString('\n'); echo != "echo:still here\n" {
		t.Fatalf("echo during drain = %q", echo)
	}
	// …and returns once it closes.
	done := make(chan error, 1)
	go func() { done <- e.gw.Drain(context.Background()) }()
	conn.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not return after the WebSocket closed")
	}
	rec := httptest.NewRecorder()
	e.gw.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "draining") {
		t.Fatalf("/readyz while shutting down = %d %s", rec.Code, rec.Body.String())
	}
}
