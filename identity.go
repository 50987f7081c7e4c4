package gatehouse

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/upstream"
)

// Identity for upstreams that cannot read an access token: a route's identity: block
// sets headers from the session's claims (X-User: preferred_username) and, with
// assertion: true, a short-lived JWT signed by the gateway (X-Gatehouse-Assertion) whose
// keys are published at JWKSPath. The browser never gets to send any of these headers:
// the names every route configures, and X-Gatehouse-*, are stripped on every route.

// AssertionHeader carries the gateway-signed identity assertion to an upstream.
const AssertionHeader = "X-Gatehouse-Assertion"

// JWKSPath is where the public keys of the identity assertions are published, on the
// public listener.
const JWKSPath = "/.well-known/gatehouse/jwks.json"

// MaxAssertionTTL is the longest an identity assertion may live (identity.assertion_ttl).
const MaxAssertionTTL = 60 * time.Second

// reservedAssertionClaims are set by the gateway in every assertion; a route cannot
// copy a session claim over them.
var reservedAssertionClaims = []string{"iss", "aud", "sub", "iat", "exp", "nbf", "jti"}

// routeIdentity is a route's identity: block, prepared once per configuration.
type routeIdentity struct {
	headers   []identityHeader // in header name order
	assertion bool
	audience  string
	claims    []string // copied into the assertion
}

type identityHeader struct {
	name  string // canonical
	claim string
}

func newRouteIdentity(r Route, origin, prefix string) *routeIdentity {
	if r.Identity == nil {
		return nil
	}
	id := &routeIdentity{assertion: r.Identity.Assertion, audience: r.Identity.Audience}
	for name, claim := range r.Identity.Headers {
		id.headers = append(id.headers, identityHeader{name: textproto.CanonicalMIMEHeaderKey(name), claim: claim})
	}
	slices.SortFunc(id.headers, func(a, b identityHeader) int { return strings.Compare(a.name, b.name) })
	switch {
	case id.audience != "":
	case r.Upstream != "":
		id.audience = r.Upstream
	default:
		id.audience = origin + prefix
	}
	if r.Identity.Claims != nil {
		id.claims = slices.Clone(r.Identity.Claims)
	} else {
		for _, h := range id.headers {
			if !slices.Contains(reservedAssertionClaims, h.claim) && !slices.Contains(id.claims, h.claim) {
				id.claims = append(id.claims, h.claim)
			}
		}
	}
	return id
}

// generatedKeyWarning is logged when routes send assertions signed by a key generated at
// start.
const generatedKeyWarning = "identity assertions are signed with a key generated at start: every replica and every restart has another one; " +
	"set identity.signing_key_file (shared by the replicas) so that upstreams keep verifying them"

// signsWithGeneratedKey reports whether a route of c sends assertions without a
// configured key.
func (c *Config) signsWithGeneratedKey() bool {
	if c.Identity.SigningKey != nil {
		return false
	}
	return slices.ContainsFunc(c.Routes, func(r Route) bool { return r.Identity != nil && r.Identity.Assertion })
}

// identityStrip is the set of identity header names configured on any route, or nil
// when none is: every forward strips them from what the browser sent.
func identityStrip(routes []Route) *upstream.HeaderNames {
	var names []string
	for _, r := range routes {
		if r.Identity != nil {
			for name := range r.Identity.Headers {
				names = append(names, name)
			}
		}
	}
	if len(names) == 0 {
		return nil
	}
	return upstream.NewHeaderNames(names...)
}

// setIdentity sets rt's identity headers and assertion for session s into h. Nothing is
// set without a session or without an identity: block. A claim whose value cannot be a
// header (an object, or text with control characters) leaves its header out, with a
// warning that names the header and the claim but never the value. The error is a
// failure to sign the assertion.
func (g *Gateway) setIdentity(h http.Header, rt *route, s *session.Session) error {
	id := rt.identity
	if id == nil || s == nil {
		return nil
	}
	for _, ih := range id.headers {
		v, ok := claimValue(s, ih.claim)
		if !ok {
			continue
		}
		text, ok := headerText(v)
		if !ok {
			g.log.Warn("identity header left out: its claim's value cannot be sent as a header (an object, or control characters)",
				"route", rt.prefix, "header", ih.name, "claim", ih.claim)
			continue
		}
		h[ih.name] = []string{text}
	}
	if id.assertion {
		a, err := g.identityKeys.sign(g.assertionClaims(rt, s))
		if err != nil {
			return err
		}
		h[AssertionHeader] = []string{a}
	}
	return nil
}

// claimValue is the session's claim; "sub" is the session's subject.
func claimValue(s *session.Session, name string) (any, bool) {
	if name == "sub" {
		return s.Subject, s.Subject != ""
	}
	v, ok := s.Claims[name]
	return v, ok && v != nil
}

// headerText formats a claim for a header: strings as they are, numbers and booleans
// in their JSON form, arrays of those joined with ",". Anything else, and any text with
// a control character (CR and LF above all), is refused.
func headerText(v any) (string, bool) {
	var s string
	switch x := v.(type) {
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			p, ok := scalarText(e)
			if !ok {
				return "", false
			}
			parts = append(parts, p)
		}
		s = strings.Join(parts, ",")
	case []string:
		s = strings.Join(x, ",")
	default:
		var ok bool
		if s, ok = scalarText(v); !ok {
			return "", false
		}
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return "", false
		}
	}
	return s, true
}

func scalarText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case json.Number:
		return x.String(), true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	}
	return "", false
}

// assertionClaims are the assertion's claims for s on rt.
func (g *Gateway) assertionClaims(rt *route, s *session.Session) map[string]any {
	id := rt.identity
	now := g.now()
	ttl := g.config().Identity.AssertionTTL
	var jti [16]byte
	rand.Read(jti[:])
	c := make(map[string]any, 6+len(id.claims))
	for _, name := range id.claims {
		if v, ok := s.Claims[name]; ok && v != nil {
			c[name] = v
		}
	}
	c["iss"] = g.origin
	c["aud"] = id.audience
	c["sub"] = s.Subject
	c["iat"] = now.Unix()
	c["exp"] = now.Add(ttl).Unix()
	c["jti"] = base64.RawURLEncoding.EncodeToString(jti[:])
	return c
}

// assertionKeys signs the identity assertions with the current key and publishes it,
// with the keys it replaced for a while (the overlap): an assertion signed just before
// a rotation still verifies against the JWKS until it expires. Safe for concurrent use:
// signing reads an atomic pointer; rotations and the JWKS take mu.
type assertionKeys struct {
	cur atomic.Pointer[assertionKey]

	mu         sync.Mutex
	configured bool         // cur came from identity.signing_key_file
	retired    []retiredKey // newest first
}

type assertionKey struct {
	signer jose.Signer
	public jose.JSONWebKey
}

type retiredKey struct {
	public jose.JSONWebKey
	until  time.Time
}

// maxRetiredKeys bounds the keys published besides the current one.
const maxRetiredKeys = 4

// keyOverlap is how long a replaced key stays in the JWKS: twice the assertions'
// lifetime and a minute, so that every assertion it signed expired before it goes.
func keyOverlap(ttl time.Duration) time.Duration { return 2*ttl + time.Minute }

// jwksMaxAge is the JWKS's Cache-Control max-age: the assertions' lifetime, shorter
// than the overlap, so a verifier's copy always holds the key of any live assertion.
func jwksMaxAge(ttl time.Duration) time.Duration { return ttl }

// newAssertionKey prepares k for signing; kid is its RFC 7638 thumbprint.
func newAssertionKey(k crypto.Signer) (*assertionKey, error) {
	alg, err := assertionAlg(k)
	if err != nil {
		return nil, err
	}
	pub := jose.JSONWebKey{Key: k.Public(), Algorithm: string(alg), Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("identity: key thumbprint: %w", err)
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: k, KeyID: pub.KeyID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	return &assertionKey{signer: signer, public: pub}, nil
}

// assertionAlg is the JWS algorithm of a signing key: ES256 for EC P-256, EdDSA for
// Ed25519; other keys are refused.
func assertionAlg(k crypto.Signer) (jose.SignatureAlgorithm, error) {
	switch x := k.(type) {
	case *ecdsa.PrivateKey:
		if x.Curve == elliptic.P256() {
			return jose.ES256, nil
		}
	case ed25519.PrivateKey:
		return jose.EdDSA, nil
	}
	return "", errors.New("identity: the signing key must be an EC P-256 (ES256) or Ed25519 (EdDSA) private key")
}

// generateAssertionKey makes a key for a gateway without identity.signing_key_file.
func generateAssertionKey(alg string) (crypto.Signer, error) {
	if alg == "EdDSA" {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// init sets the first key: the configured one, or a new one.
func (ks *assertionKeys) init(c IdentityConfig) error {
	k := c.SigningKey
	if k == nil {
		var err error
		if k, err = generateAssertionKey(c.Algorithm); err != nil {
			return fmt.Errorf("identity: generating a signing key: %w", err)
		}
	}
	ak, err := newAssertionKey(k)
	if err != nil {
		return err
	}
	ks.cur.Store(ak)
	ks.configured = c.SigningKey != nil
	return nil
}

// update makes c's key the signing key if it is another one than the current key
// (identity.signing_key_file changed, or was removed: then a new key is generated),
// and keeps the current one published until now + the overlap. It reports whether the
// key changed.
func (ks *assertionKeys) update(c IdentityConfig, now time.Time) (bool, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	old := ks.cur.Load()
	var k crypto.Signer
	switch {
	case c.SigningKey != nil:
		k = c.SigningKey
	case ks.configured:
		var err error
		if k, err = generateAssertionKey(c.Algorithm); err != nil {
			return false, fmt.Errorf("identity: generating a signing key: %w", err)
		}
	default:
		return false, nil // a generated key stays
	}
	ak, err := newAssertionKey(k)
	if err != nil {
		return false, err
	}
	if ak.public.KeyID == old.public.KeyID {
		return false, nil
	}
	ks.retired = slices.DeleteFunc(ks.retired, func(r retiredKey) bool {
		return r.public.KeyID == ak.public.KeyID || !r.until.After(now)
	})
	ks.retired = slices.Insert(ks.retired, 0, retiredKey{public: old.public, until: now.Add(keyOverlap(c.AssertionTTL))})
	ks.retired = ks.retired[:min(len(ks.retired), maxRetiredKeys)]
	ks.cur.Store(ak)
	ks.configured = c.SigningKey != nil
	return true, nil
}

// sign returns the compact JWS of claims, signed with the current key.
func (ks *assertionKeys) sign(claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("identity: assertion claims: %w", err)
	}
	jws, err := ks.cur.Load().signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("identity: signing the assertion: %w", err)
	}
	return jws.CompactSerialize()
}

// jwks is the published key set at now: the current key and the replaced ones still in
// their overlap.
func (ks *assertionKeys) jwks(now time.Time) jose.JSONWebKeySet {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{ks.cur.Load().public}}
	for _, r := range ks.retired {
		if r.until.After(now) {
			set.Keys = append(set.Keys, r.public)
		}
	}
	return set
}

// publicJWK is the published form of a public key: alg, use and kid (RFC 7638).
func publicJWK(pk crypto.PublicKey) (jose.JSONWebKey, error) {
	var alg jose.SignatureAlgorithm
	switch x := pk.(type) {
	case *ecdsa.PublicKey:
		if x.Curve == elliptic.P256() {
			alg = jose.ES256
		}
	case ed25519.PublicKey:
		alg = jose.EdDSA
	}
	if alg == "" {
		return jose.JSONWebKey{}, errors.New("identity: a published key must be an EC P-256 or Ed25519 public key")
	}
	k := jose.JSONWebKey{Key: pk, Algorithm: string(alg), Use: "sig"}
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return jose.JSONWebKey{}, err
	}
	k.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	return k, nil
}

// serveJWKS answers GET JWKSPath: the public keys of the identity assertions.
func (g *Gateway) serveJWKS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		g.fail(w, r, jsonOnly(errMethod))
		return
	}
	set := g.identityKeys.jwks(g.now())
	for _, pk := range g.config().Identity.PublishKeys {
		k, err := publicJWK(pk)
		if err == nil && !slices.ContainsFunc(set.Keys, func(have jose.JSONWebKey) bool { return have.KeyID == k.KeyID }) {
			set.Keys = append(set.Keys, k)
		}
	}
	body, err := json.Marshal(set)
	if err != nil {
		g.fail(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/jwk-set+json")
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(jwksMaxAge(g.config().Identity.AssertionTTL).Seconds())))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(body)
	}
}

// identityManaged are headers an identity: block cannot set: the gateway's own, and
// those that change how the request is read.
var identityManaged = []string{"Authorization", "Proxy-Authorization", "Cookie", "Host", "Dpop", "Forwarded",
	"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Connection", "Upgrade", "Te", "Trailer",
	"Transfer-Encoding", "Keep-Alive", "Content-Length", "Content-Type", "Content-Encoding", "Traceparent", "Tracestate"}

// checkIdentity validates identity: and the routes' identity: blocks.
func (c Config) checkIdentity() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	id := c.Identity
	switch id.Algorithm {
	case "", "ES256", "EdDSA":
	default:
		bad("identity.algorithm", "%q is not ES256 or EdDSA", id.Algorithm)
	}
	if id.SigningKey != nil {
		if alg, err := assertionAlg(id.SigningKey); err != nil {
			bad("identity.signing_key_file", "must be an EC P-256 (ES256) or Ed25519 (EdDSA) private key")
		} else if id.Algorithm != "" && string(alg) != id.Algorithm {
			bad("identity.algorithm", "is %s, but the signing key is an %s key", id.Algorithm, alg)
		}
	}
	for i, pk := range id.PublishKeys {
		if _, err := publicJWK(pk); err != nil {
			bad(fmt.Sprintf("identity.publish_keys_file[%d]", i), "must be an EC P-256 or Ed25519 public key")
		}
	}
	if id.AssertionTTL < time.Second || id.AssertionTTL > MaxAssertionTTL {
		bad("identity.assertion_ttl", "must be between 1s and %s", MaxAssertionTTL)
	}
	csrf := textproto.CanonicalMIMEHeaderKey(c.CSRF.Header)
	for i, r := range c.Routes {
		ri := r.Identity
		if ri == nil {
			continue
		}
		f := func(name string) string { return fmt.Sprintf("routes[%d].identity.%s", i, name) }
		if len(ri.Headers) == 0 && !ri.Assertion {
			bad(fmt.Sprintf("routes[%d].identity", i), "needs headers or assertion: true")
		}
		for name, claim := range ri.Headers {
			canon := textproto.CanonicalMIMEHeaderKey(name)
			_, static := r.Headers[name]
			for k := range r.Headers {
				static = static || textproto.CanonicalMIMEHeaderKey(k) == canon
			}
			switch {
			case !validHeaderName(name):
				bad(f("headers"), "%q is not a valid header name", name)
			case slices.Contains(identityManaged, canon) || canon == csrf || strings.HasPrefix(canon, "X-Gatehouse-"):
				bad(f("headers"), "%q is managed by Gatehouse", name)
			case static:
				bad(f("headers"), "%q is also one of the route's headers", name)
			}
			if strings.TrimSpace(claim) == "" {
				bad(f("headers"), "%q names no claim", name)
			}
		}
		if !ri.Assertion && (ri.Audience != "" || ri.Claims != nil) {
			bad(f("assertion"), "must be true with audience or claims")
		}
		for _, claim := range ri.Claims {
			switch {
			case strings.TrimSpace(claim) == "":
				bad(f("claims"), "holds an empty claim name")
			case slices.Contains(reservedAssertionClaims, claim):
				bad(f("claims"), "%q is set by Gatehouse in every assertion", claim)
			}
		}
	}
	return errs
}
