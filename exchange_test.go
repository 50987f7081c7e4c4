package gatehouse_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

// token: exchange sends the upstream a token obtained by exchanging the user's (RFC
// 8693) for the route's audience; it is kept until it is about to expire, exchanged
// again once under concurrent requests, from a user token refreshed first when needed,
// and never shown to the browser.
func TestRouteTokenExchange(t *testing.T) {
	up := newUpstream(t)
	e := newEnv(t, func(c *gatehouse.Config) {
		c.Routes = []gatehouse.Route{
			{Path: "/orders/", Upstream: up.srv.URL, Token: gatehouse.TokenExchange,
				Exchange: &gatehouse.ExchangeConfig{Audience: "https://orders.example", Scopes: []string{"orders:read"}}},
			{Path: "/api/", Upstream: up.srv.URL},
		}
	})
	b := e.browser()
	wantJSONError(t, b.api("GET", "/orders/1"), http.StatusUnauthorized, "unauthenticated", "")
	b.login()
	exchanges := func() int { return e.idp.Count(idptest.GrantTokenExchange) }

	r := b.api("GET", "/orders/1")
	wantStatus(t, r, http.StatusOK)
	tok := strings.TrimPrefix(up.last(t).Auth, "Bearer ")
	if aud, ok := e.idp.ExchangedFor(tok); !ok || aud != "https://orders.example" {
		t.Fatalf("the upstream got %q, not a token exchanged for its audience", up.last(t).Auth)
	}
	if form := e.idp.LastForm("token"); form.Get("scope") != "orders:read" || form.Get("subject_token") != e.idp.AccessTokens()[0] {
		t.Fatalf("exchange request %v", form)
	}
	wantStatus(t, b.api("GET", "/api/x"), http.StatusOK)
	if up.last(t).Auth == "Bearer "+tok {
		t.Fatal("the user's own route got the exchanged token")
	}
	wantStatus(t, b.api("GET", "/orders/2"), http.StatusOK)
	if exchanges() != 1 || up.last(t).Auth != "Bearer "+tok {
		t.Fatalf("%d exchanges; the second call got %q", exchanges(), up.last(t).Auth)
	}

	// Both tokens expire (1 minute each): ten concurrent calls make one refresh of the
	// user's token, then one exchange.
	e.clock.Advance(2 * time.Minute)
	refreshes := e.idp.Count("refresh_token")
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", e.url+"/orders/3", nil)
			req.Header.Set("X-CSRF", "1")
			resp, err := b.c.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("concurrent call: %d", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	if exchanges() != 2 || e.idp.Count("refresh_token") != refreshes+1 {
		t.Fatalf("%d exchanges (want 2), %d refreshes (want %d)", exchanges(), e.idp.Count("refresh_token"), refreshes+1)
	}
	if form := e.idp.LastForm("token"); form.Get("subject_token") != e.idp.AccessTokens()[1] {
		t.Fatal("the exchange did not use the refreshed user token")
	}

	for _, s := range e.idp.IssuedSecrets() {
		if strings.Contains(r.body, s) || strings.Contains(e.logs.String(), s) || strings.Contains(e.audit.String(), s) {
			t.Fatalf("a token reached the browser or the logs")
		}
	}
}

func TestRouteTokenExchangeFailures(t *testing.T) {
	up := newUpstream(t)
	e := newEnv(t, func(c *gatehouse.Config) {
		c.Routes = []gatehouse.Route{{Path: "/orders/", Upstream: up.srv.URL, Token: gatehouse.TokenExchange,
			Exchange: &gatehouse.ExchangeConfig{Resource: "https://orders.example"}}}
	})
	b := e.browser()
	b.login()
	e.idp.Set(func(k *idptest.Knobs) { k.ExchangeStatus, k.ExchangeError = 400, "invalid_target" })
	wantJSONError(t, b.api("GET", "/orders/1"), http.StatusBadGateway, "bad_gateway", "exchange_refused")
	wantStatus(t, b.api("GET", "/bff/user"), http.StatusOK) // a refused exchange is no logout
	e.idp.Set(func(k *idptest.Knobs) { k.ExchangeStatus, k.ExchangeError, k.RetryAfter = 503, "", "9" })
	r := b.api("GET", "/orders/1")
	wantJSONError(t, r, http.StatusServiceUnavailable, "unavailable", "")
	if r.Header.Get("Retry-After") != "9" {
		t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
	}
	if up.count() != 0 {
		t.Fatal("a request reached the upstream without its token")
	}
	e.idp.Set(func(k *idptest.Knobs) { k.ExchangeStatus = 0 })
	e.clock.Advance(10 * time.Second) // past the provider's Retry-After
	wantStatus(t, b.api("GET", "/orders/1"), http.StatusOK)
}

func TestExchangeRouteConfig(t *testing.T) {
	for _, tc := range []struct {
		route gatehouse.Route
		want  string
	}{
		{gatehouse.Route{Token: gatehouse.TokenExchange}, "routes[0].exchange: is required"},
		{gatehouse.Route{Exchange: &gatehouse.ExchangeConfig{Audience: "a"}}, "routes[0].exchange: needs token: exchange"},
		{gatehouse.Route{Token: gatehouse.TokenExchange, Exchange: &gatehouse.ExchangeConfig{}}, "needs audience, resource or scopes"},
		{gatehouse.Route{Token: gatehouse.TokenExchange, Audience: "a", Exchange: &gatehouse.ExchangeConfig{Audience: "a"}}, "not on the route"},
		{gatehouse.Route{Token: gatehouse.TokenExchange, Exchange: &gatehouse.ExchangeConfig{Resource: "orders"}}, "exchange.resource"},
		{gatehouse.Route{Token: gatehouse.TokenExchange, Exchange: &gatehouse.ExchangeConfig{Audience: "a", SubjectToken: "refresh_token"}}, "exchange.subject_token"},
		{gatehouse.Route{Token: gatehouse.TokenExchange, Exchange: &gatehouse.ExchangeConfig{Audience: "a", RequestedTokenType: "jwt"}}, "exchange.requested_token_type"},
	} {
		tc.route.Path, tc.route.Upstream = "/api/", "http://127.0.0.1:3"
		cfg := gatehouse.Config{PublicURL: "http://127.0.0.1:1", Provider: gatehouse.ProviderConfig{Issuer: "http://127.0.0.1:2", ClientID: "c", ClientSecret: "s"},
			Routes: []gatehouse.Route{tc.route}}
		if _, err := gatehouse.New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("route %+v: %v, want %q", tc.route, err, tc.want)
		}
	}
}
