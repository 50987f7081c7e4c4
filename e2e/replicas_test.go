package e2e

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/e2e/internal/harness"
	"github.com/gatehouse-bff/gatehouse/session/redisstore/redistest"
)

// balancer spreads requests round-robin over replicas, as a load balancer would, and
// counts what each served.
type balancer struct {
	URL      string
	backends []*url.URL
	next     atomic.Uint64
	served   []atomic.Int64
}

func startBalancer(t *testing.T, ln net.Listener, replicas []*gatehouseProc) *balancer {
	lb := &balancer{URL: "http://" + ln.Addr().String(), served: make([]atomic.Int64, len(replicas))}
	for _, r := range replicas {
		u, _ := url.Parse(r.URL)
		lb.backends = append(lb.backends, u)
	}
	transport := &http.Transport{MaxIdleConnsPerHost: 512}
	proxy := &httputil.ReverseProxy{
		Transport: transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			i := int(lb.next.Add(1) % uint64(len(lb.backends)))
			lb.served[i].Add(1)
			pr.SetURL(lb.backends[i])
			pr.Out.Host = pr.In.Host // the replicas see the public host
			pr.SetXForwarded()
		},
	}
	srv := &http.Server{Handler: proxy}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return lb
}

func TestE2EThreeReplicasOnRedis(t *testing.T) {
	redis := redistest.Start(t, redistest.Persistent())
	lbListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	public := "http://" + lbListener.Addr().String()
	client := harness.BFFClient(public)
	idp := harness.StartProvider(t, harness.ProviderConfig{AccessTokenTTL: 5 * time.Second, Clients: []harness.Client{client}})
	api := startUpstream(t)

	var replicas []*gatehouseProc
	for range 3 {
		port := freePort(t)
		replicas = append(replicas, startGatehouse(t, port, fmt.Sprintf(`
listen: 127.0.0.1:%d
public_url: %s
trusted_proxies: [127.0.0.1]
provider:
  issuer: %s
  client_id: bff
  client_secret: s3cret
  scopes: [openid, profile, email, offline_access]
  auth_params: {prompt: consent}
  refresh_lead: 2s
session:
  store: %s
  redis: {timeout: 1s, key_prefix: "e2e:"}
admin:
  listen: {{ADMIN}}
  token: e2e-admin-token
routes:
  - path: /api/
    upstream: %s
`, port, public, idp.Issuer(), redis.URL, api.URL)))
	}
	lb := startBalancer(t, lbListener, replicas)
	s := &stack{idp: idp, api: api, gw: replicas[0]}

	b := newBrowser(t, lb.URL)
	expect(t, b.login("alice", "wonderland", "/"), 200) // /bff/login and /bff/callback land on different replicas
	for range 30 {
		expect(t, b.api("GET", "/api/spread"), 200)
	}
	for i := range lb.served {
		if lb.served[i].Load() < 5 {
			t.Fatalf("replica %d served %d requests: the balancer did not spread them", i, lb.served[i].Load())
		}
	}

	// At token expiry, 300 concurrent calls across the three replicas: one refresh at the
	// provider, no failure.
	time.Sleep(3500 * time.Millisecond)
	idp.Reset(t)
	before := len(api.all())
	const n = 300
	var wg sync.WaitGroup
	var failed atomic.Int64
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", lb.URL+"/api/burst", nil)
			req.Header.Set("X-CSRF", "1")
			resp, err := b.c.Do(req)
			if err != nil {
				failed.Add(1)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	refreshes := idp.Stats(t).TokenRequests["refresh_token"]
	if failed.Load() != 0 || refreshes != 1 {
		t.Fatalf("burst across replicas: %d failures, %d refreshes at the provider (want 0 and 1)", failed.Load(), refreshes)
	}
	newest := "Bearer " + latestAccessToken(t, idp)
	for _, h := range api.all()[before:] {
		if h.Get("Authorization") != newest {
			t.Fatal("a replica forwarded a token other than the refreshed one")
		}
	}
	t.Logf("replicas: %d concurrent calls across 3 replicas at expiry → %d refresh at the provider, 0 failures, %v", n, refreshes, elapsed)

	// Logout on one replica: the others answer 401 at once.
	direct := func(i int, method, path string) *response {
		return b.do(method, replicas[i].URL+path, nil, "X-CSRF", "1", "Accept", "application/json")
	}
	expect(t, direct(1, "GET", "/bff/user"), 200)
	expect(t, direct(0, "POST", "/bff/logout"), 200)
	for _, i := range []int{1, 2} {
		// The cookie was cleared in the jar by the logout response: send the old one.
		r := newBrowser(t, replicas[i].URL).do("GET", replicas[i].URL+"/bff/user", nil, "Cookie", "__Host-gatehouse="+lastSessionCookie(t, b))
		if r.Status != 401 || !strings.Contains(r.Body, "session_revoked") {
			t.Fatalf("replica %d right after a logout on replica 0: %d %s", i, r.Status, r.Body)
		}
	}

	// A back-channel logout received by one replica ends the session on all of them.
	b2 := newBrowser(t, lb.URL)
	expect(t, b2.login("bob", "builder", "/"), 200)
	cookie := lastSessionCookie(t, b2)
	for i := range replicas {
		r := newBrowser(t, replicas[i].URL).do("GET", replicas[i].URL+"/bff/user", nil, "Cookie", "__Host-gatehouse="+cookie)
		expect(t, r, 200) // every replica has it cached now
	}
	if _, sent := idp.EndSessions(t, "bob"); sent == 0 {
		t.Fatal("the provider sent no back-channel logout")
	}
	for i := range replicas {
		r := newBrowser(t, replicas[i].URL).do("GET", replicas[i].URL+"/bff/user", nil, "Cookie", "__Host-gatehouse="+cookie)
		if r.Status != 401 {
			t.Fatalf("replica %d still serves a session ended by back-channel logout: %d", i, r.Status)
		}
	}

	// Restart Redis (with persistence): sessions survive. Kill a replica: the cookie still
	// works on a restarted one.
	b3 := newBrowser(t, lb.URL)
	expect(t, b3.login("alice", "wonderland", "/"), 200)
	redis.Restart(t)
	waitReady(t, replicas)
	if status, _ := b3.user(); status != 200 {
		t.Fatalf("after a Redis restart /bff/user = %d", status)
	}
	replicas[2].Kill9()
	replicas[2].Restart()
	for i := range 3 {
		r := newBrowser(t, replicas[i].URL).do("GET", replicas[i].URL+"/bff/user", nil, "Cookie", "__Host-gatehouse="+lastSessionCookie(t, b3))
		expect(t, r, 200)
	}

	// A dump of Redis holds no token and no email.
	var dump strings.Builder
	for k, v := range redis.Dump(t) {
		dump.WriteString(k + "=" + string(v) + "\n")
	}
	assertNoPlaintext(t, s, dump.String(), "the Redis dump")

	// Redis down: fail closed with 503, recover by itself.
	// Until the client notices the dead connection, its server-assisted cache may still
	// answer (correctly: nothing can have changed the record without Redis); once it has,
	// every request fails closed.
	redis.Stop()
	var r *response
	deadline := time.Now().Add(10 * time.Second)
	for {
		before := len(api.all())
		r = b3.api("GET", "/api/x")
		if r.Status == 503 {
			if len(api.all()) != before {
				t.Fatal("a request reached the upstream while the session could not be checked")
			}
			break
		}
		if r.Status != 200 || time.Now().After(deadline) {
			t.Fatalf("with Redis down: %d %s", r.Status, r.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(r.Body, "store_unavailable") {
		t.Fatalf("with Redis down: %d %s", r.Status, r.Body)
	}
	redis.Restart(t)
	waitReady(t, replicas)
	expect(t, b3.api("GET", "/api/x"), 200)
	for _, g := range replicas {
		assertNoSecretLeakIn(t, idp, g.Logs(), b, b2, b3)
	}
}

// waitReady waits until every replica's /readyz is green again.
func waitReady(t *testing.T, replicas []*gatehouseProc) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for _, g := range replicas {
		for {
			resp, err := http.Get(g.AdminURL + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %s not ready again", g.URL)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// lastSessionCookie digs the newest session cookie the gateway set out of what the
// browser received (the jar drops it on logout).
func lastSessionCookie(t *testing.T, b *browser) string {
	t.Helper()
	all := b.rec.all()
	i := strings.LastIndex(all, "Set-Cookie: __Host-gatehouse=")
	for i >= 0 {
		v := all[i+len("Set-Cookie: __Host-gatehouse="):]
		v = v[:strings.IndexAny(v, ";\r\n")]
		if v != "" {
			return v
		}
		i = strings.LastIndex(all[:i], "Set-Cookie: __Host-gatehouse=")
	}
	t.Fatal("no session cookie was ever set")
	return ""
}
