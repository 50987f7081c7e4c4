package upstream

import (
	"fmt"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
)

// Request headers a browser may not pass to an upstream, in two lists.
//
// alwaysStripped are the forwarding headers (the gateway sets its own) and the headers
// that make an upstream framework treat a request as another method or another path, which
// would defeat a route's methods: list and its prefix. KeepHeaders cannot bring them back.
var alwaysStripped = []string{
	"X-Forwarded-*", "X-Real-Ip", "X-Client-Ip", "True-Client-Ip", "Cf-Connecting-Ip",
	"X-Cluster-Client-Ip", "Client-Ip", "X-Original-Forwarded-For",
	"X-Http-Method-Override", "X-Http-Method", "X-Method-Override", "X-Original-Method",
	"X-Original-Url", "X-Rewrite-Url",
	// Gatehouse's own namespace: the identity assertion (X-Gatehouse-Assertion) and
	// whatever else the gateway may tell an upstream is set by the gateway only.
	"X-Gatehouse-*",
}

// defaultStripped are the headers with which other gateways and identity-aware proxies
// tell their upstreams who the user is (or what was requested before a rewrite). An
// upstream that also sits behind one of them may believe them, so a browser never gets to
// send them. KeepHeaders may forward some of them after all.
var defaultStripped = []string{
	// Authelia (Remote-User, Remote-Groups, …), and CGI-style Remote-Addr.
	"Remote-*",
	// Kubernetes' authenticating proxy (X-Remote-User, X-Remote-Group, X-Remote-Extra-…).
	"X-Remote-*",
	// oauth2-proxy; AWS ALB; Google IAP; Azure App Service; Cloudflare Access.
	"X-Auth-Request-*", "X-Amzn-Oidc-*", "X-Goog-Authenticated-User-*", "X-Goog-Iap-Jwt-Assertion",
	"X-Ms-Client-Principal*", "X-Ms-Token-*", "Cf-Access-*",
	// Pomerium, authentik, Vouch, Grafana's and Gitea's auth proxy, Kong, WSO2.
	"X-Pomerium-*", "X-Authentik-*", "X-Vouch-*", "X-Webauth-*",
	"X-Consumer-*", "X-Credential-Identifier", "X-Authenticated-*", "X-Userinfo", "X-Jwt-Assertion",
	// Conventions of hand-made setups.
	"X-User", "X-Username", "X-User-Id", "X-User-Name", "X-User-Email", "X-User-Groups", "X-User-Roles",
	"X-Email", "X-Groups", "X-Preferred-Username", "X-Id-Token", "X-Access-Token",
	// Client certificates as a TLS-terminating proxy passes them on.
	"X-Ssl-Client-*", "Ssl-Client-*", "X-Client-Cert*", "X-Client-Verify", "X-Client-Dn", "X-Arr-Clientcert",
	// The original request of nginx's auth_request.
	"X-Original-Uri",
}

// DefaultStripHeaders returns the request headers removed before forwarding unless
// Config.KeepHeaders names them: the identity headers of other gateways. An entry ending
// in "*" is a prefix. Forwarding and method- or path-override headers (X-Forwarded-*,
// X-Real-IP, X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override, X-Original-Method,
// X-Original-URL, X-Rewrite-URL, …) are removed too, always.
func DefaultStripHeaders() []string { return slices.Clone(defaultStripped) }

// headerSet maps canonical header names, and prefixes of them, to a verdict. Prefixes
// are bucketed by their first n bytes, so that a lookup costs at most two map reads
// whatever the length of the lists.
type headerSet struct {
	exact    map[string]verdict
	prefixes map[string][]prefixVerdict
	n        int // the length of the shortest prefix; 0 when there are none
}

type verdict uint8

const (
	pass      verdict = iota
	stripped          // removed unless kept
	alwaysOut         // removed whatever is kept
)

type prefixVerdict struct {
	prefix string
	v      verdict
}

// rules are entries (names, or prefixes followed by "*") with their verdict.
type rules struct {
	v       verdict
	entries []string
}

// newHeaderSet builds a set from rules; where rules overlap, the stronger verdict wins.
func newHeaderSet(list ...rules) *headerSet {
	s := &headerSet{exact: map[string]verdict{}, prefixes: map[string][]prefixVerdict{}}
	var prefixes []prefixVerdict
	for _, r := range list {
		for _, e := range r.entries {
			e = strings.ReplaceAll(e, "_", "-") // as drops reads names
			if p, ok := strings.CutSuffix(e, "*"); ok {
				if p = canonicalPrefix(p); p != "" {
					prefixes = append(prefixes, prefixVerdict{p, r.v})
				}
			} else if e != "" {
				name := textproto.CanonicalMIMEHeaderKey(e)
				s.exact[name] = max(s.exact[name], r.v)
			}
		}
	}
	for _, p := range prefixes {
		if s.n == 0 || len(p.prefix) < s.n {
			s.n = len(p.prefix)
		}
	}
	for _, p := range prefixes {
		s.prefixes[p.prefix[:s.n]] = append(s.prefixes[p.prefix[:s.n]], p)
	}
	return s
}

// canonicalPrefix is the canonical form of a header name prefix: "x-auth-" is "X-Auth-".
func canonicalPrefix(p string) string {
	c := textproto.CanonicalMIMEHeaderKey(p + "a")
	return c[:len(c)-1]
}

func (s *headerSet) empty() bool { return len(s.exact) == 0 && s.n == 0 }

// lookup returns the strongest verdict on the canonical name.
func (s *headerSet) lookup(name string) verdict {
	v := s.exact[name]
	if v == alwaysOut || s.n == 0 || len(name) < s.n {
		return v
	}
	for _, p := range s.prefixes[name[:s.n]] {
		if p.v > v && strings.HasPrefix(name, p.prefix) {
			v = p.v
		}
	}
	return v
}

// requestFilter decides which of the browser's request headers reach the upstream.
type requestFilter struct {
	out  *headerSet // alwaysStripped, defaultStripped and Config.StripHeaders
	keep *headerSet // Config.KeepHeaders
}

func newRequestFilter(strip, keep []string) *requestFilter {
	return &requestFilter{
		out:  newHeaderSet(rules{alwaysOut, alwaysStripped}, rules{stripped, defaultStripped}, rules{stripped, strip}),
		keep: newHeaderSet(rules{stripped, keep}),
	}
}

// drops reports whether a request header must not be forwarded. Names are canonical
// (net/http parsed them); one with "_" is judged as if it had "-" instead, because CGI,
// WSGI and Rack upstreams read X_User and X-User as the same HTTP_X_USER.
func (f *requestFilter) drops(name string, also *HeaderNames) bool {
	if strings.IndexByte(name, '_') >= 0 {
		name = textproto.CanonicalMIMEHeaderKey(strings.ReplaceAll(name, "_", "-"))
	}
	if also != nil && also.set.lookup(name) != pass {
		return true
	}
	switch f.out.lookup(name) {
	case alwaysOut:
		return true
	case stripped:
		return f.keep.empty() || f.keep.lookup(name) == pass
	}
	return false
}

// HeaderNames is a set of request header names that Forward.Strip removes whatever
// Config.KeepHeaders says: the names under which the gateway itself tells upstreams who
// the user is. Build it once (NewHeaderNames) and share it; it is read-only.
type HeaderNames struct{ set *headerSet }

// NewHeaderNames returns the set of these header names (no prefixes). A name with "_"
// matches its "-" spelling too, as the other strip lists do.
func NewHeaderNames(names ...string) *HeaderNames {
	var exact []string
	for _, n := range names {
		if n != "" && !strings.HasSuffix(n, "*") {
			exact = append(exact, n)
		}
	}
	return &HeaderNames{set: newHeaderSet(rules{alwaysOut, exact})}
}

// CheckHeaderRules checks entries for Config.StripHeaders and Config.KeepHeaders and
// describes each problem, naming the entry: an entry is a header name, or a prefix of
// one followed by "*"; a kept entry must be one that would be stripped otherwise, and
// cannot be one of the headers that are always stripped.
func CheckHeaderRules(strip, keep []string) (stripProblems, keepProblems []string) {
	valid := func(e string) bool {
		p, _ := strings.CutSuffix(e, "*")
		return p != "" && !strings.Contains(p, "*") && validToken(p)
	}
	stripped := slices.Clone(defaultStripped)
	for _, e := range strip {
		if !valid(e) {
			stripProblems = append(stripProblems, fmt.Sprintf("%q is not a header name or a prefix of one followed by *", e))
			continue
		}
		stripped = append(stripped, e)
	}
	for _, e := range keep {
		switch {
		case !valid(e):
			keepProblems = append(keepProblems, fmt.Sprintf("%q is not a header name or a prefix of one followed by *", e))
		case strings.HasPrefix(canonicalPrefix(strings.ReplaceAll(strings.TrimSuffix(e, "*"), "_", "-")), "X-Gatehouse-"):
			keepProblems = append(keepProblems, fmt.Sprintf("%q is a Gatehouse header, which is always removed", e))
		case slices.ContainsFunc(alwaysStripped, func(a string) bool { return overlap(a, e) }):
			keepProblems = append(keepProblems, fmt.Sprintf("%q is a forwarding or method/path override header, which is always removed", e))
		case !slices.ContainsFunc(stripped, func(s string) bool { return overlap(s, e) }):
			keepProblems = append(keepProblems, fmt.Sprintf("%q is not removed anyway (it is not in the strip list)", e))
		}
	}
	return stripProblems, keepProblems
}

// overlap reports whether two entries (names or prefixes with "*") match a common name.
func overlap(a, b string) bool {
	canon := func(e string) (string, bool) {
		if p, ok := strings.CutSuffix(e, "*"); ok {
			return canonicalPrefix(strings.ReplaceAll(p, "_", "-")), true
		}
		return textproto.CanonicalMIMEHeaderKey(strings.ReplaceAll(e, "_", "-")), false
	}
	pa, aPrefix := canon(a)
	pb, bPrefix := canon(b)
	switch {
	case aPrefix && bPrefix:
		return strings.HasPrefix(pa, pb) || strings.HasPrefix(pb, pa)
	case aPrefix:
		return strings.HasPrefix(pb, pa)
	case bPrefix:
		return strings.HasPrefix(pa, pb)
	}
	return pa == pb
}

// validToken reports whether s is an RFC 9110 token, as header names are.
func validToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// filterResponseHeader removes what an upstream may not send the browser, in a final
// response and in an informational one alike: Set-Cookie for the gateway's own cookies.
func (p *Proxy) filterResponseHeader(h http.Header) {
	vals := h["Set-Cookie"]
	if len(vals) == 0 {
		return
	}
	kept := vals[:0]
	for _, v := range vals {
		c, err := http.ParseSetCookie(v)
		if err != nil || p.cfg.ProtectedCookie(c.Name) {
			continue
		}
		kept = append(kept, v)
	}
	if len(kept) == 0 {
		delete(h, "Set-Cookie")
		return
	}
	h["Set-Cookie"] = kept
}

// hopHeaders are the hop-by-hop headers ReverseProxy removes from final responses
// (RFC 9110 §7.6.1), which it leaves in informational ones.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		delete(h, name)
	}
}

// writer is the ResponseWriter ReverseProxy writes to. ReverseProxy passes an upstream's
// informational responses (103 Early Hints, …) on from a client trace: it copies their
// headers into the header map, calls WriteHeader and then clears the map. writer filters
// such headers as final ones are filtered (hop-by-hop headers, the gateway's cookies);
// and since the map also holds what the gateway set before forwarding (a renewed cookie,
// Connection: close), those are held back from the 1xx and put back after it.
type writer struct {
	http.ResponseWriter
	p       *Proxy
	own     http.Header // the headers set before Serve, nil for none (the usual case)
	cleared bool        // a 1xx was written: ReverseProxy has cleared the map since
}

func (w *writer) Header() http.Header {
	h := w.ResponseWriter.Header()
	if w.cleared {
		w.cleared = false
		for k, v := range w.own {
			h[k] = append(slices.Clone(v), h[k]...)
		}
	}
	return h
}

func (w *writer) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		h := w.Header()
		for k, v := range w.own {
			// ReverseProxy appended the upstream's values to the gateway's.
			if rest := h[k][min(len(v), len(h[k])):]; len(rest) > 0 {
				h[k] = rest
			} else {
				delete(h, k)
			}
		}
		removeHopByHop(h)
		w.p.filterResponseHeader(h)
		w.cleared = w.own != nil
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap gives http.ResponseController the writer underneath, for Flush and Hijack.
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
