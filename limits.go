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
// are counted per /64, the block one subscriber usually holds.
func (g *Gateway) limitByIP(w http.ResponseWriter, r *http.Request, endpoint string) error {
	return g.rateLimit(w, r, endpoint, clientNetwork(g.clientIP(r)), nil)
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
	l := limits.of(endpoint)
	// The limit is part of the bucket's name, so that a reload that changes it starts
	// afresh instead of judging old buckets by the new limit.
	bucket := endpoint + "|" + strconv.FormatFloat(l.PerMinute, 'g', -1, 64) + "/" + strconv.Itoa(l.Burst) + "|" + key
	res, err := g.limiter.Allow(r.Context(), bucket, ratelimit.Limit{Rate: l.PerMinute / 60, Burst: l.Burst})
	if err != nil {
		// Fail open: the limiter's store is down, and refusing every login would turn that
		// into an outage. The metric and the log tell the operator.
		g.metrics.storeErrors.WithLabelValues("rate_limit").Inc()
		g.log.Warn("rate limiter unavailable; request allowed", "endpoint", endpoint, "error", err)
		return nil
	}
	if res.Allowed {
		return nil
	}
	g.metrics.rateLimited.WithLabelValues(endpoint).Inc()
	if g.limitLog.first(endpoint+"|"+key, g.now()) {
		g.audit(r, evRateLimited, s, slog.String("route", endpoint))
	}
	retry := max(int(math.Ceil(res.RetryAfter.Seconds())), 1)
	w.Header().Set("Retry-After", strconv.Itoa(retry))
	return errRateLimited(endpoint, retry)
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
