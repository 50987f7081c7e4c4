package gatehouse

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/gatehouse-bff/gatehouse/ratelimit"
	"github.com/gatehouse-bff/gatehouse/session"
)

// Rate-limited endpoints, by their metric label and rate_limits key.
const (
	limitLogin       = "login"
	limitCallback    = "callback"
	limitBackchannel = "backchannel"
	limitAdmin       = "admin"
	limitSessions    = "sessions"
)

func (c RateLimitConfig) of(endpoint string) RateLimit {
	switch endpoint {
	case limitLogin:
		return c.Login
	case limitCallback:
		return c.Callback
	case limitBackchannel:
		return c.Backchannel
	case limitAdmin:
		return c.Admin
	default:
		return c.Sessions
	}
}

func errRateLimited(endpoint string, retry int) *httpError {
	return &httpError{status: http.StatusTooManyRequests, code: "rate_limited", reason: endpoint,
		title:   "Too many requests",
		message: "Too many attempts came from your network. Please wait " + strconv.Itoa(retry) + " seconds and try again."}
}

// limitByIP takes a token from the client network's bucket for endpoint. IPv6 clients
// are counted per /64, the block one subscriber usually holds; for logins, also per /48
// (rate_limits.login_per_48), since a /48 is 65 536 /64s and some hold one.
func (g *Gateway) limitByIP(w http.ResponseWriter, r *http.Request, endpoint string) error {
	ip := g.clientIP(r)
	if err := g.rateLimit(w, r, endpoint, clientNetwork(ip), nil); err != nil {
		return err
	}
	if site, ok := clientSite(ip); ok && endpoint == limitLogin {
		limits := g.config().RateLimits
		if limits.InsecureDisable {
			return nil
		}
		return g.take(w, r, limitLogin, "login_per_48", limits.LoginPer48, site, nil)
	}
	return nil
}

// limitBySubject takes a token from the user's bucket for endpoint.
func (g *Gateway) limitBySubject(w http.ResponseWriter, r *http.Request, endpoint string, s *session.Session) error {
	sum := sha256.Sum256([]byte("gatehouse rate limit subject\x00" + s.Issuer + "\x00" + s.Subject))
	return g.rateLimit(w, r, endpoint, "sub:"+hex.EncodeToString(sum[:12]), s)
}

func (g *Gateway) rateLimit(w http.ResponseWriter, r *http.Request, endpoint, key string, s *session.Session) error {
	limits := g.config().RateLimits
	if limits.InsecureDisable {
		return nil
	}
	return g.take(w, r, endpoint, endpoint, limits.of(endpoint), key, s)
}

// take takes a token from key's bucket of the limit named name; a refusal is counted,
// audited and answered as one of endpoint.
func (g *Gateway) take(w http.ResponseWriter, r *http.Request, endpoint, name string, l RateLimit, key string, s *session.Session) error {
	// The limit is part of the bucket's name, so that a reload that changes it starts
	// afresh instead of judging old buckets by the new limit.
	bucket := name + "|" + strconv.FormatFloat(l.PerMinute, 'g', -1, 64) + "/" + strconv.Itoa(l.Burst) + "|" + key
	res := g.allow(r, endpoint, bucket, ratelimit.Limit{Rate: l.PerMinute / 60, Burst: l.Burst})
	if res.Allowed {
		return nil
	}
	return errRateLimited(endpoint, g.refused(w, r, endpoint, key, s, res))
}

// allow asks the limiter. A limiter that fails lets the request through (fail open): its
// store is down, and refusing every login would turn that into an outage. The metric and
// the log tell the operator.
func (g *Gateway) allow(r *http.Request, endpoint, bucket string, l ratelimit.Limit) ratelimit.Result {
	res, err := g.limiter.Allow(r.Context(), bucket, l)
	if err != nil {
		g.metrics.storeErrors.WithLabelValues("rate_limit").Inc()
		g.log.Warn("rate limiter unavailable; request allowed", "endpoint", endpoint, "error", err)
		return ratelimit.Result{Allowed: true}
	}
	return res
}

// refused counts and audits a refusal, sets Retry-After and returns its seconds.
func (g *Gateway) refused(w http.ResponseWriter, r *http.Request, endpoint, key string, s *session.Session, res ratelimit.Result) int {
	g.metrics.rateLimited.WithLabelValues(endpoint).Inc()
	if g.limitLog.first(endpoint+"|"+key, g.now()) {
		g.audit(r, evRateLimited, s, slog.String("route", endpoint))
	}
	retry := max(int(math.Ceil(res.RetryAfter.Seconds())), 1)
	w.Header().Set("Retry-After", strconv.Itoa(retry))
	return retry
}

// limitLoginFlows is the metric label and audit route of the global pending-flow cap.
const limitLoginFlows = "login_flows"

// limitPendingFlows bounds the login flows in progress, from every client together
// (session.max_pending_flows, N): a token bucket of N-N/2 tokens that regains N/2 per
// flow_timeout (T). A flow lives at most T, and in any span of T the bucket lets at most
// N-N/2 + N/2 = N flows start, so at most N flow records exist at once. The bucket is
// the RateLimiter's, so the bound holds across the replicas that share it (through Redis
// in the binary when the store is Redis). A flow that completes early does not give its
// token back: under a sustained stream of logins the bound is N/2 per T, with bursts of
// N/2, counted whether the flows complete or not.
func (g *Gateway) limitPendingFlows(w http.ResponseWriter, r *http.Request) error {
	cfg := g.config().Session
	n, ttl := cfg.MaxPendingFlows, cfg.FlowTimeout
	l := ratelimit.Limit{Rate: float64(n/2) / ttl.Seconds(), Burst: n - n/2}
	bucket := limitLoginFlows + "|" + strconv.Itoa(n) + "/" + ttl.String() + "|all"
	res := g.allow(r, limitLoginFlows, bucket, l)
	if res.Allowed {
		return nil
	}
	retry := g.refused(w, r, limitLoginFlows, "all", nil, res)
	g.log.Warn("login refused: session.max_pending_flows logins are in progress", "max_pending_flows", n,
		"retry_after", (time.Duration(retry) * time.Second).String())
	return errLoginsFull(retry)
}

func errLoginsFull(retry int) *httpError {
	return &httpError{status: http.StatusServiceUnavailable, code: "unavailable", reason: "login_capacity",
		title: "Temporarily unavailable", level: slog.LevelInfo,
		message: "Too many sign-ins are in progress right now. Please wait " + strconv.Itoa(retry) + " seconds and try again."}
}

// clientNetwork is the rate-limit key of a client address: the address itself for IPv4,
// its /64 for IPv6.
func clientNetwork(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return "ip:" + ip
	}
	if a.Is6() && !a.Is4In6() {
		p, _ := a.Prefix(64)
		return "net:" + p.String()
	}
	return "ip:" + a.String()
}

// clientSite is the key of an IPv6 client's /48, and false for IPv4 clients.
func clientSite(ip string) (string, bool) {
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is6() || a.Is4In6() {
		return "", false
	}
	p, _ := a.Prefix(48)
	return "net:" + p.String(), true
}

// limitLog keeps a flood of refused requests from becoming a flood of audit events: one
// rate_limited event per key every 10 seconds.
type limitLog struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

func (l *limitLog) first(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if last, ok := l.seen[key]; ok && now.Sub(last) < 10*time.Second {
		return false
	}
	if l.seen == nil || len(l.seen) > 10_000 {
		l.seen = map[string]time.Time{}
	}
	l.seen[key] = now
	return true
}
