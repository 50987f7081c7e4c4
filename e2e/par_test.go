package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Against oidc-provider with require_pushed_authorization_requests, a login works only
// if Gatehouse pushes the request (RFC 9126): the browser's redirect then carries
// client_id and request_uri alone. provider.par: never gives way to a provider that
// requires PAR.
func TestE2ELoginThroughPushedAuthorizationRequest(t *testing.T) {
	for _, mode := range []string{"auto", "never"} {
		t.Run(mode, func(t *testing.T) {
			s := startStack(t, stackOpts{par: "required", providerYAML: "  par: " + mode + "\n"})
			noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := noFollow.Get(s.gw.URL + "/bff/login")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			auth, err := url.Parse(resp.Header.Get("Location"))
			if err != nil || resp.StatusCode != http.StatusFound || !strings.HasPrefix(auth.String(), s.idp.Issuer()) {
				t.Fatalf("/bff/login = %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
			}
			if q := auth.Query(); len(q) != 2 || q.Get("client_id") != "bff" || !strings.HasPrefix(q.Get("request_uri"), "urn:ietf:params:oauth:request_uri:") {
				t.Fatalf("the browser is sent to %s: want client_id and request_uri only", auth)
			}
			// What the browser adds to the URL changes nothing: the provider uses the pushed
			// request (RFC 9126 §4), so a redirect_uri slipped in does not take the code away.
			tampered := auth.String() + "&redirect_uri=" + url.QueryEscape("https://evil.example/cb") + "&prompt=none"
			resp, err = noFollow.Get(tampered)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if loc := resp.Header.Get("Location"); strings.Contains(loc, "evil.example") {
				t.Fatalf("the provider followed a redirect_uri added in the browser: %d %s", resp.StatusCode, loc)
			}

			before := s.idp.Stats(t)
			b := newBrowser(t, s.gw.URL)
			expect(t, b.login("alice", "wonderland", "/"), 200)
			if status, u := b.user(); status != 200 || u["claims"].(map[string]any)["sub"] != "alice" {
				t.Fatalf("/bff/user after a pushed login = %d %v", status, u)
			}
			expect(t, b.api("GET", "/api/hello"), 200)
			if after := s.idp.Stats(t); after.PushedRequests != before.PushedRequests+1 {
				t.Fatalf("pushed requests %d → %d, want one more", before.PushedRequests, after.PushedRequests)
			}
		})
	}
}
