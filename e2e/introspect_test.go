package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse-bff/gatehouse/e2e/internal/harness"
)

// probeClient is a second client registered at the provider so that a test can ask the
// provider's introspection endpoint about the gateway's tokens (introspect).
func probeClient() harness.Client {
	return harness.Client{ClientID: "probe", ClientSecret: "probe-secret", GrantTypes: []string{"client_credentials"},
		TokenEndpointAuthMethod: "client_secret_basic", RedirectURIs: []string{"http://127.0.0.1/unused"}, ResponseTypes: []string{}}
}

// introspectAll returns the provider's whole introspection answer for token, asked as
// the probe client.
func introspectAll(t *testing.T, idp *harness.Provider, token string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest("POST", idp.BaseURL()+"/token/introspection", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("probe", "probe-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&m) != nil {
		t.Fatalf("introspection answered %s", resp.Status)
	}
	return m
}

// introspect asks the provider, as the probe client, whether a token is active.
func introspect(t *testing.T, idp *harness.Provider, token string) bool {
	t.Helper()
	return introspectAll(t, idp, token)["active"] == true
}
