package gatehouse_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

// BenchmarkProxyDPoP is the cost of a DPoP route (RFC 9449): each request signs a fresh
// proof with the session's key (ES256). The bearer case is the same gateway and route
// with a provider that issues bearer tokens, in the same run.
func BenchmarkProxyDPoP(b *testing.B) {
	const upstreamURL = "http://upstream.invalid"
	dpopRoute := func(c *gatehouse.Config) {
		c.Provider.DPoP = true
		c.Routes[0].DPoP = true
	}
	bearer, bearerCookie, bearerPublic := benchGatewayKnobs(b, staticUpstream{}, upstreamURL, nil, dpopRoute)
	bound, boundCookie, boundPublic := benchGatewayKnobs(b, staticUpstream{}, upstreamURL, func(k *idptest.Knobs) { k.DPoP = true }, dpopRoute)
	run := func(b *testing.B, h http.Handler, target, cookie string) {
		b.ReportAllocs()
		for b.Loop() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, apiRequest(target, cookie))
			if rec.Code != 200 {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
		}
	}
	b.Run("token=bearer", func(b *testing.B) { run(b, bearer, bearerPublic+"/api/orders", bearerCookie) })
	b.Run("token=dpop", func(b *testing.B) { run(b, bound, boundPublic+"/api/orders", boundCookie) })
}
