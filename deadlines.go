package gatehouse

import (
	"errors"
	"net/http"
	"time"
)

// http.Server bounds the wait for a request's headers (ReadHeaderTimeout) but not for
// its body: a client that declares a body and sends it a byte at a time holds its
// connection, and a handler goroutine, for as long as it likes. Gatehouse gives every
// body a read deadline of its own, chosen by what the request is:
//
//	/bff/* and the frontend   server.body_timeout (10 s): they take small bodies
//	a route                   routes[].body_timeout, else the route's timeout (30 s)
//	a streaming route         none (routes[].streaming), once the route's checks passed
//	a WebSocket upgrade       none: the connection becomes the tunnel
//
// A streaming route's request starts with the short deadline, and loses it only when it
// is forwarded: a request refused for want of a session, CSRF header or claim holds its
// connection no longer than one to /bff/*.
//
// The deadline is the connection's read deadline (http.ResponseController), so it also
// bounds what the server discards of an unread body after the response. net/http clears
// it once the body has been read to its end, when it starts watching the connection for
// the client going away, and sets the next request's deadlines itself: a response still
// streaming (an SSE answer to a POST) and a kept-alive connection are not cut. A request
// without a body gets no deadline, since that watch starts before the handler does.

// DefaultBodyTimeout is server.body_timeout when none is set.
const DefaultBodyTimeout = 10 * time.Second

// DefaultMaxConnectionsPerClient is server.max_connections_per_client when none is set.
const DefaultMaxConnectionsPerClient = 256

func (s ServerConfig) withDefaults() ServerConfig {
	if s.BodyTimeout == 0 {
		s.BodyTimeout = DefaultBodyTimeout
	}
	if s.MaxConnectionsPerClient == 0 {
		s.MaxConnectionsPerClient = DefaultMaxConnectionsPerClient
	}
	return s
}

func (s ServerConfig) check() []error {
	var errs []error
	if s.BodyTimeout < 0 {
		errs = append(errs, errors.New("server.body_timeout: must be a positive duration such as 10s"))
	}
	if s.MaxConnectionsPerClient < 0 {
		errs = append(errs, errors.New("server.max_connections_per_client: must be a positive number"))
	}
	return errs
}

// bodyTimeout is the read deadline of r's body by the class of r; 0 is none. rt is the
// route serving r, nil for /bff/*, invalid paths and the rest; other is true for the
// rest (the frontend, or a 404).
func (g *Gateway) bodyTimeout(r *http.Request, rt *route, other bool) time.Duration {
	if r.Body == nil || r.Body == http.NoBody {
		// Nothing to read: a deadline would only cut the server's watch for the client
		// going away (and with it a long response).
		return 0
	}
	switch {
	case rt != nil && isWebSocket(r):
		return 0
	case rt != nil && rt.Streaming:
		return g.config().Server.BodyTimeout // until forwardingBody
	case rt != nil && rt.BodyTimeout > 0:
		return rt.BodyTimeout
	case rt != nil:
		return rt.Timeout
	case other && isWebSocket(r):
		// The frontend (static files or a development server); its hot-reload WebSocket is
		// an upgrade like any other.
		return 0
	}
	return g.config().Server.BodyTimeout
}

// setBodyDeadline sets the read deadline of r's body, if it has one (see bodyTimeout for
// rt and other). Servers that cannot set deadlines are left alone.
func (g *Gateway) setBodyDeadline(w http.ResponseWriter, r *http.Request, rt *route, other bool) {
	if d := g.bodyTimeout(r, rt, other); d > 0 {
		// A real deadline on a real socket: the wall clock, not the configured Now.
		http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
	}
}

// forwardingBody is called when r passed its route's checks and is about to be forwarded:
// a streaming route's body then has no deadline any more.
func forwardingBody(w http.ResponseWriter, r *http.Request, rt *route) {
	if rt.Streaming && r.Body != nil && r.Body != http.NoBody && !isWebSocket(r) {
		http.NewResponseController(w).SetReadDeadline(time.Time{})
	}
}
