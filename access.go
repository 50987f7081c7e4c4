package gatehouse

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/gatehouse-bff/gatehouse/session"
)

// requestIDHeader carries the request id: accepted from a trusted proxy, otherwise made
// here, and sent to the upstream and back to the client.
const requestIDHeader = "X-Request-Id"

// maxRequestID bounds an X-Request-Id a trusted proxy sends; a longer one is replaced.
const maxRequestID = 128

// validRequestID accepts a short id of visible ASCII characters (no space, no control
// character), which is what proxies send (UUIDs, hex, AWS-style "Root=1-…").
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > maxRequestID {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// newRequestID is 16 random bytes in hex: one allocation, the string.
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	var h [32]byte
	hex.Encode(h[:], b[:])
	return string(h[:])
}

// assignRequestID takes the request's id from a trusted proxy's X-Request-Id or makes
// one, and puts it in the request's header, where the upstream, the audit log and the
// error renderer find it. sw writes it into the response when the headers go out, so
// that an upstream's own X-Request-Id does not replace it, and so that the header map
// stays empty before a forward (upstream.Proxy copies a non-empty one).
func (g *Gateway) assignRequestID(sw *statusRecorder, r *http.Request) {
	id := ""
	if v := r.Header[requestIDHeader]; len(v) == 1 && validRequestID(v[0]) {
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil && g.trusted(ap.Addr().Unmap()) {
			id = v[0]
		}
	}
	if id == "" {
		id = newRequestID()
	}
	sw.id[0] = id
	if r.Header == nil {
		r.Header = http.Header{}
	}
	r.Header[requestIDHeader] = sw.id[:]
}

// requestID is the request's id (assignRequestID), "" for a request that did not come
// through ServeHTTP.
func requestID(r *http.Request) string {
	if r == nil {
		return ""
	}
	if v := r.Header[requestIDHeader]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// accessKey finds a request's statusRecorder in its context, put there only when the
// access log is on, so that the code that loads the session can record it.
type accessKey struct{}

// noteSession records the request's session for the access log.
func noteSession(r *http.Request, s *session.Session) {
	if s == nil {
		return
	}
	if sw, ok := r.Context().Value(accessKey{}).(*statusRecorder); ok {
		sw.sess = s
	}
}

// maxLoggedPath bounds the path written in an access line.
const maxLoggedPath = 1024

// logAccess writes the request's access line: no query, no cookie, no token; the session
// as a keyed hash of its handle.
func (g *Gateway) logAccess(sw *statusRecorder, r *http.Request, kind string, d time.Duration) {
	p := r.URL.Path
	if strings.HasPrefix(p, "/bff/sessions/") {
		p = "/bff/sessions/{sid}" // a session's handle, which the admin API revokes by
	}
	if len(p) > maxLoggedPath {
		p = p[:maxLoggedPath] + "…"
	}
	attrs := make([]slog.Attr, 0, 14)
	attrs = append(attrs,
		slog.String("request_id", sw.id[0]),
		slog.String("frontend", g.frontendLabel()),
		slog.String("kind", kind),
	)
	if sw.route != "" {
		attrs = append(attrs, slog.String("route", sw.route))
	}
	attrs = append(attrs,
		slog.String("method", r.Method),
		slog.String("path", p),
		slog.Int("status", sw.status),
		slog.Int64("bytes", sw.bytes),
		slog.Float64("duration_ms", ms(d)),
	)
	if sw.proxied {
		attrs = append(attrs, slog.Float64("upstream_ms", ms(sw.upstream)))
	}
	attrs = append(attrs, slog.String("ip", g.clientIP(r)))
	if g.tracing.tracer != nil {
		if id := traceID(r); id != "" {
			attrs = append(attrs, slog.String("trace_id", id))
		}
	}
	if s := sw.sess; s != nil {
		if s.Handle != "" {
			attrs = append(attrs, slog.String("session", g.sessionHash(s.Handle)))
		}
		if g.config().Log.AccessSubject && s.Subject != "" {
			attrs = append(attrs, slog.String("subject", s.Subject))
		}
	}
	g.accessLog.LogAttrs(context.Background(), slog.LevelInfo, "access", attrs...)
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// sessionHash is a short keyed hash of a session handle: lines of one session can be
// grouped, but the handle (which the admin API accepts) is not in the access log.
func (g *Gateway) sessionHash(handle string) string {
	m := hmac.New(sha256.New, g.accessKey)
	m.Write([]byte(handle))
	return hex.EncodeToString(m.Sum(nil)[:8])
}

// accessHashKey derives the key of sessionHash from the primary server key, so that
// replicas sharing session.keys hash a session alike.
func accessHashKey(cfg Config) []byte {
	key := derivedServerKey(cfg.Provider)
	if len(cfg.Session.Keys) > 0 {
		key = cfg.Session.Keys[0]
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("gatehouse access log session hash"))
	return m.Sum(nil)
}
