package gatehouse_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

const (
	tenantA = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
	tenantB = "f0e1d2c3-b4a5-4968-8776-655443322110"
	tenantC = "0c0c0c0c-1d1d-4e2e-8f3f-404040404040"
)

// tenantEnv is a gateway in front of the fake as a multi-tenant provider (issuer
// <fake>/{tenantid}/v2.0, like Entra ID's common endpoint), signing users of tenantA in.
func tenantEnv(t *testing.T, mutate ...func(*gatehouse.Config)) *env {
	t.Helper()
	return newEnvKnobs(t, func(k *idptest.Knobs) { k.Tenant = tenantA }, append([]func(*gatehouse.Config){func(c *gatehouse.Config) {
		c.Provider.Issuer += "/{tenantid}/v2.0"
	}}, mutate...)...)
}

// tenant makes the fake sign the next users in as members of tid, with provider session sid.
func (e *env) tenant(tid, sid string) {
	e.idp.Set(func(k *idptest.Knobs) { k.Tenant, k.SID = tid, sid })
}

// callbackFails runs a login to the callback and checks that it ends on an error page.
func callbackFails(t *testing.T, b *browser, status int, reason string) {
	t.Helper()
	r := b.get(b.startLogin("/app"), "Sec-Fetch-Mode", "navigate")
	wantStatus(t, r, status)
	if !strings.Contains(r.body, reason) && !strings.Contains(b.e.audit.String(), `"reason":"`+reason+`"`) {
		t.Fatalf("callback %d without reason %q: %s", r.StatusCode, reason, r.body)
	}
	if b.cookie("__Host-gatehouse") != nil {
		t.Fatal("a refused login set a session cookie")
	}
}

func TestTenantLogin(t *testing.T) {
	e := tenantEnv(t)
	b := e.browser()
	b.login()
	r := b.api("GET", "/bff/user")
	wantStatus(t, r, http.StatusOK)
	if u, _ := decode(t, r)["claims"].(map[string]any); u["tid"] != tenantA || u["sub"] != "alice" {
		t.Fatalf("/bff/user = %v", u)
	}
	if e.idp.LastHeader("/common/v2.0/.well-known/openid-configuration", "Accept") == "" {
		t.Fatal("discovery did not use the common endpoint")
	}

	for _, tc := range []struct {
		name   string
		mutate func(map[string]any)
	}{
		{"iss of another tenant than tid", func(c map[string]any) { c["tid"] = tenantB }},
		{"tid not a GUID", func(c map[string]any) {
			c["tid"] = "contoso"
			c["iss"] = strings.Replace(c["iss"].(string), tenantA, "contoso", 1)
		}},
		{"no tid", func(c map[string]any) { delete(c, "tid") }},
		{"iss is the template", func(c map[string]any) {
			c["iss"] = strings.Replace(c["iss"].(string), tenantA, "{tenantid}", 1)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.idp.Set(func(k *idptest.Knobs) { k.IDTokenMutate = tc.mutate })
			defer e.idp.Set(func(k *idptest.Knobs) { k.IDTokenMutate = nil })
			callbackFails(t, e.browser(), http.StatusBadRequest, "token_exchange")
		})
	}
}

func TestTenantIssuerParam(t *testing.T) {
	e := tenantEnv(t, func(c *gatehouse.Config) { c.Provider.AllowedTenants = []string{tenantA, tenantB} })
	for _, tc := range []struct {
		name   string
		iss    func() string
		status int
		reason string
	}{
		{"the template itself", e.idp.IssuerTemplate, http.StatusBadRequest, "login_issuer_mismatch"},
		{"common", func() string { return e.idp.TenantIssuer("common") }, http.StatusBadRequest, "login_issuer_mismatch"},
		{"another provider", func() string { return "https://evil.example/" + tenantA + "/v2.0" }, http.StatusBadRequest, "login_issuer_mismatch"},
		{"a tenant not allowed", func() string { return e.idp.TenantIssuer(tenantC) }, http.StatusForbidden, "tenant_not_allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.idp.Set(func(k *idptest.Knobs) { k.IssParam = tc.iss() })
			defer e.idp.Set(func(k *idptest.Knobs) { k.IssParam = "" })
			callbackFails(t, e.browser(), tc.status, tc.reason)
		})
	}
	// An allowed tenant's iss with that tenant's ID token signs in.
	e.tenant(tenantB, "")
	e.browser().login()
}

func TestTenantNotAllowed(t *testing.T) {
	// A provider that does not advertise the iss parameter, so that a login without it
	// reaches the ID token's check.
	e := newEnvKnobs(t, func(k *idptest.Knobs) { k.Tenant, k.AdvertiseIss = tenantA, false }, func(c *gatehouse.Config) {
		c.Provider.Issuer += "/{tenantid}/v2.0"
		c.Provider.AllowedTenants = []string{tenantA}
	})
	e.browser().login()
	e.tenant(tenantB, "")
	// The iss parameter already names tenant B.
	callbackFails(t, e.browser(), http.StatusForbidden, "tenant_not_allowed")
	// Without it, the ID token does.
	e.idp.Set(func(k *idptest.Knobs) { k.IssParam = "omit" })
	b := e.browser()
	r := b.get(b.startLogin("/app"), "Sec-Fetch-Mode", "navigate")
	wantStatus(t, r, http.StatusForbidden)
	if !strings.Contains(e.audit.String(), `"reason":"tenant_not_allowed"`) {
		t.Fatalf("the audit log has no tenant_not_allowed: %s", e.audit.String())
	}
	if b.cookie("__Host-gatehouse") != nil {
		t.Fatal("a refused tenant got a session")
	}
}

// TestTenantBackchannel: a logout token from tenant A ends only tenant A's sessions with
// that sid, even when tenant B has a session with the same sub and sid.
func TestTenantBackchannel(t *testing.T) {
	e := tenantEnv(t, func(c *gatehouse.Config) { c.Provider.AllowedTenants = []string{tenantA, tenantB} })
	alive := func(b *browser) bool { return b.api("GET", "/bff/user").StatusCode == http.StatusOK }
	a, b := e.browser(), e.browser()
	e.tenant(tenantA, "shared-sid")
	a.login()
	e.tenant(tenantB, "shared-sid")
	b.login()

	// /bff/sessions lists one's own tenant's sessions only (same sub in both tenants).
	for _, x := range []*browser{a, b} {
		if list := decode(t, x.api("GET", "/bff/sessions"))["sessions"].([]any); len(list) != 1 {
			t.Fatalf("/bff/sessions lists %d sessions, want 1 (its own tenant's)", len(list))
		}
	}

	// A tenant that is not allowed, and a token whose iss is not its tid's: refused.
	e.tenant(tenantC, "")
	wantJSONError(t, e.backchannel(e.idp.LogoutToken("alice", "shared-sid", "logout+jwt", nil)), http.StatusBadRequest, "invalid_request", "")
	e.tenant(tenantA, "")
	wantJSONError(t, e.backchannel(e.idp.LogoutToken("alice", "shared-sid", "logout+jwt", func(c map[string]any) { c["tid"] = tenantB })),
		http.StatusBadRequest, "invalid_request", "")
	if !alive(a) || !alive(b) {
		t.Fatal("a refused logout token ended a session")
	}

	wantStatus(t, e.backchannel(e.idp.LogoutToken("alice", "shared-sid", "logout+jwt", nil)), http.StatusOK)
	if alive(a) {
		t.Fatal("tenant A's logout token left tenant A's session alive")
	}
	if !alive(b) {
		t.Fatal("tenant A's logout token ended tenant B's session with the same sid")
	}
	// By sub only: also per tenant.
	c := e.browser()
	e.tenant(tenantA, "another-sid")
	c.login()
	e.tenant(tenantB, "")
	wantStatus(t, e.backchannel(e.idp.LogoutToken("alice", "", "logout+jwt", nil)), http.StatusOK)
	if alive(b) {
		t.Fatal("tenant B's logout token by sub left tenant B's session alive")
	}
	if !alive(c) {
		t.Fatal("tenant B's logout token by sub ended tenant A's session")
	}
}

func TestTenantRefresh(t *testing.T) {
	up := newUpstream(t)
	e := newEnvKnobs(t, func(k *idptest.Knobs) {
		k.Tenant, k.IDTokenOnRefresh, k.AccessTokenTTL = tenantA, true, 5*time.Minute
	}, func(c *gatehouse.Config) {
		c.Provider.Issuer += "/{tenantid}/v2.0"
		c.Routes = []gatehouse.Route{{Path: "/api/", Upstream: up.srv.URL}}
	})
	b := e.browser()
	b.login()
	e.clock.Advance(5 * time.Minute)
	wantStatus(t, b.api("GET", "/api/a"), http.StatusOK)
	if e.idp.Count("refresh_token") != 1 {
		t.Fatalf("refreshes = %d, want 1", e.idp.Count("refresh_token"))
	}
	// The grant now answers with another tenant's ID token: not this session's.
	e.tenant(tenantB, "")
	e.clock.Advance(5 * time.Minute)
	r := b.api("GET", "/api/a")
	wantStatus(t, r, http.StatusUnauthorized)
	if e.idp.Count("refresh_token") != 2 {
		t.Fatalf("refreshes = %d, want 2", e.idp.Count("refresh_token"))
	}
}

// TestGroupOverage: an Entra user in more groups than fit in a token gets a
// _claim_names pointer instead; with distributed_claims: [groups] the gateway reads the
// groups from the source, and routes' rules see them.
func TestGroupOverage(t *testing.T) {
	up := newUpstream(t)
	routes := func(c *gatehouse.Config) {
		c.Provider.Issuer += "/{tenantid}/v2.0"
		c.Routes = []gatehouse.Route{{Path: "/admin/", Upstream: up.srv.URL,
			Require: []gatehouse.Rule{{Claim: "groups", Contains: []string{"g-admins"}}}}}
	}
	knobs := func(k *idptest.Knobs) { k.Tenant, k.DistributedGroups = tenantA, []string{"g-staff", "g-admins"} }

	e := newEnvKnobs(t, knobs, routes, func(c *gatehouse.Config) { c.Provider.DistributedClaims = []string{"groups"} })
	b := e.browser()
	b.login()
	r := b.api("GET", "/bff/user")
	if strings.Contains(r.body, "_claim_") || !strings.Contains(r.body, "g-admins") {
		t.Fatalf("/bff/user = %s", r.body)
	}
	wantStatus(t, b.api("GET", "/admin/x"), http.StatusOK)
	if e.idp.Count("groups") != 1 {
		t.Fatalf("the groups source was asked %d times", e.idp.Count("groups"))
	}
	// A refresh that re-reads the claims (claims_max_age) reads the source again: a user
	// removed from the group loses the route.
	e.idp.Set(func(k *idptest.Knobs) { k.DistributedGroups = []string{"g-staff"} })
	e.clock.Advance(16 * time.Minute)
	wantStatus(t, b.api("GET", "/admin/x"), http.StatusForbidden)
	if e.idp.Count("refresh_token") != 1 || e.idp.Count("groups") != 2 {
		t.Fatalf("refreshes %d, groups source asked %d times; want 1, 2", e.idp.Count("refresh_token"), e.idp.Count("groups"))
	}

	// Without distributed_claims the pointer is dropped: no groups, no access.
	e = newEnvKnobs(t, knobs, routes)
	b = e.browser()
	b.login()
	if r := b.api("GET", "/bff/user"); strings.Contains(r.body, "_claim_") || strings.Contains(r.body, "g-admins") {
		t.Fatalf("/bff/user = %s", r.body)
	}
	wantStatus(t, b.api("GET", "/admin/x"), http.StatusForbidden)
	if e.idp.Count("groups") != 0 {
		t.Fatal("the groups source was asked without distributed_claims")
	}
}
