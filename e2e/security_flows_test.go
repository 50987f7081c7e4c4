package e2e

// Cases of the rate limits and binding category (RLB) about the login flows in progress
// (issue 12, item 4): a flood from many /64s of one IPv6 /48, each within its own limit;
// and the global cap on pending flows, counted together by two replicas on one Redis.

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/session/redisstore/redistest"
)

// rlbLoginPer48Burst is rlb's rate_limits.login_per_48 burst (6 per minute like the rest).
const rlbLoginPer48Burst = 20

// rlbMaxPendingFlows is session.max_pending_flows of the two replicas of the flow-cap case.
const rlbMaxPendingFlows = 10

func secLoginFlows(t *testing.T, s *secSuite, e *secEnv, r *rlbEnv) {
	s.run(t, e, "RLB", "login flood from 400 IPv6 /64s of one /48",
		fmt.Sprintf("each /64 stays within its own login limit, yet the /48 gets %d logins (rate_limits.login_per_48 burst) plus what refills while the flood lasts; the rest get 429 rate_limited/login with Retry-After, no flow started; the provider's authorization endpoint is visited only by the allowed logins; a /64 of another /48 gets 302", rlbLoginPer48Burst),
		func(c *secCase) {
			gw := r.rlb
			authorize0 := r.fake.Count("authorize")
			start := time.Now()
			allowed, refused := 0, 0
			for round := range 2 {
				for i := range 400 {
					ip := fmt.Sprintf("2001:db8:48:%x::%d", i, round+1)
					res := e.client(gw.URL, false).do(c, "GET", "/bff/login", nil, rlbFrom(ip, rlbChrome156, secSameOrigin...)...)
					switch res.Status {
					case 302:
						allowed++
					case 429:
						refused++
						if refused <= 3 {
							rlbRetryAfter(c, "a login past the /48's burst", res)
							rlbJSONError(c, "a login past the /48's burst", res, "rate_limited", "login")
						}
						for _, line := range res.Header.Values("Set-Cookie") {
							c.Errorf("a refused login set cookie %q (a flow was started)", rlbCookieName(line))
						}
					default:
						c.Fatalf("login from %s: %d\n%.300s", ip, res.Status, res.Body)
					}
				}
			}
			// One token back every 10 s while the flood lasts.
			most := rlbLoginPer48Burst + int(time.Since(start)/(60*time.Second/rlbPerMinute)) + 1
			if allowed < rlbLoginPer48Burst || allowed > most {
				c.Errorf("800 logins from 400 /64s of one /48: %d allowed, %d refused; want %d to %d allowed", allowed, refused, rlbLoginPer48Burst, most)
			}
			c.Logf("800 logins from 400 /64s of 2001:db8:48::/48: %d allowed, %d refused", allowed, refused)
			if got := r.fake.Count("authorize") - authorize0; got > most {
				c.Errorf("the provider's authorization endpoint was visited %d times, want at most %d", got, most)
			}
			if res := e.client(gw.URL, false).do(c, "GET", "/bff/login", nil, rlbFrom("2001:db8:49::1", rlbChrome156, secSameOrigin...)...); res.Status != 302 {
				c.Errorf("a login from another /48 (2001:db8:49::1): %d, want 302", res.Status)
			}
		})

	s.run(t, e, "RLB", "global cap on pending login flows, across two replicas on one Redis",
		fmt.Sprintf("session.max_pending_flows %d: with every client within its own limits, %d logins start at once (half the cap) across both replicas; then 503 {error: unavailable, reason: login_capacity} with Retry-After on either replica (a page for a navigation), no flow cookie, no flow record; Redis holds at most %d flow records; a rate_limited audit event with route login_flows and gatehouse_rate_limited_total{endpoint=\"login_flows\"} on each", rlbMaxPendingFlows, rlbMaxPendingFlows/2, rlbMaxPendingFlows),
		func(c *secCase) {
			redis := redistest.Start(c)
			cfg := fmt.Sprintf(`
trusted_proxies: [127.0.0.1]
session:
  store: %s
  max_pending_flows: %d
admin:
  listen: {{ADMIN}}
`, redis.URL, rlbMaxPendingFlows)
			a, b := r.start(t, cfg), r.start(t, cfg)
			replicas := []*rlbGW{a, b}
			n := 0
			login := func(gw *rlbGW, headers ...string) *response {
				n++
				return e.client(gw.URL, false).do(c, "GET", "/bff/login", nil, rlbFrom(fmt.Sprintf("198.18.%d.%d", n/200, n%200+1), rlbChrome156, headers...)...)
			}
			for i := range rlbMaxPendingFlows / 2 {
				if res := login(replicas[i%2], secSameOrigin...); res.Status != 302 {
					c.Fatalf("login %d on replica %d (within half the cap): %d\n%.300s", i+1, i%2+1, res.Status, res.Body)
				}
			}
			for i, gw := range replicas {
				what := fmt.Sprintf("replica %d past the cap", i+1)
				res := login(gw, secSameOrigin...)
				if res.Status != 503 {
					c.Errorf("%s: %d, want 503\n%.300s", what, res.Status, res.Body)
					continue
				}
				rlbJSONError(c, what, res, "unavailable", "login_capacity")
				// One token back every flow_timeout / (max_pending_flows/2) = 600 s / 5.
				if ra, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 120 {
					c.Errorf("%s: Retry-After %q, want 1–120 s", what, res.Header.Get("Retry-After"))
				}
				if len(res.Header.Values("Set-Cookie")) > 0 || res.Header.Get("Location") != "" {
					c.Errorf("%s: a refused login set cookies or redirected: %v", what, res.Header)
				}
				page := login(gw, secNavigate...)
				if page.Status != 503 || !strings.HasPrefix(page.Header.Get("Content-Type"), "text/html") || page.Header.Get("Retry-After") == "" {
					c.Errorf("%s, a navigation: %d %q, Retry-After %q; want a 503 page with Retry-After", what, page.Status, page.Header.Get("Content-Type"), page.Header.Get("Retry-After"))
				}
				if ev := gw.events(c, "event", "rate_limited", "route", "login_flows"); len(ev) != 1 {
					c.Errorf("%s: %d rate_limited events with route login_flows, want 1", what, len(ev))
				}
				if m := e.client(gw.URL, false).do(c, "GET", gw.AdminURL+"/metrics", nil).Body; !rlbMetric(m, `gatehouse_rate_limited_total{endpoint="login_flows"}`, 2) {
					c.Errorf("%s: gatehouse_rate_limited_total{endpoint=\"login_flows\"} is not 2", what)
				}
			}
			flows := 0
			for k := range redis.Dump(c) {
				if strings.Contains(k, ":f:") || strings.HasPrefix(k, "f:") {
					flows++
				}
			}
			if flows != rlbMaxPendingFlows/2 {
				c.Errorf("Redis holds %d flow records, want %d (only the allowed logins)", flows, rlbMaxPendingFlows/2)
			}
		})
}
