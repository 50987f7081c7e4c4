package gatehouse

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gatehouse-bff/gatehouse/idp"
	"github.com/gatehouse-bff/gatehouse/internal/dpop"
	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/upstream"
)

// DPoP (RFC 9449): with provider.dpop each session has its own key pair, made at login
// and kept in the part of its record that only the browser's cookie opens; every token
// request made for the session carries a proof of it (idp's transport makes them), and
// a route with dpop: true sends the bound token with a fresh proof for each request.

// dpopKeys caches parsed session keys: parsing and preparing a signer for each request
// would cost more than the signature. Bounded; a full cache starts again.
type dpopKeys struct {
	mu   sync.Mutex
	keys map[string]*dpop.Key // by the key's DER
}

const maxDPoPKeys = 8192

func (c *dpopKeys) get(der []byte) (*dpop.Key, error) {
	c.mu.Lock()
	k := c.keys[string(der)]
	c.mu.Unlock()
	if k != nil {
		return k, nil
	}
	k, err := dpop.Parse(der)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.keys == nil || len(c.keys) >= maxDPoPKeys {
		c.keys = map[string]*dpop.Key{}
	}
	c.keys[string(der)] = k
	c.mu.Unlock()
	return k, nil
}

// sessionKey is s's DPoP key, or nil when it has none.
func (g *Gateway) sessionKey(s *session.Session) *dpop.Key {
	if s == nil || len(s.DPoPKey) == 0 {
		return nil
	}
	k, err := g.dpopKeys.get(s.DPoPKey)
	if err != nil {
		g.log.Error("a session's DPoP key cannot be read", "session", s.Handle, "error", err)
		return nil
	}
	return k
}

// dpopContext is ctx for provider requests made for s: with its key, and marked as
// carrying a bound access token when s's token is one (userinfo).
func (g *Gateway) dpopContext(ctx context.Context, s *session.Session) context.Context {
	k := g.sessionKey(s)
	if k == nil {
		return ctx
	}
	ctx = dpop.WithKey(ctx, k)
	if s.Token.TokenType == "DPoP" {
		ctx = idp.WithBoundToken(ctx)
	}
	return ctx
}

var errDPoPRoute = &httpError{status: http.StatusBadGateway, code: "bad_gateway", reason: "dpop_route",
	title: "Not available", message: "This service is not set up to receive the sign-in's tokens.", level: slog.LevelWarn}

// forwardDPoP sets f up for a DPoP-bound token: a proof per request on a dpop route, a
// refusal elsewhere (a bearer-only upstream cannot use a bound token, and sending it
// without a proof would just fail there).
func (g *Gateway) forwardDPoP(f *upstream.Forward, rt *route, s *session.Session, tokenType string) error {
	if tokenType != "DPoP" {
		return nil
	}
	if !rt.DPoP {
		g.log.Warn("a DPoP-bound token was not forwarded: set dpop: true on the route", "route", rt.prefix)
		return errDPoPRoute.of(s)
	}
	k := g.sessionKey(s)
	if k == nil {
		return errDPoPRoute.of(s)
	}
	f.DPoP = func(method string, u *url.URL, token string) (string, error) {
		return k.Proof(method, u, token, "", time.Now()) // the upstream's clock checks iat
	}
	return nil
}
