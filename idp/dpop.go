package idp

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-bff/gatehouse/internal/dpop"
)

// DPoP (RFC 9449) at the provider: a request whose context carries a session's key
// (dpop.WithKey) gets a proof in its DPoP header, with the nonce the provider last gave
// for that origin; an answer that asks for a new nonce (400 or 401 with a DPoP-Nonce
// header other than the one sent) is retried once with it. A request that carries a
// DPoP-bound access token (userinfo; the context says so with WithBoundToken) sends it
// as "Authorization: DPoP", and its proof names the token (ath).

type boundKey struct{}

// WithBoundToken marks ctx's provider requests that carry an access token (userinfo) as
// carrying a DPoP-bound one: it is sent with the DPoP scheme and a proof for it.
func WithBoundToken(ctx context.Context) context.Context {
	return context.WithValue(ctx, boundKey{}, true)
}

func boundToken(ctx context.Context) bool { b, _ := ctx.Value(boundKey{}).(bool); return b }

// dpopNonces remembers the last DPoP-Nonce each provider origin sent (RFC 9449 §8).
type dpopNonces struct{ m sync.Map }

func (n *dpopNonces) get(origin string) string {
	v, _ := n.m.Load(origin)
	s, _ := v.(string)
	return s
}

func (n *dpopNonces) set(origin, nonce string) {
	if nonce != "" && len(nonce) <= 512 {
		n.m.Store(origin, nonce)
	}
}

type dpopTransport struct {
	base http.RoundTripper
	c    *Client
}

func (t *dpopTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	k := dpop.FromContext(req.Context())
	if k == nil {
		return t.base.RoundTrip(req)
	}
	origin := req.URL.Scheme + "://" + req.URL.Host
	sent := t.c.nonces.get(origin)
	resp, err := t.try(req, k, sent)
	if err != nil {
		return nil, err
	}
	fresh := resp.Header.Get("DPoP-Nonce")
	t.c.nonces.set(origin, fresh)
	if (resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnauthorized) && fresh != "" && fresh != sent &&
		(req.Body == nil || req.GetBody != nil) {
		// use_dpop_nonce: once more with the nonce the provider just gave.
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
		resp, err = t.try(req, k, fresh)
		if err == nil {
			t.c.nonces.set(origin, resp.Header.Get("DPoP-Nonce"))
		}
	}
	return resp, err
}

// try sends req once with a proof made with nonce.
func (t *dpopTransport) try(req *http.Request, k *dpop.Key, nonce string) (*http.Response, error) {
	out := req.Clone(req.Context())
	var token string
	if auth := out.Header.Get("Authorization"); boundToken(req.Context()) && len(auth) > 7 && strings.EqualFold(auth[:7], "Bearer ") {
		token = auth[7:]
		out.Header.Set("Authorization", "DPoP "+token)
	}
	// The wall clock, not Config.Now: the proof's iat is checked by the provider's clock.
	proof, err := k.Proof(out.Method, out.URL, token, nonce, time.Now())
	if err != nil {
		return nil, err
	}
	out.Header.Set("DPoP", proof)
	return t.base.RoundTrip(out)
}
