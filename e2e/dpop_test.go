package e2e

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/e2e/internal/harness"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

// dpopResourceServer is an API that accepts only DPoP-bound tokens with a valid proof
// for each request: the proof's htm, htu and ath (idptest.CheckDPoPProof) and its key's
// thumbprint equal to the cnf.jkt that oidc-provider's introspection gives for the token.
type dpopResourceServer struct {
	URL  string
	idp  *harness.Provider
	mu   sync.Mutex
	jkts []string
}

func startDPoPResourceServer(t *testing.T, idp *harness.Provider) *dpopResourceServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rs := &dpopResourceServer{URL: "http://" + ln.Addr().String(), idp: idp}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if scheme != "DPoP" {
			http.Error(w, "DPoP scheme required", http.StatusUnauthorized)
			return
		}
		jkt, _, problem := idptest.CheckDPoPProof(r.Header.Get("DPoP"), r.Method, rs.URL+r.URL.Path, token, "", time.Now())
		if problem != "" {
			http.Error(w, "bad proof: "+problem, http.StatusUnauthorized)
			return
		}
		info := introspectAll(t, idp, token)
		cnf, _ := info["cnf"].(map[string]any)
		if info["active"] != true || cnf["jkt"] != jkt {
			http.Error(w, "token not bound to the proof's key", http.StatusUnauthorized)
			return
		}
		rs.mu.Lock()
		rs.jkts = append(rs.jkts, jkt)
		rs.mu.Unlock()
		w.Write([]byte("ok"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return rs
}

func (rs *dpopResourceServer) keys() []string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]string(nil), rs.jkts...)
}

// provider.dpop against oidc-provider (which requires a DPoP nonce here): the login,
// refreshes and userinfo prove the session's key, the tokens come back bound to it
// (cnf.jkt), a dpop route's upstream gets a valid proof with every request, a refresh
// keeps the binding, a stolen token is useless without the key, and a route without
// dpop does not forward it.
func TestE2EDPoP(t *testing.T) {
	port := freePort(t)
	public := fmt.Sprintf("http://127.0.0.1:%d", port)
	idp := harness.StartProvider(t, harness.ProviderConfig{Clients: []harness.Client{harness.BFFClient(public), probeClient()},
		AccessTokenTTL: 4 * time.Second, DPoPNonce: true})
	rs := startDPoPResourceServer(t, idp)
	plain := startUpstream(t)
	gw := startGatehouse(t, port, fmt.Sprintf(`
listen: 127.0.0.1:%d
public_url: %s
provider:
  issuer: %s
  client_id: bff
  client_secret: s3cret
  dpop: true
  scopes: [openid, profile, email, offline_access]
  auth_params: {prompt: consent}
  refresh_lead: 1s
admin:
  listen: {{ADMIN}}
routes:
  - path: /api/
    upstream: %s
    dpop: true
  - path: /legacy/
    upstream: %s
`, port, public, idp.Issuer(), rs.URL, plain.URL))

	b := newBrowser(t, gw.URL)
	expect(t, b.login("alice", "wonderland", "/"), 200) // userinfo at login took the bound token
	if st := idp.Stats(t); st.TokenResponses["400"] == 0 {
		t.Fatal("the provider never asked for a DPoP nonce: the test does not test the nonce")
	}
	if status, u := b.user(); status != 200 || u["claims"].(map[string]any)["email"] != "alice@example.com" {
		t.Fatalf("/bff/user = %d %v", status, u)
	}
	for range 2 {
		expect(t, b.api("GET", "/api/orders?id=1"), 200)
	}
	time.Sleep(3500 * time.Millisecond) // refresh_lead of the 4 s token
	expect(t, b.api("GET", "/api/orders"), 200)
	keys := rs.keys()
	if len(keys) != 3 || keys[0] != keys[2] {
		t.Fatalf("the resource server saw keys %v: want one key, kept across the refresh", keys)
	}
	if st := idp.Stats(t); st.TokenRequests["refresh_token"] != 1 {
		t.Fatalf("%d refreshes, want 1", st.TokenRequests["refresh_token"])
	}

	// A bound token copied out of the session is refused without its key: as a bearer
	// token at the provider's userinfo, and with a proof of another key here.
	var latest string
	for _, s := range idp.IssuedTokens(t) {
		if s.Kind == "access_token" {
			latest = s.Value
		}
	}
	req, _ := http.NewRequest("GET", idp.BaseURL()+"/me", nil)
	req.Header.Set("Authorization", "Bearer "+latest)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("the stolen token as a bearer token at userinfo: %v %v", resp.StatusCode, err)
	}
	req, _ = http.NewRequest("GET", rs.URL+"/api/orders", nil)
	req.Header.Set("Authorization", "DPoP "+latest)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("the stolen token without a proof at the resource server: %v %v", resp.StatusCode, err)
	}

	r := b.api("GET", "/legacy/x")
	if r.Status != 502 || !strings.Contains(r.Body, "dpop_route") {
		t.Fatalf("a bound token for a route without dpop: %d %s", r.Status, r.Body)
	}
	if len(plain.all()) != 0 {
		t.Fatal("the bound token reached a bearer-only upstream")
	}
}
