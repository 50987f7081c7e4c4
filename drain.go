package gatehouse

import (
	"context"
	"errors"
	"sync"
)

// drainer counts the proxied WebSockets, which http.Server.Shutdown does not wait for
// (their connections are hijacked), and marks the gateway as draining.
type drainer struct {
	mu       sync.Mutex
	n        int
	zero     chan struct{} // closed when n drops to 0 while someone waits
	draining bool
}

func (d *drainer) add() {
	d.mu.Lock()
	d.n++
	d.mu.Unlock()
}

func (d *drainer) done() {
	d.mu.Lock()
	d.n--
	if d.n == 0 && d.zero != nil {
		close(d.zero)
		d.zero = nil
	}
	d.mu.Unlock()
}

var errDraining = errors.New("shutting down: draining connections")

// Drain prepares a graceful shutdown: /readyz answers 503 from now on, so load
// balancers stop sending new users here, and Drain waits until every proxied WebSocket
// has closed, or ctx is done (it then returns ctx's error).
//
// Call it alongside http.Server.Shutdown, which waits for the other requests but not for
// WebSockets; when ctx expires, cancel the server's BaseContext to close the remaining
// WebSockets (the binary does both; see docs/operations.md).
func (g *Gateway) Drain(ctx context.Context) error {
	d := &g.drain
	d.mu.Lock()
	d.draining = true
	if d.n == 0 {
		d.mu.Unlock()
		return nil
	}
	if d.zero == nil {
		d.zero = make(chan struct{})
	}
	zero := d.zero
	d.mu.Unlock()
	select {
	case <-zero:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *drainer) isDraining() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.draining
}
