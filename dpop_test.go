package gatehouse_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

// dpopAPI is an upstream that checks DPoP as a resource server would, against the
// fake provider's record of which key each token is bound to.
type dpopAPI struct {
	srv  *httptest.Server
	p    *idptest.Provider // set once the env exists
	mu   sync.Mutex
	seen []string // "ok", or what was wrong
	jkts []string
}

func newDPoPAPI(t *testing.T) *dpopAPI {
	a := &dpopAPI{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		verdict, jkt := "ok", ""
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		bound, isBound := a.p.BoundTo(token)
		switch {
		case !isBound:
			verdict = "not a bound token: " + scheme
		case scheme != "DPoP":
			verdict = "scheme " + scheme
		default:
			var problem string
			jkt, _, problem = idptest.CheckDPoPProof(r.Header.Get("DPoP"), r.Method, "http://"+r.Host+r.URL.Path, token, "", time.Now())
			if problem != "" {
				verdict = "proof: " + problem
			} else if jkt != bound {
				verdict = "proof of another key"
			}
		}
		a.mu.Lock()
		a.seen, a.jkts = append(a.seen, verdict), append(a.jkts, jkt)
		a.mu.Unlock()
		if verdict != "ok" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *dpopAPI) last() (string, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seen[len(a.seen)-1], a.jkts[len(a.jkts)-1]
}

// With provider.dpop, the session's tokens are bound to its own key: the code exchange,
// the refresh and userinfo prove it, a dpop route sends the token with a fresh proof
// for each request (method, URL, token), a refresh keeps the binding, and a route
// without dpop does not forward the bound token at all.
func TestDPoP(t *testing.T) {
	api := newDPoPAPI(t)
	e := newEnvKnobs(t, func(k *idptest.Knobs) { k.DPoP = true }, func(c *gatehouse.Config) {
		c.Provider.DPoP = true
		c.Routes = []gatehouse.Route{
			{Path: "/api/", Upstream: api.srv.URL, DPoP: true},
			{Path: "/legacy/", Upstream: api.srv.URL},
		}
	})
	api.p = e.idp
	b := e.browser()
	b.login() // the callback's userinfo succeeded: the bound token went with a proof
	if e.idp.Count("dpop_proof") != 1 {
		t.Fatalf("%d proofs at the token endpoint, want 1 (the code exchange)", e.idp.Count("dpop_proof"))
	}
	first := e.idp.AccessTokens()[0]
	jkt, bound := e.idp.BoundTo(first)
	if !bound {
		t.Fatal("the provider issued a bearer token")
	}
	for range 2 {
		wantStatus(t, b.api("GET", "/api/orders?id=7"), http.StatusOK)
		if verdict, got := api.last(); verdict != "ok" || got != jkt {
			t.Fatalf("the upstream saw %q (key %s, want %s)", verdict, got, jkt)
		}
	}
	wantJSONError(t, b.api("GET", "/legacy/x"), http.StatusBadGateway, "bad_gateway", "dpop_route")
	if n := len(api.seen); n != 2 {
		t.Fatalf("%d requests reached the upstream, want 2: a bound token went to a route without dpop", n)
	}

	// A refresh proves the same key, and the new token is bound to it.
	e.clock.Advance(2 * time.Minute)
	wantStatus(t, b.api("GET", "/api/orders"), http.StatusOK)
	tokens := e.idp.AccessTokens()
	if len(tokens) != 2 {
		t.Fatalf("%d access tokens, want 2 (login, refresh)", len(tokens))
	}
	if again, _ := e.idp.BoundTo(tokens[1]); again != jkt {
		t.Fatal("the refreshed token is bound to another key")
	}
	if verdict, _ := api.last(); verdict != "ok" {
		t.Fatalf("after the refresh the upstream saw %q", verdict)
	}
	// The key never leaves the gateway: not in a response, a log line or the audit log.
	if strings.Contains(e.logs.String(), jkt) || strings.Contains(e.audit.String(), jkt) {
		t.Fatal("the key's thumbprint is logged")
	}

	// Another session has another key.
	b2 := e.browser()
	b2.login()
	other, _ := e.idp.BoundTo(e.idp.AccessTokens()[2])
	if other == jkt || other == "" {
		t.Fatal("two sessions share a DPoP key")
	}
}

// A provider that asks for a nonce (use_dpop_nonce) gets a second proof with it, once,
// and the nonce is remembered for the next requests.
func TestDPoPNonce(t *testing.T) {
	api := newDPoPAPI(t)
	e := newEnvKnobs(t, func(k *idptest.Knobs) { k.DPoP, k.DPoPNonce = true, "nonce-1" }, func(c *gatehouse.Config) {
		c.Provider.DPoP = true
		c.Routes = []gatehouse.Route{{Path: "/api/", Upstream: api.srv.URL, DPoP: true}}
	})
	api.p = e.idp
	b := e.browser()
	b.login()
	if n := e.idp.Count("use_dpop_nonce"); n != 1 {
		t.Fatalf("%d nonce challenges at login, want 1", n)
	}
	e.clock.Advance(2 * time.Minute)
	wantStatus(t, b.api("GET", "/api/x"), http.StatusOK)
	if n := e.idp.Count("use_dpop_nonce"); n != 1 {
		t.Fatalf("the refresh was challenged again (%d): the nonce was not remembered", n)
	}
	// The provider moves to a new nonce: one more challenge, answered.
	e.idp.Set(func(k *idptest.Knobs) { k.DPoPNonce = "nonce-2" })
	e.clock.Advance(2 * time.Minute)
	wantStatus(t, b.api("GET", "/api/x"), http.StatusOK)
	if n := e.idp.Count("use_dpop_nonce"); n != 2 {
		t.Fatalf("%d challenges after the nonce changed, want 2", n)
	}
}

// Without provider.dpop a provider that does DPoP gets no proof and issues bearer
// tokens, which dpop routes send as bearer tokens.
func TestDPoPOff(t *testing.T) {
	api := newDPoPAPI(t)
	e := newEnvKnobs(t, func(k *idptest.Knobs) { k.DPoP = true }, func(c *gatehouse.Config) {
		c.Routes = []gatehouse.Route{{Path: "/api/", Upstream: api.srv.URL, DPoP: true}}
	})
	api.p = e.idp
	b := e.browser()
	b.login()
	b.api("GET", "/api/x")
	if verdict, _ := api.last(); verdict != "not a bound token: Bearer" || e.idp.Count("dpop_proof") != 0 {
		t.Fatalf("upstream saw %q; %d proofs", verdict, e.idp.Count("dpop_proof"))
	}
}

// A Go handler behind RequireSession can call a DPoP API itself: the session says its
// token is bound and makes the proof.
func TestSessionDPoPProof(t *testing.T) {
	api := newDPoPAPI(t)
	e := newEnvKnobs(t, func(k *idptest.Knobs) { k.DPoP = true }, func(c *gatehouse.Config) { c.Provider.DPoP = true })
	api.p = e.idp
	h := e.gw.RequireSession(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := gatehouse.SessionFrom(r.Context())
		tok, err := s.AccessToken(r.Context())
		if err != nil || s.TokenType() != "DPoP" {
			http.Error(w, "no bound token", http.StatusInternalServerError)
			return
		}
		u, _ := url.Parse(api.srv.URL + "/orders")
		proof, err := s.DPoPProof("GET", u, tok)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		req, _ := http.NewRequest("GET", u.String(), nil)
		req.Header.Set("Authorization", "DPoP "+tok)
		req.Header.Set("DPoP", proof)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
	}))
	b := e.browser()
	b.login()
	req := httptest.NewRequest("GET", e.url+"/app/pay", nil)
	req.Header.Set("Cookie", "__Host-gatehouse="+b.cookie("__Host-gatehouse").Value)
	req.Header.Set("X-CSRF", "1")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if verdict, _ := api.last(); rec.Code != 200 || verdict != "ok" {
		t.Fatalf("handler answered %d; the API saw %q", rec.Code, verdict)
	}
}
