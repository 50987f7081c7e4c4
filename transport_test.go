package gatehouse_test

import (
	"strings"
	"testing"

	"github.com/gatehouse-bff/gatehouse"
)

// TestUpstreamTransportValidated: an unknown upstream_transport, global or a route's, is
// a configuration error naming each field.
func TestUpstreamTransportValidated(t *testing.T) {
	_, err := gatehouse.New(gatehouse.Config{PublicURL: "https://app.example", UpstreamTransportMode: "quick",
		Provider: gatehouse.ProviderConfig{Issuer: "https://idp.example", ClientID: "c", ClientSecret: "s"},
		Routes:   []gatehouse.Route{{Path: "/api/", Upstream: "http://api.internal", Transport: "h3"}}})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`upstream_transport: "quick"`, `routes[0].upstream_transport: "h3"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to name %s", err, want)
		}
	}
}
