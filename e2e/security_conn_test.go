package e2e

// The "connections and bodies" category (CONN) of the security suite: clients that try to
// hold the gateway's connections without end. Slow request bodies to /bff/* and to
// proxied routes, a connection flood from one client network, and the WebSocket that must
// survive the body deadlines. The category starts a gateway of its own with short bounds
// (on the shared fake provider; no case signs in):
//
//	conn   server.body_timeout 2s, server.max_connections_per_client 60; routes /api/
//	       (token none) and /user-api/ (token user) on the recording upstream, /ws/
//	       (token none) on a WebSocket echo upstream, each with timeout 3s
//
// Every client of the category connects from a loopback address of its own (127.0.0.x),
// so that the flood's cap is not spent by the other cases.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	connBodyTimeout  = 2 * time.Second // server.body_timeout
	connRouteTimeout = 3 * time.Second // the routes' timeout, hence their body deadline
	connCap          = 60              // server.max_connections_per_client
	connSlowClients  = 40
	connSlowWait     = 15 * time.Second // how long a slow client keeps sending before it gives up
	connSlack        = 2 * time.Second  // how late after its deadline a connection may close
)

func secConnections(t *testing.T, s *secSuite, e *secEnv) {
	ws := wsUpstream(t)
	port := freePort(t)
	gw := startGatehouse(t, port, secRelaxRateLimits(t, fmt.Sprintf(`
listen: 127.0.0.1:%d
public_url: http://127.0.0.1:%d
provider:
  issuer: %s
  client_id: %s
  client_secret: %s
session:
  store: memory
admin:
  listen: {{ADMIN}}
log:
  level: debug
server:
  body_timeout: %s
  max_connections_per_client: %d
routes:
  - path: /api/
    upstream: %s
    token: none
    timeout: %s
  - path: /user-api/
    upstream: %s
    timeout: %s
  - path: /ws/
    upstream: %s
    token: none
    timeout: %s
`, port, port, e.fake.Issuer, e.fake.ClientID, e.fake.ClientSecret, connBodyTimeout, connCap,
		e.up.URL, connRouteTimeout, e.up.URL, connRouteTimeout, ws, connRouteTimeout)))
	secGatewayHosts.Store(strings.TrimPrefix(gw.URL, "http://"), true)
	host := strings.TrimPrefix(gw.URL, "http://")

	slowCase := func(c *secCase, from string, deadline time.Duration, targets [][2]string) {
		c.Helper()
		results := make([]connSlowResult, connSlowClients)
		var wg sync.WaitGroup
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tg := targets[i%len(targets)]
				results[i] = connSlowBody(host, from, tg[0], tg[1])
			}()
		}
		wg.Wait()
		held, late, early := 0, 0, 0
		var worst time.Duration
		for i, r := range results {
			tg := targets[i%len(targets)]
			switch {
			case r.Err != "":
				c.Errorf("slow client %d (%s %s): %s", i+1, tg[0], tg[1], r.Err)
			case !r.Closed:
				held++
			case r.After > deadline+connSlack:
				late++
			case r.After < deadline-300*time.Millisecond:
				early++
				c.Errorf("slow client %d (%s %s): closed after %v, before its deadline %v (answered %q)", i+1, tg[0], tg[1], r.After.Round(10*time.Millisecond), deadline, firstLine(r.Got))
			}
			worst = max(worst, r.After)
		}
		c.Logf("%d slow clients: %d held for %v and beyond, %d closed late, %d early; the last closed after %v",
			connSlowClients, held, connSlowWait, late, early, worst.Round(10*time.Millisecond))
		if held > 0 || late > 0 {
			c.Errorf("%d of %d connections sending a declared body at 1 byte/s were held for %v and beyond, %d more closed later than %v after their headers; want every one closed %v after its headers",
				held, connSlowClients, connSlowWait, late, deadline+connSlack, deadline)
		}
		// The gateway is still itself, for this client too.
		if res := connGet(host, from, "/bff/user"); res != http.StatusUnauthorized {
			c.Errorf("GET /bff/user from %s afterwards: %d, want 401", from, res)
		}
	}

	s.run(t, e, "CONN", fmt.Sprintf("slow body: %d anonymous connections to /bff/* at 1 byte/s", connSlowClients),
		fmt.Sprintf("each declares a 1000-byte body to POST /bff/backchannel, /bff/logout, /bff/user or /bff/sessions and sends a byte a second: the gateway closes every connection %v after its headers (server.body_timeout), within %v; the gateway answers normally afterwards", connBodyTimeout, connSlack),
		func(c *secCase) {
			slowCase(c, "127.0.0.21", connBodyTimeout, [][2]string{
				{"POST", "/bff/backchannel"}, {"POST", "/bff/logout"}, {"POST", "/bff/user"}, {"PUT", "/bff/sessions"},
			})
		})

	s.run(t, e, "CONN", fmt.Sprintf("slow body: %d anonymous connections to proxied routes at 1 byte/s", connSlowClients),
		fmt.Sprintf("each declares a 1000-byte body to a token: none route (forwarded as it arrives) or a token: user route (401 without reading it) and sends a byte a second: the gateway closes every connection %v after its headers (the route's timeout), within %v", connRouteTimeout, connSlack),
		func(c *secCase) {
			slowCase(c, "127.0.0.22", connRouteTimeout, [][2]string{
				{"POST", "/api/upload"}, {"PUT", "/user-api/upload"},
			})
		})

	s.run(t, e, "CONN", "connection flood from one client beyond the cap",
		fmt.Sprintf("127.0.0.23 opens %d connections and sends a request on each: %d are served, the others closed unserved; meanwhile 127.0.0.24 is served; gatehouse_connections_refused_total{reason=client_cap} counts the refusals; once the flood closes, 127.0.0.23 is served again", connCap+15, connCap),
		func(c *secCase) {
			const flooder, other = "127.0.0.23", "127.0.0.24"
			before := connRefusedMetric(c, gw)
			var conns []net.Conn
			defer func() {
				for _, conn := range conns {
					conn.Close()
				}
			}()
			for i := range connCap + 15 {
				conn, err := connDial(host, flooder)
				if err != nil {
					c.Fatalf("connection %d: %v", i+1, err)
				}
				conns = append(conns, conn)
			}
			served := 0
			for _, conn := range conns {
				if connServed(conn, host, "/bff/user") == http.StatusUnauthorized {
					served++
				}
			}
			if served != connCap {
				c.Errorf("%d of %d connections from %s were served, want %d (server.max_connections_per_client)", served, len(conns), flooder, connCap)
			}
			if res := connGet(host, other, "/bff/user"); res != http.StatusUnauthorized {
				c.Errorf("GET /bff/user from another client (%s) during the flood: %d, want 401", other, res)
			}
			if got := connRefusedMetric(c, gw) - before; got < float64(len(conns)-connCap) {
				c.Errorf("gatehouse_connections_refused_total{reason=\"client_cap\"} rose by %v, want at least %d", got, len(conns)-connCap)
			}
			for _, conn := range conns {
				conn.Close()
			}
			conns = nil
			waitFor(c.T, 5*time.Second, "the flooder's slots to come back", func() bool {
				return connGet(host, flooder, "/bff/user") == http.StatusUnauthorized
			})
		})

	s.run(t, e, "CONN", "a WebSocket through a route outlives the body deadlines",
		fmt.Sprintf("a WebSocket opened through /ws/ from 127.0.0.25 still echoes after %v, past server.body_timeout (%v) and the routes' timeout (%v)", connRouteTimeout+connSlack, connBodyTimeout, connRouteTimeout),
		func(c *secCase) {
			conn, err := connDial(host, "127.0.0.25")
			if err != nil {
				c.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			fmt.Fprintf(conn, "GET /ws/echo HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: %s\r\n\r\n", host, gw.URL)
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				c.Fatalf("WebSocket upgrade: %v %v", resp, err)
			}
			if got := echo(conn, br, "first"); got != "echo:first" {
				c.Fatalf("first message: %q", got)
			}
			time.Sleep(connRouteTimeout + connSlack)
			if got := echo(conn, br, "later"); got != "echo:later" {
				c.Errorf("after %v the tunnel answers %q, want echo:later: it was cut", connRouteTimeout+connSlack, got)
			}
		})
}

// connSlowResult is what a slow-body client observed.
type connSlowResult struct {
	Closed bool          // the gateway closed the connection
	After  time.Duration // since the request's headers were sent
	Got    string        // what the gateway sent
	Err    string        // the client could not even start
}

// connSlowBody connects from the loopback address from and sends method path declaring a
// 1000-byte body, then a byte a second, for at most connSlowWait.
func connSlowBody(host, from, method, path string) connSlowResult {
	conn, err := connDial(host, from)
	if err != nil {
		return connSlowResult{Err: err.Error()}
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n", method, path, host); err != nil {
		return connSlowResult{Err: err.Error()}
	}
	start := time.Now()
	done := make(chan connSlowResult, 1)
	go func() {
		data, _ := io.ReadAll(conn) // EOF or a reset: either way the gateway closed it
		done <- connSlowResult{Closed: true, After: time.Since(start), Got: string(data)}
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	giveUp := time.After(connSlowWait)
	for {
		select {
		case r := <-done:
			return r
		case <-giveUp:
			return connSlowResult{After: time.Since(start)}
		case <-tick.C:
			conn.Write([]byte("a"))
		}
	}
}

// connDial connects to host from the loopback address from.
func connDial(host, from string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	return d.Dial("tcp", host)
}

// connServed sends GET path on conn and returns the status, or 0 if the connection was
// closed unanswered.
func connServed(conn net.Conn, host, path string) int {
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host); err != nil {
		return 0
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// connGet is GET path on a new connection from from.
func connGet(host, from, path string) int {
	conn, err := connDial(host, from)
	if err != nil {
		return 0
	}
	defer conn.Close()
	return connServed(conn, host, path)
}

// connRefusedMetric reads gatehouse_connections_refused_total{reason="client_cap"} from
// gw's admin listener (0 when the series does not exist).
func connRefusedMetric(t testing.TB, gw *gatehouseProc) float64 {
	t.Helper()
	resp, err := http.Get(gw.AdminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var v float64
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, `gatehouse_connections_refused_total{reason="client_cap"} `); ok {
			fmt.Sscan(rest, &v)
		}
	}
	return v
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}
