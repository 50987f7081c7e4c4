package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/e2e/internal/harness"
)

// A route with token: exchange gets, from oidc-provider's token-exchange grant (RFC
// 8693), a token for its own audience, which the provider's introspection confirms; it
// is cached (one exchange for several calls), exchanged again after it expires, and
// revoked with the grant at logout. A refused audience is a 502 that keeps the session.
func TestE2ETokenExchange(t *testing.T) {
	port := freePort(t)
	public := fmt.Sprintf("http://127.0.0.1:%d", port)
	client := harness.BFFClient(public)
	client.GrantTypes = append(client.GrantTypes, "urn:ietf:params:oauth:grant-type:token-exchange")
	idp := harness.StartProvider(t, harness.ProviderConfig{Clients: []harness.Client{client, probeClient()},
		AccessTokenTTL: 4 * time.Second, ExchangeAudiences: []string{"https://orders.example"}})
	api := startUpstream(t)
	gw := startGatehouse(t, port, fmt.Sprintf(`
listen: 127.0.0.1:%d
public_url: %s
provider:
  issuer: %s
  client_id: bff
  client_secret: s3cret
  scopes: [openid, profile, email, offline_access]
  auth_params: {prompt: consent}
  refresh_lead: 1s
admin:
  listen: {{ADMIN}}
routes:
  - path: /orders/
    upstream: %s
    token: exchange
    exchange:
      audience: https://orders.example
      scopes: [openid]
  - path: /billing/
    upstream: %s
    token: exchange
    exchange:
      audience: https://billing.example
  - path: /api/
    upstream: %s
`, port, public, idp.Issuer(), api.URL, api.URL, api.URL))

	b := newBrowser(t, gw.URL)
	expect(t, b.login("alice", "wonderland", "/"), 200)
	expect(t, b.api("GET", "/api/me"), 200)
	user := bearer(api.last(t))
	expect(t, b.api("GET", "/orders/1"), 200)
	orders := bearer(api.last(t))
	expect(t, b.api("GET", "/orders/2"), 200)
	if orders == user || bearer(api.last(t)) != orders {
		t.Fatal("the orders API got the user's token, or a new token for each call")
	}
	info := introspectAll(t, idp, orders)
	if info["active"] != true || info["aud"] != "https://orders.example" || info["sub"] != "alice" {
		t.Fatalf("the exchanged token, introspected: %v", info)
	}
	exchanges := func() int { return idp.Stats(t).TokenRequests["urn:ietf:params:oauth:grant-type:token-exchange"] }
	if n := exchanges(); n != 1 {
		t.Fatalf("%d exchanges for two calls, want 1", n)
	}

	time.Sleep(3500 * time.Millisecond) // within refresh_lead of both 4 s tokens
	expect(t, b.api("GET", "/orders/3"), 200)
	if bearer(api.last(t)) == orders || exchanges() != 2 {
		t.Fatalf("after expiry: %d exchanges, same token %v", exchanges(), bearer(api.last(t)) == orders)
	}

	// The provider refuses this audience: a 502 for the route, and the session lives on.
	r := b.api("GET", "/billing/1")
	expect(t, r, 502)
	if !strings.Contains(r.Body, "exchange_refused") {
		t.Fatalf("refused exchange: %s", r.Body)
	}
	if status, _ := b.user(); status != 200 {
		t.Fatal("a refused exchange ended the session")
	}

	latest := bearer(api.last(t))
	expect(t, b.api("POST", "/bff/logout"), 200)
	if introspectAll(t, idp, latest)["active"] == true {
		t.Fatal("the exchanged token outlived the logout (its grant was revoked)")
	}
}

func bearer(h http.Header) string { return strings.TrimPrefix(h.Get("Authorization"), "Bearer ") }
