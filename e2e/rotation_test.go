package e2e

import (
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/e2e/internal/harness"
	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/session/redisstore/redistest"
)

// TestE2ERollingKeyRotation rotates the server key ring of three replicas sharing one
// Redis, one replica at a time with SIGHUP as an operator would, while logged-in clients
// call /bff/user and a proxied route through a round-robin balancer. Sessions are
// re-sealed all the time (a 10 s idle timeout touches them every second; 4 s access
// tokens are refreshed). The documented procedure — accept the new key everywhere,
// then make it primary everywhere — answers every call with 200 and clears no cookie.
// The old recipe (put a new key first, one replica at a time) then logs users out: the
// test shows that it would have caught it.
func TestE2ERollingKeyRotation(t *testing.T) {
	redis := redistest.Start(t)
	lbListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	public := "http://" + lbListener.Addr().String()
	client := harness.BFFClient(public)
	idp := harness.StartProvider(t, harness.ProviderConfig{AccessTokenTTL: 4 * time.Second, Clients: []harness.Client{client}})
	api := startUpstream(t)

	key := func() string { return base64.StdEncoding.EncodeToString(session.NewRandomKey()) }
	oldKey, newKey := key(), key()
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
  redis: {timeout: 2s, key_prefix: "rot:"}
  idle_timeout: 10s
  keys: [%s]
  accept_keys: []
admin:
  listen: {{ADMIN}}
routes:
  - path: /api/
    upstream: %s
    token: user
`, port, public, idp.Issuer(), redis.URL, oldKey, api.URL)))
	}
	lb := startBalancer(t, lbListener, replicas)

	// setKeys rewrites replica i's key lists and reloads it with SIGHUP.
	keysLine := regexp.MustCompile(`(?m)^  keys: .*$`)
	acceptLine := regexp.MustCompile(`(?m)^  accept_keys: .*$`)
	setKeys := func(i int, keys, accept []string) {
		t.Helper()
		g := replicas[i]
		cfg, err := os.ReadFile(g.cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		next := keysLine.ReplaceAllString(string(cfg), "  keys: ["+strings.Join(keys, ", ")+"]")
		next = acceptLine.ReplaceAllString(next, "  accept_keys: ["+strings.Join(accept, ", ")+"]")
		if err := os.WriteFile(g.cfgPath, []byte(next), 0o600); err != nil {
			t.Fatal(err)
		}
		before := strings.Count(g.Logs(), "server key ring reloaded")
		g.cmd.Process.Signal(syscall.SIGHUP)
		waitFor(t, 5*time.Second, fmt.Sprintf("replica %d to reload its keys", i), func() bool {
			return strings.Count(g.Logs(), "server key ring reloaded") > before
		})
		if strings.Contains(g.Logs(), "need a restart") {
			t.Fatalf("replica %d: a key change asked for a restart:\n%s", i, g.Logs())
		}
	}

	// Traffic: logged-in clients, each calling /bff/user and the proxied route in turn.
	const clients = 6
	var browsers []*browser
	for range clients {
		b := newBrowser(t, lb.URL)
		expect(t, b.login("alice", "wonderland", "/"), 200)
		browsers = append(browsers, b)
	}
	var (
		mu       sync.Mutex
		failures []string
		calls    atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for _, b := range browsers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				path := "/bff/user"
				if n%2 == 1 {
					path = "/api/rotation"
				}
				req, _ := http.NewRequest("GET", lb.URL+path, nil)
				req.Header.Set("X-CSRF", "1")
				req.Header.Set("Accept", "application/json")
				resp, err := b.c.Do(req)
				if err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s: %v", path, err))
					mu.Unlock()
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				calls.Add(1)
				cleared := false
				for _, c := range resp.Header.Values("Set-Cookie") {
					if strings.HasPrefix(c, "__Host-gatehouse=") && strings.Contains(c, "Max-Age=0") {
						cleared = true
					}
				}
				if resp.StatusCode != 200 || cleared {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s: %d (cookie cleared: %v) %.120s", path, resp.StatusCode, cleared, body))
					mu.Unlock()
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	stopTraffic := func() {
		close(stop)
		wg.Wait()
	}
	defer func() {
		select {
		case <-stop:
		default:
			stopTraffic()
		}
	}()
	settle := func() { time.Sleep(1500 * time.Millisecond) } // sessions are touched, tokens refreshed, under each mix of rings
	refreshesBefore := idp.Stats(t).TokenRequests["refresh_token"]
	settle()

	// Step 1, rolling: every replica accepts the new key; the old one still seals.
	for i := range replicas {
		setKeys(i, []string{oldKey}, []string{newKey})
		settle()
	}
	// Step 2, rolling: the new key seals; the old one still opens what it sealed.
	for i := range replicas {
		setKeys(i, []string{newKey, oldKey}, nil)
		settle()
	}
	settle()
	stopTraffic()
	refreshes := idp.Stats(t).TokenRequests["refresh_token"] - refreshesBefore
	if len(failures) > 0 {
		t.Fatalf("%d of %d calls failed during the rotation, first: %s", len(failures), calls.Load(), strings.Join(failures[:min(5, len(failures))], "\n"))
	}
	if calls.Load() < 300 || refreshes == 0 {
		t.Fatalf("too little traffic to prove anything: %d calls, %d refreshes", calls.Load(), refreshes)
	}
	for i := range lb.served {
		if lb.served[i].Load() < 50 {
			t.Fatalf("replica %d served %d requests: the balancer did not spread them", i, lb.served[i].Load())
		}
	}
	t.Logf("rolling rotation on 3 replicas: %d calls, %d token refreshes, 0 failures, 0 cookies cleared", calls.Load(), refreshes)

	// Every session is now sealed with the new key (touched since step 2): a replica
	// that drops the old key still serves them.
	time.Sleep(1100 * time.Millisecond)
	for _, b := range browsers {
		expect(t, b.api("GET", "/bff/user"), 200) // touched by whichever replica, under the new key
	}
	for i := range replicas {
		setKeys(i, []string{newKey}, nil)
	}
	for _, b := range browsers {
		for range 3 {
			expect(t, b.api("GET", "/bff/user"), 200)
		}
	}

	// The old recipe, for contrast: a newer key put first on one replica while the others
	// do not know it yet. That replica re-seals the sessions it touches; the others cannot
	// read them, answer 401 and clear the cookie.
	setKeys(0, []string{key(), newKey}, nil)
	time.Sleep(1100 * time.Millisecond)
	loggedOut := 0
	for _, b := range browsers {
		for n := range 10 {
			path := "/bff/user"
			if n%2 == 1 {
				path = "/api/rotation"
			}
			r := b.api("GET", path)
			if r.Status == 401 {
				loggedOut++
				break
			}
		}
	}
	if loggedOut == 0 {
		t.Fatal("the old recipe logged nobody out: the test cannot tell a safe rotation from an unsafe one")
	}
	t.Logf("the old recipe (new key first on one replica) logged out %d of %d clients", loggedOut, clients)
	// The replicas that lacked the key said why.
	warned := 0
	for _, g := range replicas[1:] {
		if strings.Contains(g.Logs(), "sealed with a server key this replica does not hold") {
			warned++
		}
	}
	if warned == 0 {
		t.Fatal("no replica logged that it met a session sealed with a key it lacks")
	}
}
