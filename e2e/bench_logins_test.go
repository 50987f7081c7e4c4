package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/e2e/internal/harness"
)

// TestBenchLogins measures logins per second end to end: the real gatehouse binary
// against npm oidc-provider, each login through the provider's login form as a browser
// without JavaScript would do it. It is a benchmark, not a test: it runs only when
// GATEHOUSE_BENCH_LOGINS names the JSON file to write the figures to (bench/run.sh does
// that), and it asserts nothing about speed.
func TestBenchLogins(t *testing.T) {
	out := os.Getenv("GATEHOUSE_BENCH_LOGINS")
	if out == "" {
		t.Skip("a benchmark: bench/run.sh runs it (GATEHOUSE_BENCH_LOGINS=<result file>)")
	}
	n := envInt("GATEHOUSE_BENCH_LOGINS_N", 400)
	conc := envInt("GATEHOUSE_BENCH_LOGINS_CONCURRENCY", 8)

	port := freePort(t)
	public := fmt.Sprintf("http://127.0.0.1:%d", port)
	idp := harness.StartProvider(t, harness.ProviderConfig{Clients: []harness.Client{harness.BFFClient(public)}})
	api := startUpstream(t)
	gw := startGatehouse(t, port, fmt.Sprintf(`
listen: 127.0.0.1:%d
public_url: %s
provider:
  issuer: %s
  client_id: bff
  client_secret: s3cret
  scopes: [openid, profile, email, offline_access, groups]
  auth_params: {prompt: consent}
session:
  store: memory
admin:
  listen: {{ADMIN}}
log:
  level: warn
rate_limits:
  login: {per_minute: 1000000, burst: 100000}
  callback: {per_minute: 1000000, burst: 100000}
routes:
  - path: /api/
    upstream: %s
`, port, public, idp.Issuer(), api.URL))

	// Warm up (Node's JIT, the gateway's JWKS cache, connection pools), unmeasured.
	for range 20 {
		if _, err := benchLogin(public); err != nil {
			t.Fatal(err)
		}
	}
	idp.Reset(t)

	gwPID, nodePID := gw.cmd.Process.Pid, idp.PID()
	gw0, node0, self0 := procCPU(gwPID), procCPU(nodePID), procCPU(os.Getpid())
	steps := make([]loginSteps, n)
	var next sync.Mutex
	i := 0
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				next.Lock()
				k := i
				i++
				next.Unlock()
				if k >= n {
					return
				}
				s, err := benchLogin(public)
				if err != nil {
					errs <- err
					return
				}
				steps[k] = s
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	gw1, node1, self1 := procCPU(gwPID), procCPU(nodePID), procCPU(os.Getpid())
	st := idp.Stats(t)

	res := loginBench{
		Logins: n, Concurrency: conc, Seconds: elapsed.Seconds(), PerSecond: float64(n) / elapsed.Seconds(),
		StartMS:    medianMS(steps, func(s loginSteps) time.Duration { return s.start }),
		ProviderMS: medianMS(steps, func(s loginSteps) time.Duration { return s.provider }),
		CallbackMS: medianMS(steps, func(s loginSteps) time.Duration { return s.callback }),
		TotalMS:    medianMS(steps, func(s loginSteps) time.Duration { return s.start + s.provider + s.callback }),
		CPUPerLoginMS: map[string]float64{
			"gatehouse": float64(gw1-gw0) * 10 / float64(n),
			"provider":  float64(node1-node0) * 10 / float64(n),
			"client":    float64(self1-self0) * 10 / float64(n),
		},
		ProviderRequests: map[string]float64{
			"authorization": float64(st.AuthorizationRequests) / float64(n),
			"pushed":        float64(st.PushedRequests) / float64(n),
			"token":         float64(sum(st.TokenRequests)) / float64(n),
			"userinfo":      float64(st.UserinfoRequests) / float64(n),
		},
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(out, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d logins in %.1f s: %.0f logins/s\n%s", n, res.Seconds, res.PerSecond, b)
}

type loginBench struct {
	Logins           int                `json:"logins"`
	Concurrency      int                `json:"concurrency"`
	Seconds          float64            `json:"seconds"`
	PerSecond        float64            `json:"per_second"`
	StartMS          float64            `json:"start_ms"`    // GET /bff/login → the provider's login form
	ProviderMS       float64            `json:"provider_ms"` // the login form posted → redirect to the callback
	CallbackMS       float64            `json:"callback_ms"` // GET /bff/callback → session cookie
	TotalMS          float64            `json:"total_ms"`
	CPUPerLoginMS    map[string]float64 `json:"cpu_per_login_ms"`
	ProviderRequests map[string]float64 `json:"provider_requests_per_login"`
}

// loginSteps times the three legs of one login.
type loginSteps struct{ start, provider, callback time.Duration }

// benchLogin logs in once with a fresh browser. It returns errors instead of failing, so
// that it can run on any goroutine.
func benchLogin(public string) (s loginSteps, err error) {
	jar := harness.NewLoopbackJar()
	host := strings.TrimPrefix(public, "http://")
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: benchTransport,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Host == host && strings.HasPrefix(req.URL.Path, "/bff/") {
				return http.ErrUseLastResponse
			}
			if len(via) > 10 {
				return fmt.Errorf("too many redirects")
			}
			return nil
		}}
	nav := func(method, target string, form url.Values) (*http.Response, string, error) {
		var req *http.Request
		if form != nil {
			req, _ = http.NewRequest(method, target, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			req, _ = http.NewRequest(method, target, nil)
		}
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		req.Header.Set("Accept", "text/html")
		resp, err := c.Do(req)
		if err != nil {
			return nil, "", err
		}
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		resp.Body.Close()
		return resp, buf.String(), nil
	}

	t0 := time.Now()
	resp, page, err := nav("GET", public+"/bff/login?returnUrl=%2F", nil)
	if err != nil {
		return s, err
	}
	form := loginFormRe.FindStringSubmatch(page)
	if resp.StatusCode != http.StatusOK || form == nil {
		return s, fmt.Errorf("/bff/login did not lead to the login form: %d", resp.StatusCode)
	}
	t1 := time.Now()
	action, err := resp.Request.URL.Parse(html.UnescapeString(form[1]))
	if err != nil {
		return s, err
	}
	resp, _, err = nav("POST", action.String(), url.Values{"login": {harness.DefaultUser}, "password": {harness.DefaultPassword}})
	if err != nil {
		return s, err
	}
	loc := resp.Header.Get("Location")
	if !strings.Contains(loc, "/bff/callback") {
		return s, fmt.Errorf("after the login form: %d, Location %q", resp.StatusCode, loc)
	}
	t2 := time.Now()
	resp, body, err := nav("GET", loc, nil)
	if err != nil {
		return s, err
	}
	if resp.StatusCode >= 400 || !strings.Contains(strings.Join(resp.Header.Values("Set-Cookie"), "\n"), "__Host-gatehouse=") {
		return s, fmt.Errorf("callback: %d %s", resp.StatusCode, body)
	}
	t3 := time.Now()
	return loginSteps{start: t1.Sub(t0), provider: t2.Sub(t1), callback: t3.Sub(t2)}, nil
}

// The provider's login form (e2e/provider/pages.mjs): its action; the fields are login
// and password.
var loginFormRe = regexp.MustCompile(`<form method="post" action="([^"]*)" id="login-form"`)

var benchTransport = &http.Transport{MaxIdleConnsPerHost: 64}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// procCPU is utime+stime of a process in clock ticks (1/100 s).
func procCPU(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

func medianMS(steps []loginSteps, f func(loginSteps) time.Duration) float64 {
	ds := make([]time.Duration, len(steps))
	for i, s := range steps {
		ds[i] = f(s)
	}
	slices.Sort(ds)
	return float64(ds[len(ds)/2]) / float64(time.Millisecond)
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
