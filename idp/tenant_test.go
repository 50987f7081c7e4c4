package idp_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/gatehouse-bff/gatehouse/idp"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

const (
	tenantA = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
	tenantB = "99999999-8888-4777-8666-555555555555"
)

// newTenantClient is a client of the fake as a multi-tenant provider (issuer template),
// signing in users of tenantA.
func newTenantClient(t *testing.T, mutate ...func(*idp.Config)) (*idptest.Provider, *idp.Client) {
	t.Helper()
	p := idptest.New(t)
	p.Set(func(k *idptest.Knobs) { k.Tenant = tenantA })
	c := newClient(t, p, append([]func(*idp.Config){func(c *idp.Config) { c.Issuer = p.IssuerTemplate() }}, mutate...)...)
	return p, c
}

func TestIsTenantID(t *testing.T) {
	for s, want := range map[string]bool{
		tenantA:                                 true,
		"72f988bf-86f1-41af-91ab-2d7cd011db47":  true,
		"72F988BF-86F1-41AF-91AB-2D7CD011DB47":  false, // Entra's tid is lower case
		"72f988bf86f141af91ab2d7cd011db47":      false,
		"72f988bf-86f1-41af-91ab-2d7cd011db4":   false,
		"72f988bf-86f1-41af-91ab-2d7cd011db47/": false,
		"72f988bf-86f1-41af-91ab/2d7cd011db47":  false,
		"72f988bg-86f1-41af-91ab-2d7cd011db47":  false,
		"common":                                false,
		"":                                      false,
	} {
		if got := idp.IsTenantID(s); got != want {
			t.Errorf("IsTenantID(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestCheckIssuerTemplate(t *testing.T) {
	for issuer, ok := range map[string]bool{
		"https://idp.example":                                 true, // not a template
		"https://login.microsoftonline.com/{tenantid}/v2.0":   true,
		"https://login.microsoftonline.com/{tenantid}":        true,
		"https://login.microsoftonline.com/{tenantid}/":       true,
		"https://{tenantid}.example.com/":                     false,
		"https://login.example.com/t-{tenantid}/v2.0":         false,
		"https://login.example.com/{tenantid}x/v2.0":          false,
		"https://login.example.com/{tenantid}/{tenantid}":     false,
		"https://login.example.com/v2.0?tenant={tenantid}":    false,
		"https://login.example.com/v2.0#{tenantid}":           false,
		"https://login.microsoftonline.com:443/{tenantid}/v2": true,
	} {
		err := idp.CheckIssuerTemplate(issuer)
		if (err == nil) != ok {
			t.Errorf("CheckIssuerTemplate(%q) = %v, want ok %v", issuer, err, ok)
		}
	}
	if _, err := idp.New(idp.Config{Issuer: "https://{tenantid}.example.com/", ClientID: "c", ClientSecret: "s"}); err == nil {
		t.Error("New accepted {tenantid} in the host")
	}
	_, err := idp.New(idp.Config{Issuer: "https://idp.example/{tenantid}/v2.0", ClientID: "c", ClientSecret: "s", AllowedTenants: []string{"Contoso"}})
	if err == nil || !strings.Contains(err.Error(), "Contoso") {
		t.Errorf("New with a non-GUID allowed tenant: %v", err)
	}
	_, err = idp.New(idp.Config{Issuer: "https://idp.example", ClientID: "c", ClientSecret: "s", AllowedTenants: []string{tenantA}})
	if err == nil {
		t.Error("New accepted allowed tenants without a template issuer")
	}
}

func TestIssuerMatches(t *testing.T) {
	plain, err := idp.New(idp.Config{Issuer: "https://idp.example/", ClientID: "c", ClientSecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := idp.New(idp.Config{Issuer: "https://login.example/{tenantid}/v2.0", ClientID: "c", ClientSecret: "s",
		AllowedTenants: []string{tenantA}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		c    *idp.Client
		iss  string
		want bool
	}{
		{"plain: exact", plain, "https://idp.example/", true},
		{"plain: no trailing slash", plain, "https://idp.example", false},
		{"plain: another", plain, "https://evil.example/", false},
		{"template: a tenant", tmpl, "https://login.example/" + tenantA + "/v2.0", true},
		// IssuerMatches names the provider; AllowedTenants applies to new tokens only.
		{"template: another tenant", tmpl, "https://login.example/" + tenantB + "/v2.0", true},
		{"template: the template itself", tmpl, "https://login.example/{tenantid}/v2.0", false},
		{"template: common", tmpl, "https://login.example/common/v2.0", false},
		{"template: missing tenant", tmpl, "https://login.example//v2.0", false},
		{"template: tenant with a slash", tmpl, "https://login.example/" + tenantA + "/x/v2.0", false},
		{"template: upper-case tenant", tmpl, "https://login.example/" + strings.ToUpper(tenantA) + "/v2.0", false},
		{"template: another host", tmpl, "https://evil.example/" + tenantA + "/v2.0", false},
		{"template: another suffix", tmpl, "https://login.example/" + tenantA + "/v2.0/", false},
		{"template: empty", tmpl, "", false},
	} {
		if got := tc.c.IssuerMatches(tc.iss); got != tc.want {
			t.Errorf("%s: IssuerMatches(%q) = %v, want %v", tc.name, tc.iss, got, tc.want)
		}
	}
}

// TestTemplateIDToken checks an ID token's iss against the template filled with its tid.
func TestTemplateIDToken(t *testing.T) {
	for _, tc := range []struct {
		name    string
		allowed []string
		mutate  func(map[string]any)
		want    error
		tenant  bool // also ErrTenantNotAllowed
	}{
		{name: "tenant A", want: nil},
		{name: "tenant A, allowed", allowed: []string{tenantA}, want: nil},
		{name: "tenant A, not allowed", allowed: []string{tenantB}, want: idp.ErrInvalidToken, tenant: true},
		{name: "iss of another tenant than tid", mutate: func(c map[string]any) { c["tid"] = tenantB }, want: idp.ErrInvalidToken},
		{name: "iss is the template", mutate: func(c map[string]any) {
			c["iss"] = strings.Replace(c["iss"].(string), tenantA, "{tenantid}", 1)
		}, want: idp.ErrInvalidToken},
		{name: "no tid", mutate: func(c map[string]any) { delete(c, "tid") }, want: idp.ErrInvalidToken},
		{name: "tid not a GUID", mutate: func(c map[string]any) {
			c["tid"] = "common"
			c["iss"] = strings.Replace(c["iss"].(string), tenantA, "common", 1)
		}, want: idp.ErrInvalidToken},
		{name: "tid with a slash", mutate: func(c map[string]any) {
			c["tid"] = tenantA + "/x"
			c["iss"] = strings.Replace(c["iss"].(string), tenantA, tenantA+"/x", 1)
		}, want: idp.ErrInvalidToken},
		{name: "tid not a string", mutate: func(c map[string]any) { c["tid"] = 42 }, want: idp.ErrInvalidToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, c := newTenantClient(t, func(c *idp.Config) { c.AllowedTenants = tc.allowed })
			p.Set(func(k *idptest.Knobs) { k.IDTokenMutate = tc.mutate })
			_, id, err := login(t, p, c)
			wantErr(t, err, tc.want)
			if tc.tenant != errors.Is(err, idp.ErrTenantNotAllowed) {
				t.Fatalf("error %v: wraps ErrTenantNotAllowed %v, want %v", err, !tc.tenant, tc.tenant)
			}
			if err == nil && id.Issuer != p.TenantIssuer(tenantA) {
				t.Fatalf("Identity.Issuer = %q, want tenant A's %q", id.Issuer, p.TenantIssuer(tenantA))
			}
		})
	}
	t.Run("discovery from common", func(t *testing.T) {
		p, c := newTenantClient(t)
		if _, _, err := login(t, p, c); err != nil {
			t.Fatal(err)
		}
		if p.LastHeader("/common/v2.0/.well-known/openid-configuration", "Accept") == "" {
			t.Fatal("the metadata was not read from the common endpoint")
		}
	})
	t.Run("discovery names another issuer than the template", func(t *testing.T) {
		p := idptest.New(t) // not multi-tenant: publishes its plain issuer
		c := newClient(t, p, func(c *idp.Config) { c.Issuer = p.IssuerTemplate() })
		wantErr(t, c.Discover(t.Context()), idp.ErrRefused)
	})
	t.Run("plain issuer unchanged", func(t *testing.T) {
		p := idptest.New(t)
		c := newClient(t, p)
		p.Set(func(k *idptest.Knobs) {
			k.IDTokenMutate = func(c map[string]any) { c["iss"], c["tid"] = p.TenantIssuer(tenantA), tenantA }
		})
		_, _, err := login(t, p, c)
		wantErr(t, err, idp.ErrInvalidToken)
		p.Set(func(k *idptest.Knobs) { k.IDTokenMutate = func(c map[string]any) { c["tid"] = "not checked" } })
		if _, id, err := login(t, p, c); err != nil || id.Issuer != p.Issuer {
			t.Fatalf("login = %+v, %v", id, err)
		}
	})
}

func TestTemplateIssuerParam(t *testing.T) {
	for _, tc := range []struct {
		name    string
		allowed []string
		iss     string
		want    error
	}{
		{"tenant A", nil, "A", nil},
		{"tenant B", nil, "B", nil},
		{"tenant A, allowed", []string{tenantA}, "A", nil},
		{"tenant B, not allowed", []string{tenantA}, "B", idp.ErrRefused},
		{"the template", nil, "template", idp.ErrRefused},
		{"common", nil, "common", idp.ErrRefused},
		{"another host", nil, "https://evil.example/" + tenantA + "/v2.0", idp.ErrRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, c := newTenantClient(t, func(c *idp.Config) { c.AllowedTenants = tc.allowed })
			iss := map[string]string{"A": p.TenantIssuer(tenantA), "B": p.TenantIssuer(tenantB),
				"template": p.IssuerTemplate(), "common": p.TenantIssuer("common")}[tc.iss]
			if iss == "" {
				iss = tc.iss
			}
			err := c.CheckIssuerParam(t.Context(), iss, true)
			wantErr(t, err, tc.want)
			if tc.name == "tenant B, not allowed" && !errors.Is(err, idp.ErrTenantNotAllowed) {
				t.Fatalf("error %v does not wrap ErrTenantNotAllowed", err)
			}
		})
	}
	t.Run("the provider's own response", func(t *testing.T) {
		p, c := newTenantClient(t)
		a := authorize(t, p, c)
		if a.iss != p.TenantIssuer(tenantA) {
			t.Fatalf("the fake sent iss %q", a.iss)
		}
		wantErr(t, c.CheckIssuerParam(t.Context(), a.iss, a.issPresent), nil)
	})
}

func TestTemplateLogoutToken(t *testing.T) {
	for _, tc := range []struct {
		name    string
		allowed []string
		mutate  func(map[string]any)
		want    error
	}{
		{"tenant A", nil, nil, nil},
		{"tenant A, allowed", []string{tenantA}, nil, nil},
		{"tenant A, not allowed", []string{tenantB}, nil, idp.ErrInvalidToken},
		{"iss of another tenant than tid", nil, func(c map[string]any) { c["tid"] = tenantB }, idp.ErrInvalidToken},
		{"no tid", nil, func(c map[string]any) { delete(c, "tid") }, idp.ErrInvalidToken},
		{"tid not a GUID", nil, func(c map[string]any) {
			c["tid"] = "Contoso"
			c["iss"] = strings.Replace(c["iss"].(string), tenantA, "Contoso", 1)
		}, idp.ErrInvalidToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, c := newTenantClient(t, func(c *idp.Config) { c.AllowedTenants = tc.allowed })
			lt, err := c.VerifyLogoutToken(t.Context(), p.LogoutToken("alice", "sid-1", "logout+jwt", tc.mutate))
			wantErr(t, err, tc.want)
			if err == nil && lt.Issuer != p.TenantIssuer(tenantA) {
				t.Fatalf("LogoutToken.Issuer = %q, want %q", lt.Issuer, p.TenantIssuer(tenantA))
			}
		})
	}
	t.Run("plain issuer", func(t *testing.T) {
		p := idptest.New(t)
		c := newClient(t, p)
		lt, err := c.VerifyLogoutToken(t.Context(), p.LogoutToken("alice", "sid-1", "logout+jwt", nil))
		if err != nil || lt.Issuer != p.Issuer {
			t.Fatalf("VerifyLogoutToken = %+v, %v", lt, err)
		}
	})
}

func TestTemplateRefresh(t *testing.T) {
	p, c := newTenantClient(t)
	p.Set(func(k *idptest.Knobs) { k.IDTokenOnRefresh = true })
	tokens, id, err := login(t, p, c)
	if err != nil {
		t.Fatal(err)
	}
	opts := idp.RefreshOptions{Issuer: id.Issuer}
	if _, err := c.Refresh(t.Context(), tokens.RefreshToken, id.Subject, opts); err != nil {
		t.Fatalf("refresh with tenant A's ID token: %v", err)
	}
	// The same user's grant now answers with another tenant's (valid) ID token.
	p.Set(func(k *idptest.Knobs) { k.Tenant = tenantB })
	_, err = c.Refresh(t.Context(), tokens.RefreshToken, id.Subject, opts)
	wantErr(t, err, idp.ErrInvalidToken)
	// Without the session's issuer, tenant B's token is a valid token of the provider.
	if _, err := c.Refresh(t.Context(), tokens.RefreshToken, id.Subject, idp.RefreshOptions{}); err != nil {
		t.Fatalf("refresh without a session issuer: %v", err)
	}
}
