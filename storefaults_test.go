package gatehouse_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/session/redisstore"
	"github.com/gatehouse-bff/gatehouse/session/redisstore/redistest"
)

// redisEnv is routesEnv with its sessions in a real Redis, reached through a proxy that
// the test can make fail. Each gateway gets its own connections through p.
func redisEnv(t *testing.T, up *upstreamRecorder, p *redistest.Proxy, timeout time.Duration, mutate ...func(*gatehouse.Config)) *env {
	t.Helper()
	st, err := redisstore.Open(t.Context(), redisstore.Options{URL: p.URL(), Timeout: timeout, DialTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return routesEnv(t, up, append([]func(*gatehouse.Config){func(c *gatehouse.Config) { c.Session.Store = st }}, mutate...)...)
}

// sessionHandle returns the handle of the only session record in srv.
func sessionHandle(t *testing.T, srv *redistest.Server) string {
	t.Helper()
	var hs []string
	for k := range srv.Dump(t) {
		if h, ok := strings.CutPrefix(k, "gatehouse:s:{"); ok {
			hs = append(hs, strings.TrimSuffix(h, "}"))
		}
	}
	if len(hs) != 1 {
		t.Fatalf("%d session records in Redis, want 1", len(hs))
	}
	return hs[0]
}

func wantRetryAfter(t *testing.T, r *resp) {
	t.Helper()
	if n, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || n < 1 {
		t.Fatalf("Retry-After = %q, want whole seconds", r.Header.Get("Retry-After"))
	}
}

// A refresh that waits in vain for the session's lease (another replica holds it) is the
// store's failure, not the provider's: 503 store_unavailable, and the audit event and
// the metrics say so too.
func TestLockWaitTimeoutIsStoreUnavailable(t *testing.T) {
	srv := redistest.Start(t)
	p := redistest.NewProxy(t, srv.Addr)
	up := newUpstream(t)
	e := redisEnv(t, up, p, time.Second)
	e.gw.SetRefreshLockWait(300 * time.Millisecond)
	b := e.browser()
	b.login()
	wantStatus(t, b.api("GET", "/api/x"), 200)

	// Another replica's refresh holds the lease.
	srv.Do(t, "SET", "gatehouse:l:{"+sessionHandle(t, srv)+"}", "other-replica", "PX", "60000")
	e.clock.Advance(2 * time.Minute)
	r := b.api("GET", "/api/x")
	wantJSONError(t, r, http.StatusServiceUnavailable, "unavailable", "store_unavailable")
	if n := e.idp.Count("refresh_token"); n != 0 {
		t.Fatalf("%d refreshes reached the provider without the lease", n)
	}
	var found bool
	for line := range strings.Lines(e.audit.String()) {
		if strings.Contains(line, `"msg":"refresh_failed"`) {
			found = true
			if !strings.Contains(line, `"reason":"store_unavailable"`) {
				t.Errorf("audit: %s, want reason store_unavailable", line)
			}
		}
	}
	if !found {
		t.Errorf("no refresh_failed audit event:\n%s", e.audit.String())
	}
	m := scrape(t, e)
	if !strings.Contains(m, `gatehouse_token_refreshes_total{outcome="store_unavailable"} 1`) {
		t.Errorf("metrics do not count the refresh as store_unavailable:\n%s", grepLines(m, "gatehouse_token_refreshes_total"))
	}
	if strings.Contains(m, `gatehouse_token_refreshes_total{outcome="error"}`) {
		t.Errorf("metrics count a provider error:\n%s", grepLines(m, "gatehouse_token_refreshes_total"))
	}
}

func grepLines(s, sub string) string {
	var out strings.Builder
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			out.WriteString(line)
		}
	}
	return out.String()
}
