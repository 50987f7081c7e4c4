package gatehouse

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/gatehouse-bff/gatehouse/idp"
	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/upstream"
)

// Tunnels: the WebSockets and server-sent event streams proxied for a session outlive
// the request that opened them, so the checks of later requests never see them. They
// are tracked here, per session, and closed when the session ends:
//
//   - at once when it is ended by this replica (logout, revocation, back-channel logout,
//     binding, a refused refresh), through Manager.OnEnd;
//   - within the store's notification delay when another replica ends it (Redis
//     pub/sub; see session.Broadcaster); an end whose message could not be published is
//     published again until it is (session.Manager), and after a lost subscription every
//     tunnel is checked again once it is back, a check that fails retried each second:
//     within about 2 s of the store answering again;
//   - on time when it expires (idle or absolute timeout): a timer per tunnel reloads the
//     session at its expiry;
//   - when the route's access token expires and cannot be refreshed;
//   - at the latest tunnelRecheck after any of these was missed, by the same timer.
//
// See docs/security.md, "Sessions end when they should".

// tunnelRecheck bounds how long a tunnel lives without its session being read again.
const tunnelRecheck = time.Minute

// After a check that could not read the session (the store failing) or refresh its
// token (the provider failing), the next one comes this much later. The store's is short
// because it bounds how late an end missed during an outage is found once the store
// answers again; the provider's spares a provider that is down.
const (
	tunnelRetryStore    = time.Second
	tunnelRetryProvider = 5 * time.Second
)

// Why a tunnel was closed, as the gatehouse_tunnels_closed_total reason label.
const (
	tunnelEnded   = "session_ended"   // logout, revocation, back-channel logout, …
	tunnelExpired = "session_expired" // idle or absolute timeout
	tunnelToken   = "token_expired"   // the access token expired and could not be refreshed
)

func tunnelReasons() []string { return []string{tunnelEnded, tunnelExpired, tunnelToken} }

type tunnels struct {
	mu        sync.Mutex
	bySession map[string]map[*tunnel]struct{} // by session handle
}

// tunnel is one proxied WebSocket or event stream of a session.
type tunnel struct {
	g    *Gateway
	rt   *route // nil when the route is gone from the configuration
	stop func()

	mu     sync.Mutex
	s      *session.Session // as last read
	timer  *time.Timer
	closed bool
}

// openTunnel is the proxy's OnStream hook: owner is the request's session.
func (g *Gateway) openTunnel(t *upstream.Target, owner any, stop func()) (done func()) {
	s, ok := owner.(*session.Session)
	if !ok {
		return func() {}
	}
	tn := &tunnel{g: g, s: s, stop: stop}
	for _, rt := range g.current().routes {
		if rt.target == t {
			tn.rt = rt
			break
		}
	}
	ts := &g.tunnels
	ts.mu.Lock()
	if ts.bySession == nil {
		ts.bySession = map[string]map[*tunnel]struct{}{}
	}
	set := ts.bySession[s.Handle]
	if set == nil {
		set = map[*tunnel]struct{}{}
		ts.bySession[s.Handle] = set
	}
	set[tn] = struct{}{}
	ts.mu.Unlock()
	g.metrics.tunnels.Inc()

	tn.mu.Lock()
	tn.schedule()
	tn.mu.Unlock()
	return func() {
		tn.mu.Lock()
		tn.closed = true
		if tn.timer != nil {
			tn.timer.Stop()
		}
		tn.mu.Unlock()
		ts.mu.Lock()
		if set := ts.bySession[s.Handle]; set != nil {
			delete(set, tn)
			if len(set) == 0 {
				delete(ts.bySession, s.Handle)
			}
		}
		ts.mu.Unlock()
		g.metrics.tunnels.Dec()
	}
}

// sessionEnded closes the tunnels of the session with handle h (Manager.OnEnd).
func (g *Gateway) sessionEnded(h string) {
	for _, tn := range g.tunnels.of(h) {
		tn.close(tunnelEnded)
	}
}

// of returns the open tunnels of session h.
func (ts *tunnels) of(h string) []*tunnel {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	set := ts.bySession[h]
	out := make([]*tunnel, 0, len(set))
	for tn := range set {
		out = append(out, tn)
	}
	return out
}

// all returns every open tunnel.
func (ts *tunnels) all() []*tunnel {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	var out []*tunnel
	for _, set := range ts.bySession {
		for tn := range set {
			out = append(out, tn)
		}
	}
	return out
}

// recheckTunnels checks every tunnel's session now: notifications may have been missed
// (the store's subscription was down).
func (g *Gateway) recheckTunnels() {
	for _, tn := range g.tunnels.all() {
		tn.mu.Lock()
		if !tn.closed && tn.timer != nil {
			tn.timer.Reset(0)
		}
		tn.mu.Unlock()
	}
}

// close stops the tunnel, once.
func (tn *tunnel) close(reason string) {
	tn.mu.Lock()
	if tn.closed {
		tn.mu.Unlock()
		return
	}
	tn.closed = true
	if tn.timer != nil {
		tn.timer.Stop()
	}
	tn.mu.Unlock()
	tn.stop()
	tn.g.metrics.tunnelsClosed.WithLabelValues(reason).Inc()
	tn.g.log.Info("closed a WebSocket or stream of a session that ended", "session", tn.s.Handle, "reason", reason)
}

// usesToken reports whether the tunnel's route forwards the session's access token.
func (tn *tunnel) usesToken() bool {
	return tn.rt != nil && tn.rt.Token != TokenNone && tn.rt.Token != TokenClient
}

// schedule sets the timer for the next check: the session's expiry, the access token's
// expiry, or tunnelRecheck from now, whichever comes first. tn.mu is held.
func (tn *tunnel) schedule() {
	g := tn.g
	now := g.now()
	at := g.sessions.IdleExpiry(tn.s)
	if recheck := now.Add(tunnelRecheck); recheck.Before(at) {
		at = recheck
	}
	if tn.usesToken() {
		if exp := tn.s.AccessTokenFor(tn.rt.tokenKey()).Expiry; !exp.IsZero() && exp.Before(at) {
			at = exp
		}
	}
	d := max(at.Sub(now), 0)
	if tn.timer == nil {
		tn.timer = time.AfterFunc(d, tn.check)
	} else {
		tn.timer.Reset(d)
	}
}

// check reads the session again and closes the tunnel if it has ended or expired, or
// if the token it forwards has expired and cannot be refreshed.
func (tn *tunnel) check() {
	tn.mu.Lock()
	if tn.closed {
		tn.mu.Unlock()
		return
	}
	s := tn.s
	tn.mu.Unlock()
	g := tn.g
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()

	cur, err := g.sessions.Reload(ctx, s)
	refreshed := false
	if err == nil && tn.usesToken() {
		key := tn.rt.tokenKey()
		if tok := cur.AccessTokenFor(key); !g.now().Before(tok.Expiry) {
			// The token the upstream was given has expired: the tunnel lives on only if the
			// session can still get a new one. No request is behind this refresh, so it
			// does not count as use of the session (the idle timeout still applies).
			refreshed = true
			_, cur, err = g.routeToken(ctx, nil, cur, tn.rt)
		}
	}
	unavailable := errors.Is(err, idp.ErrUnavailable) || errors.Is(err, session.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)
	switch {
	case err == nil:
	case refreshed && !unavailable:
		tn.close(tunnelToken)
		return
	case errors.Is(err, session.ErrExpired):
		tn.close(tunnelExpired)
		return
	case isSessionEnd(err):
		tn.close(tunnelEnded)
		return
	default:
		// The store or the provider cannot answer now: keep the tunnel, ask again soon. The
		// store sooner: the session may have ended elsewhere while its end's message could
		// not reach this replica, and this check is what finds it once the store answers
		// (a recheck after resubscribing that met a store still settling after a failover
		// waited 5 s more).
		retry := tunnelRetryProvider
		if !errors.Is(err, idp.ErrUnavailable) {
			retry = tunnelRetryStore
		}
		g.log.Warn("could not check the session of an open WebSocket or stream; retrying", "session", s.Handle, "error", err, "retry_in", retry.String())
		tn.mu.Lock()
		if !tn.closed {
			tn.timer.Reset(retry)
		}
		tn.mu.Unlock()
		return
	}
	tn.mu.Lock()
	if !tn.closed {
		tn.s = cur
		tn.schedule()
	}
	tn.mu.Unlock()
}
