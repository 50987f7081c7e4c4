package gatehouse_test

import (
	"strings"
	"testing"

	gatehouse "github.com/gatehouse-bff/gatehouse"
)

func TestDiagnostics(t *testing.T) {
	e := newEnv(t, func(c *gatehouse.Config) { c.InsecureDiagnostics = true })
	b := e.browser()
	b.login()
	r := b.api("GET", "/bff/diagnostics")
	wantStatus(t, r, 200)
	d := decode(t, r)
	s := d["session"].(map[string]any)
	if s["subject"] != "alice" || s["refresh_token"] != true {
		t.Fatalf("session = %v", s)
	}
	if d["provider"].(map[string]any)["metadata"] == nil {
		t.Fatalf("provider = %v", d["provider"])
	}
	for _, secret := range append(e.idp.AccessTokens(), e.idp.ClientSecret, b.cookie("__Host-gatehouse").Value) {
		if strings.Contains(r.body, secret) {
			t.Fatalf("diagnostics show a secret (%.8s…)", secret)
		}
	}
	if !strings.Contains(e.logs.String(), "insecure_diagnostics") {
		t.Fatal("no startup warning")
	}

	// Off by default, and refused on a public origin.
	off := newEnv(t)
	wantStatus(t, off.browser().api("GET", "/bff/diagnostics"), 404)
	err := gatehouse.Config{PublicURL: "https://app.example.com", InsecureDiagnostics: true,
		Provider: gatehouse.ProviderConfig{Issuer: "https://id.example.com", ClientID: "c", ClientSecret: "s"}}.Validate()
	if err == nil || !strings.Contains(err.Error(), "insecure_diagnostics: is only allowed when public_url is a loopback") {
		t.Fatalf("Validate = %v", err)
	}
}
