package gatehouse

import (
	"net/http"
	"testing"
)

// TestUpstreamTransportDefault: a route without its own upstream_transport takes the fast
// path, unless the global mode says standard or the embedder gave its own
// UpstreamTransport (which the fast path would bypass); a route's own choice wins.
func TestUpstreamTransportDefault(t *testing.T) {
	own := &http.Transport{}
	for _, c := range []struct {
		name      string
		mode      TransportMode
		transport http.RoundTripper
		route     TransportMode
		fast      bool
	}{
		{name: "nothing set", fast: true},
		{name: "global standard", mode: TransportStandard},
		{name: "global fast", mode: TransportFast, fast: true},
		{name: "own transport", transport: own},
		{name: "own transport, global fast", transport: own, mode: TransportFast, fast: true},
		{name: "route standard", route: TransportStandard},
		{name: "route fast, global standard", mode: TransportStandard, route: TransportFast, fast: true},
		{name: "route fast, own transport", transport: own, route: TransportFast, fast: true},
	} {
		cfg := Config{PublicURL: "https://app.example", UpstreamTransportMode: c.mode, UpstreamTransport: c.transport,
			Routes: []Route{{Path: "/api/", Upstream: "http://api.internal", Transport: c.route}}}
		if got := newRunning(cfg).routes[0].target.Fast; got != c.fast {
			t.Errorf("%s: fast = %v, want %v", c.name, got, c.fast)
		}
	}
}
