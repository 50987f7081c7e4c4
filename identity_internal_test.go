package gatehouse

import (
	"testing"
	"time"
)

// BenchmarkAssertionSign is the cost of one identity assertion alone (claims, JSON,
// signature, compact form), which every request to a route with assertion: true pays.
func BenchmarkAssertionSign(b *testing.B) {
	for _, alg := range []string{"ES256", "EdDSA"} {
		b.Run(alg, func(b *testing.B) {
			var ks assertionKeys
			if err := ks.init(IdentityConfig{Algorithm: alg}); err != nil {
				b.Fatal(err)
			}
			claims := map[string]any{"iss": "https://app.example.com", "aud": "http://grafana:3000", "sub": "alice",
				"iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix(), "jti": "0123456789abcdef0123456789abcdef",
				"email": "alice@example.com", "groups": []any{"staff", "admin"}}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ks.sign(claims); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
