package gatehouse_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

// An upstream's RFC 9470 challenge reaches the SPA as 401 step_up_required with what
// to ask for and a login_url that asks for it and comes back to the calling page; any
// other 401 is passed on as the upstream wrote it.
func TestUpstreamStepUpChallenge(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/pay":
			w.Header().Set("WWW-Authenticate", `Bearer realm="pay", error="insufficient_user_authentication", error_description="A \"strong\" login is required", acr_values="gold platinum", max_age=300`)
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte("the upstream's own text, with a secret-looking value"))
		case "/api/other":
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte("upstream body"))
		default:
			w.Write([]byte("ok"))
		}
	}))
	defer api.Close()
	e := newEnv(t, func(c *gatehouse.Config) {
		c.Routes = []gatehouse.Route{{Path: "/api/", Upstream: api.URL}}
	})
	b := e.browser()
	b.login()

	r := b.do("GET", "/api/pay", nil, "X-CSRF", "1", "Accept", "application/json", "Sec-Fetch-Site", "same-origin",
		"Referer", e.url+"/checkout?cart=3")
	wantJSONError(t, r, http.StatusUnauthorized, "step_up_required", "insufficient_user_authentication")
	m := decode(t, r)
	if m["acr_values"] != "gold platinum" || m["max_age"] != float64(300) {
		t.Fatalf("step-up body %v", m)
	}
	login, _ := url.Parse(m["login_url"].(string))
	if q := login.Query(); login.Path != "/bff/login" || q.Get("acr_values") != "gold platinum" || q.Get("max_age") != "300" || q.Get("returnUrl") != "/checkout?cart=3" {
		t.Fatalf("login_url %s", login)
	}
	if strings.Contains(r.body, "secret-looking") || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("the upstream's body or type came through: %s %s", r.Header.Get("Content-Type"), r.body)
	}
	if got := r.Header.Get("WWW-Authenticate"); got != `Bearer error="insufficient_user_authentication", acr_values="gold platinum", max_age=300` {
		t.Fatalf("WWW-Authenticate %q: want the challenge rebuilt without the upstream's text", got)
	}
	// A Referer from another site is no return address.
	r = b.do("GET", "/api/pay", nil, "X-CSRF", "1", "Accept", "application/json", "Referer", "https://evil.example/x")
	if login := decode(t, r)["login_url"].(string); strings.Contains(login, "returnUrl") {
		t.Fatalf("login_url %s returns to another site's page", login)
	}

	r = b.api("GET", "/api/other")
	if r.StatusCode != 401 || r.body != "upstream body" || r.Header.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
		t.Fatalf("another 401 was changed: %d %q %v", r.StatusCode, r.body, r.Header)
	}
}

// The step-up login asks the provider for acr_values and max_age (whatever
// allowed_auth_params says), and the callback refuses a login that does not deliver
// them: no session is created and the old one stays.
func TestStepUpLogin(t *testing.T) {
	e := newEnvKnobs(t, func(k *idptest.Knobs) { k.Claims = map[string]any{"acr": "silver"} })
	b := e.browser()
	b.login()
	old := b.cookie("__Host-gatehouse").Value

	start := func(query string) string {
		t.Helper()
		r := b.get("/bff/login?" + query)
		wantStatus(t, r, http.StatusFound)
		auth, _ := url.Parse(r.Header.Get("Location"))
		if q := auth.Query(); q.Get("acr_values") != "gold" || q.Get("max_age") != "60" {
			t.Fatalf("authorization request %s does not ask for the step-up", auth)
		}
		r = b.get(auth.String())
		return r.Header.Get("Location")
	}
	cb := b.get(start("acr_values=gold&max_age=60&returnUrl=/pay"), "Sec-Fetch-Mode", "navigate")
	if cb.StatusCode != http.StatusForbidden || !strings.Contains(cb.body, "step_up_failed (acr)") {
		t.Fatalf("a silver login for a gold step-up: %d %s", cb.StatusCode, cb.body)
	}
	if c := b.cookie("__Host-gatehouse"); c == nil || c.Value != old {
		t.Fatal("the refused step-up replaced the session")
	}
	if !strings.Contains(e.audit.String(), `"reason":"step_up_acr"`) {
		t.Fatalf("no login_failed step_up_acr audit event:\n%s", e.audit.String())
	}
	wantStatus(t, b.api("GET", "/bff/user"), http.StatusOK)

	e.idp.Set(func(k *idptest.Knobs) { k.Claims = map[string]any{"acr": "gold"} })
	cb = b.get(start("acr_values=gold&max_age=60&returnUrl=/pay"), "Sec-Fetch-Mode", "navigate")
	wantStatus(t, cb, http.StatusOK)
	u := decode(t, b.api("GET", "/bff/user"))
	if u["acr"] != "gold" || u["auth_time"] == nil {
		t.Fatalf("/bff/user after the step-up: %v", u)
	}

	// A login that is too old for max_age is refused too (the provider's auth_time is
	// from before the step-up asked).
	e.idp.Set(func(k *idptest.Knobs) {
		k.IDTokenMutate = func(c map[string]any) { c["auth_time"] = time.Now().Add(-10 * time.Minute).Unix() }
	})
	cb = b.get(start("acr_values=gold&max_age=60"), "Sec-Fetch-Mode", "navigate")
	if cb.StatusCode != http.StatusForbidden || !strings.Contains(cb.body, "step_up_failed (max_age)") {
		t.Fatalf("an old login for max_age=60: %d %s", cb.StatusCode, cb.body)
	}

	// max_age=0 asks for a sign-in during this login: one a moment after /bff/login is
	// accepted, even though it is no longer 0 seconds old when the callback checks it.
	e.idp.Set(func(k *idptest.Knobs) { k.IDTokenMutate = nil })
	r := b.get("/bff/login?max_age=0")
	r = b.get(r.Header.Get("Location"))
	e.clock.Advance(3 * time.Second) // the user types a password
	cb = b.get(r.Header.Get("Location"), "Sec-Fetch-Mode", "navigate")
	wantStatus(t, cb, http.StatusOK)

	for _, bad := range []string{"acr_values=" + url.QueryEscape(`go"ld`), "max_age=-1", "max_age=soon", "acr_values=a1+a2+a3+a4+a5+a6+a7+a8+a9+a10+a11"} {
		r := b.do("GET", "/bff/login?"+bad, nil, "Accept", "application/json")
		wantJSONError(t, r, http.StatusBadRequest, "bad_request", "login_invalid_step_up")
	}
}

// A route's acr and max_age rules ask for the step-up themselves, before a token is
// sent anywhere.
func TestRouteStepUpRules(t *testing.T) {
	up := newUpstream(t)
	e := newEnvKnobs(t, func(k *idptest.Knobs) { k.Claims = map[string]any{"acr": "silver"} }, func(c *gatehouse.Config) {
		c.Routes = []gatehouse.Route{
			{Path: "/pay/", Upstream: up.srv.URL, Require: []gatehouse.Rule{{ACR: []string{"gold"}}, {MaxAge: 5 * time.Minute}}},
			{Path: "/api/", Upstream: up.srv.URL},
		}
	})
	b := e.browser()
	b.login()
	wantStatus(t, b.api("GET", "/api/x"), http.StatusOK)
	r := b.api("GET", "/pay/now")
	wantJSONError(t, r, http.StatusUnauthorized, "step_up_required", "insufficient_user_authentication")
	if m := decode(t, r); m["acr_values"] != "gold" || m["max_age"] != float64(300) {
		t.Fatalf("step-up body %v", m)
	}
	if got := r.Header.Get("WWW-Authenticate"); got != `Bearer error="insufficient_user_authentication", acr_values="gold", max_age=300` {
		t.Fatalf("WWW-Authenticate %q", got)
	}
	if n := up.count(); n != 1 {
		t.Fatalf("%d requests reached the upstream, want 1 (the /api/ one)", n)
	}
	if !strings.Contains(e.audit.String(), `"event":"step_up_required"`) {
		t.Fatalf("no step_up_required audit event:\n%s", e.audit.String())
	}

	e.idp.Set(func(k *idptest.Knobs) { k.Claims = map[string]any{"acr": "gold"} })
	b.login()
	wantStatus(t, b.api("GET", "/pay/now"), http.StatusOK)
	// Time passes: the login is now older than max_age.
	e.clock.Advance(6 * time.Minute)
	wantJSONError(t, b.api("GET", "/pay/now"), http.StatusUnauthorized, "step_up_required", "")
}

func TestStepUpRuleConfig(t *testing.T) {
	for _, tc := range []struct {
		rule gatehouse.Rule
		want string
	}{
		{gatehouse.Rule{}, "needs claim (with contains or any_of), acr or max_age"},
		{gatehouse.Rule{Claim: "groups", Contains: []string{"a"}, ACR: []string{"gold"}}, "is one rule"},
		{gatehouse.Rule{ACR: []string{"gold", "has space"}}, "require[0].acr"},
		{gatehouse.Rule{MaxAge: time.Millisecond}, "require[0].max_age"},
		{gatehouse.Rule{Contains: []string{"x"}}, "require[0].claim"},
	} {
		cfg := gatehouse.Config{PublicURL: "http://127.0.0.1:1", Provider: gatehouse.ProviderConfig{Issuer: "http://127.0.0.1:2", ClientID: "c", ClientSecret: "s"},
			Routes: []gatehouse.Route{{Path: "/api/", Upstream: "http://127.0.0.1:3", Require: []gatehouse.Rule{tc.rule}}}}
		if _, err := gatehouse.New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("rule %+v: %v, want %q", tc.rule, err, tc.want)
		}
	}
}
