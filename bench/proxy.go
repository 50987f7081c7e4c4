package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// variant is one way of reaching the upstream.
type variant struct {
	name    string // direct, bare, memory, bolt, redis
	label   string
	target  string
	headers []string
	token   string // what the upstream must see as the bearer token
	proxy   *proc  // nil for direct
	peer    bool   // not Gatehouse nor the baseline (bench/peers.go)
}

// request is a GET of the variant's target with its headers, as wrk sends it.
func (v *variant) request() *http.Request {
	req, _ := http.NewRequest(http.MethodGet, v.target, nil)
	for _, h := range v.headers {
		k, val, _ := strings.Cut(h, ": ")
		req.Header.Set(k, val)
	}
	return req
}

// sample is one measured wrk run of one variant.
type sample struct {
	wrk        wrkResult
	proxyCPU   float64 // µs of proxy CPU per request (0 for direct)
	upCPU      float64 // µs of upstream CPU per request
	rssKB      int64   // proxy RSS after the run
	upstreamOK int64
	otherLoad  float64 // CPUs used by processes that are not the benchmark's, during the run
	attempts   int
}

// proxyResults are the rounds, by variant name.
type proxyResults struct {
	variants []*variant
	rounds   []map[string]sample
	conns    int
	duration time.Duration
	warmup   time.Duration
	checked  int64 // requests wrk counted, all 2xx and seen authorised upstream
}

func (e *env) variants() []*variant {
	// Every client request carries the same browser-like headers, so the variants
	// differ only in what is in between.
	// The mod_auth_openidc peers send their own session cookie in the same place.
	withCookie := func(pair string) []string {
		return []string{"X-CSRF: 1", "Sec-Fetch-Site: same-origin", "Accept: application/json",
			"Cookie: " + pair + "; theme=dark"}
	}
	common := func(cookie string) []string { return withCookie("__Host-gatehouse=" + cookie) }
	mem := e.gateways["memory"]
	vs := []*variant{
		{name: "direct", label: "direct to the upstream", target: e.upURL + "/api/orders",
			headers: append(common(mem.cookie), "Authorization: Bearer "+e.bareToken), token: e.bareToken},
		{name: "bare", label: "bare `httputil.ReverseProxy` (baseline)", target: "http://" + e.bare.addr + "/api/orders",
			headers: common(mem.cookie), token: e.bareToken, proxy: e.bare},
	}
	for _, s := range stores {
		g := e.gateways[s]
		vs = append(vs, &variant{name: s, label: "gatehouse, `" + s + "` store", target: g.url + "/api/orders",
			headers: common(g.cookie), token: g.token, proxy: g.p})
	}
	for _, s := range fastStores {
		g := e.gateways[s]
		store, _, _ := strings.Cut(s, "-")
		vs = append(vs, &variant{name: s, label: "gatehouse, `" + store + "` store, `upstream_transport: fast`", target: g.url + "/api/orders",
			headers: common(g.cookie), token: g.token, proxy: g.p})
	}
	if g := e.gateways["compare"]; g != nil {
		vs = append(vs, &variant{name: "compare", label: "gatehouse, `memory` store, `" + filepath.Base(e.o.compare) + "` (-compare)",
			target: g.url + "/api/orders", headers: common(g.cookie), token: g.token, proxy: g.p})
	}
	for _, pr := range e.peers {
		h := common(mem.cookie) // nginx: the same request as the bare proxy's
		if pr.cookie != "" {
			h = withCookie(pr.cookie)
		} else if g := e.gateways["authreq"]; pr.name == "nginx-authreq" && g != nil {
			h = common(g.cookie)
		}
		vs = append(vs, &variant{name: pr.name, label: pr.label, target: pr.url + "/api/orders",
			headers: h, token: pr.token, proxy: pr.p, peer: true})
	}
	if len(e.o.only) > 0 {
		vs = slices.DeleteFunc(vs, func(v *variant) bool { return v.name != "bare" && !e.o.only[v.name] })
	}
	return vs
}

// proxyRounds runs every variant once per round, in an order that rotates each round.
func (e *env) proxyRounds() (*proxyResults, error) {
	o := e.o
	res := &proxyResults{variants: e.variants(), conns: o.conns, duration: o.duration, warmup: o.warmup}
	// A first request through each variant, to fail early and clearly.
	for _, v := range res.variants {
		if err := e.probe(v); err != nil {
			return nil, err
		}
	}
	step("throughput: %d rounds of %d variants, wrk -t1 -c%d, %s each after a %s warm-up",
		o.rounds, len(res.variants), o.conns, o.duration, o.warmup)
	n := len(res.variants)
	for r := 0; r < o.rounds; r++ {
		round := map[string]sample{}
		for i := 0; i < n; i++ {
			v := res.variants[(i+r)%n]
			// A run during which other processes used the CPUs is done again (up to
			// 3 times); the quietest is kept.
			var s sample
			for attempt := 1; attempt <= 3; attempt++ {
				t, err := e.measure(v)
				if err != nil {
					return nil, fmt.Errorf("round %d, %s: %w", r+1, v.name, err)
				}
				if attempt == 1 || t.otherLoad < s.otherLoad {
					s = t
				}
				s.attempts = attempt
				if t.otherLoad <= o.maxOther {
					break
				}
				fmt.Fprintf(os.Stderr, "  round %d  %-13s other processes used %.2f CPUs: again\n", r+1, v.name, t.otherLoad)
			}
			round[v.name] = s
			res.checked += s.wrk.Requests
			fmt.Fprintf(os.Stderr, "  round %d  %-13s %9.0f req/s  p50 %6.2f ms  p99 %6.2f ms  proxy %5.1f µs/req  upstream %5.1f µs/req  rss %d MiB  other load %.2f CPU\n",
				r+1, v.name, s.wrk.RPS(), ms(s.wrk.P50), ms(s.wrk.P99), s.proxyCPU, s.upCPU, s.rssKB>>10, s.otherLoad)
		}
		res.rounds = append(res.rounds, round)
	}
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (e *env) probe(v *variant) error {
	if err := e.expect(v.token); err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(v.request())
	if err != nil {
		return fmt.Errorf("%s: %w", v.name, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	st, err := e.upstreamStats()
	if err != nil {
		return err
	}
	if os.Getenv("BENCH_DEBUG") != "" {
		fmt.Fprintf(os.Stderr, "--- %s: the upstream received:\n%s\n", v.name, st.Sample)
	}
	if resp.StatusCode != http.StatusOK || st.Authorised != 1 || st.Refused != 0 {
		if v.name == "nginx-authreq" {
			return fmt.Errorf("%s: first request: status %d (nginx answers 500 when /bff/auth answers neither 2xx, 401 nor 403): "+
				"this peer needs gatehouse's forward-auth endpoint GET /bff/auth (issue 14), which this gatehouse may not have; "+
				"leave it out of --peers", v.name, resp.StatusCode)
		}
		return fmt.Errorf("%s: first request: status %d (%s), upstream saw %d authorised, %d refused",
			v.name, resp.StatusCode, body, st.Authorised, st.Refused)
	}
	return nil
}

// runs numbers the wrk runs.
var runs int

// measure runs wrk against v once (after a warm-up run) and checks every answer: all
// 2xx, no socket errors, and every request wrk counted seen by the upstream with the
// expected bearer token.
func (e *env) measure(v *variant) (sample, error) {
	o := e.o
	// Each wrk run marks its requests (X-Bench-Run), so that stragglers of the warm-up
	// that reach the upstream after the counters were reset are not counted.
	runs++
	warm, measured := fmt.Sprintf("%d-warm", runs), fmt.Sprintf("%d", runs)
	if o.warmup > 0 {
		if err := e.expectRun(v.token, warm); err != nil {
			return sample{}, err
		}
		w, err := wrkRun(o.loadCPUs, e.script, v.target, o.conns, o.warmup, append(slices.Clip(v.headers), "X-Bench-Run: "+warm))
		if err != nil {
			return sample{}, err
		}
		if w.Non2xx > 0 || w.Errors > 0 {
			return sample{}, fmt.Errorf("warm-up: %d responses not 2xx, %d socket errors (%s)", w.Non2xx, w.Errors, w.ErrorKinds)
		}
	}
	// Requests of the warm-up still in flight must land before the counters reset.
	if _, err := e.settle(); err != nil {
		return sample{}, err
	}
	if err := e.expectRun(v.token, measured); err != nil {
		return sample{}, err
	}
	var p0, p1 int64
	var err error
	if v.proxy != nil {
		if p0, err = treeTicks(v.proxy.pid()); err != nil {
			return sample{}, err
		}
	}
	u0, err := cpuTicks(e.up.pid())
	if err != nil {
		return sample{}, err
	}
	busy0, ours0 := busyTicks(), e.ps.ourTicks()
	w, err := wrkRun(o.loadCPUs, e.script, v.target, o.conns, o.duration, append(slices.Clip(v.headers), "X-Bench-Run: "+measured))
	if err != nil {
		return sample{}, err
	}
	busy1, ours1 := busyTicks(), e.ps.ourTicks()
	if v.proxy != nil {
		p1, _ = treeTicks(v.proxy.pid())
	}
	u1, _ := cpuTicks(e.up.pid())
	other := float64(busy1-busy0-(ours1-ours0)-w.CPUTicks) / (w.Duration.Seconds() * 100)
	st, err := e.settle() // requests still in flight when wrk stopped land
	if err != nil {
		return sample{}, err
	}
	switch {
	case w.Requests == 0:
		return sample{}, fmt.Errorf("wrk completed no request")
	case w.Non2xx > 0:
		return sample{}, fmt.Errorf("FAILED: %d of %d responses were not 2xx", w.Non2xx, w.Requests)
	case w.Errors > 0:
		return sample{}, fmt.Errorf("FAILED: %d socket errors or timeouts (%s)", w.Errors, w.ErrorKinds)
	case st.Refused > 0:
		return sample{}, fmt.Errorf("FAILED: the upstream refused %d requests (wrong or missing bearer token)", st.Refused)
	case st.Authorised < w.Requests || st.Authorised-w.Requests > int64(o.conns):
		return sample{}, fmt.Errorf("FAILED: wrk counted %d responses but the upstream answered %d authorised requests", w.Requests, st.Authorised)
	}
	s := sample{wrk: w, upstreamOK: st.Authorised, upCPU: float64(u1-u0) * tickMicros / float64(w.Requests), otherLoad: max(other, 0)}
	if v.proxy != nil {
		s.proxyCPU = float64(p1-p0) * tickMicros / float64(w.Requests)
		s.rssKB = treeRSSKB(v.proxy.pid())
	}
	return s, nil
}

// settle waits until the upstream has seen no new request for 200 ms (at most 10 s)
// and returns its counters.
func (e *env) settle() (upstreamStats, error) {
	var last upstreamStats
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		time.Sleep(100 * time.Millisecond)
		st, err := e.upstreamStats()
		if err != nil {
			return st, err
		}
		n := st.Authorised + st.Refused
		if i > 0 && n == last.Authorised+last.Refused || time.Now().After(deadline) {
			return st, nil
		}
		last = st
	}
}
