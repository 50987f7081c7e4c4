package idp

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// The logout-token fuzz targets verify tokens against a provider whose keys and clock
// are fixed, so that their seed corpora (testdata/fuzz/FuzzLogoutToken*) hold tokens that
// verify in every run: Ed25519 signatures are deterministic, the signing key comes from a
// fixed seed, and the issuer is a name that does not depend on the test server's port.
const (
	fuzzIssuer   = "https://idp.example"
	fuzzClientID = "gatehouse"
	fuzzKeyID    = "fuzz-key"
	fuzzTrusted  = "fuzz-trusted-audience" // in the client's TrustedAudiences
	fuzzSkew     = 30 * time.Second
	backchannel  = "http://schemas.openid.net/event/backchannel-logout"
)

// fuzzNow is the provider's and the gateway's clock in the fuzz targets.
var fuzzNow = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func fixedKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("gatehouse idp fuzz key: " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

var (
	fuzzKey    = fixedKey("published")
	fuzzForged = fixedKey("forged") // never published
)

// newFuzzClient starts a provider serving discovery and the JWKS (the published key
// only) on 127.0.0.1, and returns a discovered Client for it.
func newFuzzClient(tb testing.TB) *Client {
	tb.Helper()
	mux := http.NewServeMux()
	var srv *httptest.Server
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": fuzzIssuer, "authorization_endpoint": fuzzIssuer + "/authorize",
			"token_endpoint": fuzzIssuer + "/token", "jwks_uri": srv.URL + "/jwks",
			"id_token_signing_alg_values_supported": []string{"EdDSA", "RS256"},
			"backchannel_logout_supported":          true,
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: fuzzKey.Public(), KeyID: fuzzKeyID, Algorithm: string(jose.EdDSA), Use: "sig"},
		}})
	})
	srv = httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	c, err := New(Config{
		Issuer: fuzzIssuer, DiscoveryURL: srv.URL + "/.well-known/openid-configuration",
		ClientID: fuzzClientID, ClientSecret: "fuzz-secret", TrustedAudiences: []string{fuzzTrusted},
		ClockSkew: fuzzSkew, Now: func() time.Time { return fuzzNow }, HTTPClient: srv.Client(),
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := c.Discover(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	return c
}

// logoutCase describes a logout token by its parts. The zero value with Sub, JTI and
// offsets in range is a valid token.
type logoutCase struct {
	Sub, SID, JTI  string
	IatOff, ExpOff int64 // seconds from fuzzNow
	Typ            string
	Flags          uint32
}

// Flags of a logoutCase: each makes the token differ from a valid one in one way.
const (
	omitIat           uint32 = 1 << iota
	omitExp                  //
	eventsShape1             // two bits: 0 {"…backchannel-logout": {}}, 1 another event only,
	eventsShape2             // 2 events not an object, 3 the member's value not an object
	withNonce                //
	wrongIss                 //
	audArray                 // aud as an array holding the client and a trusted audience (valid)
	wrongAud                 // aud of another client; with audArray, the client and another client
	signing1                 // two bits: 0 the published key, 1 an unpublished key,
	signing2                 // 2 HS256 with the client secret, 3 alg none
	withTyp                  // a typ header holding Typ
	wrongKid                 //
	noKid                    // no kid header (valid: every published key is tried)
	jsonSerialization        // the JWS JSON serialization instead of the compact one
	sidNumber                // sid is a number
	capitalEvents            // the claim is named "Events"
	withAzp                  // azp is the client (valid)
	foreignAzp               // azp is another client
)

const flagBits = 18

func (lc logoutCase) eventsShape() int { return int(lc.Flags>>2) & 3 }
func (lc logoutCase) signing() int     { return int(lc.Flags>>8) & 3 }

// clampOffset keeps a fuzzed offset within ±2^40 s, where JSON numbers are exact.
func clampOffset(off int64) int64 { return off % (1 << 40) }

// token builds the token lc describes.
func (lc logoutCase) token(tb testing.TB) string {
	tb.Helper()
	has := func(f uint32) bool { return lc.Flags&f != 0 }
	claims := map[string]any{"iss": fuzzIssuer, "aud": fuzzClientID, "jti": lc.JTI}
	if lc.Sub != "" {
		claims["sub"] = lc.Sub
	}
	if lc.SID != "" {
		claims["sid"] = lc.SID
	}
	if has(sidNumber) {
		claims["sid"] = 12345
	}
	if !has(omitIat) {
		claims["iat"] = fuzzNow.Unix() + clampOffset(lc.IatOff)
	}
	if !has(omitExp) {
		claims["exp"] = fuzzNow.Unix() + clampOffset(lc.ExpOff)
	}
	var events any
	switch lc.eventsShape() {
	case 0:
		events = map[string]any{backchannel: map[string]any{}}
	case 1:
		events = map[string]any{"http://schemas.openid.net/event/other": map[string]any{}}
	case 2:
		events = backchannel
	case 3:
		events = map[string]any{backchannel: true}
	}
	if has(capitalEvents) {
		claims["Events"] = events
	} else {
		claims["events"] = events
	}
	if has(withNonce) {
		claims["nonce"] = "n-0S6_WzA2Mj"
	}
	if has(wrongIss) {
		claims["iss"] = "https://evil.example"
	}
	switch {
	case has(audArray) && has(wrongAud):
		claims["aud"] = []string{"another-client", fuzzClientID}
	case has(audArray):
		claims["aud"] = []string{fuzzTrusted, fuzzClientID}
	case has(wrongAud):
		claims["aud"] = "another-client"
	}
	if has(withAzp) {
		claims["azp"] = fuzzClientID
	}
	if has(foreignAzp) {
		claims["azp"] = "another-client"
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}

	if lc.signing() == 3 {
		header := `{"alg":"none"}`
		return b64(header) + "." + base64.RawURLEncoding.EncodeToString(payload) + "."
	}
	sk := jose.SigningKey{Algorithm: jose.EdDSA, Key: fuzzKey}
	switch lc.signing() {
	case 1:
		sk.Key = fuzzForged
	case 2:
		sk = jose.SigningKey{Algorithm: jose.HS256, Key: []byte("fuzz-secret-fuzz-secret-fuzz-secret")}
	}
	opts := &jose.SignerOptions{}
	switch {
	case has(noKid):
	case has(wrongKid):
		opts = opts.WithHeader("kid", "another-key")
	default:
		opts = opts.WithHeader("kid", fuzzKeyID)
	}
	if has(withTyp) {
		opts = opts.WithType(jose.ContentType(lc.Typ))
	}
	signer, err := jose.NewSigner(sk, opts)
	if err != nil {
		tb.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		tb.Fatal(err)
	}
	if has(jsonSerialization) {
		return jws.FullSerialize()
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// jsonString is s as it reads back from JSON (invalid UTF-8 becomes U+FFFD).
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	var out string
	json.Unmarshal(b, &out)
	return out
}

// acceptableTyp is the typ header policy of checkLogoutTyp for a typ that is present:
// logout+jwt (with or without application/), or plain JWT, in any case; never empty.
func acceptableTyp(typ string) bool {
	switch strings.ToLower(typ) {
	case "logout+jwt", "application/logout+jwt", "jwt":
		return true
	}
	return false
}

// expect is what OpenID Connect Back-Channel Logout 1.0 §2.6 (and Gatehouse's typ
// policy) says of lc: accepted or not, and why not. known names a way in which the
// implementation is known to be more lenient than the specification (reported, see
// FuzzLogoutToken): then either outcome passes.
func (lc logoutCase) expect() (accept bool, why, known string) {
	has := func(f uint32) bool { return lc.Flags&f != 0 }
	switch {
	case lc.signing() == 1:
		return false, "signed with an unpublished key", ""
	case lc.signing() == 2:
		return false, "HS256 (not an advertised algorithm)", ""
	case lc.signing() == 3:
		return false, "alg none", ""
	case has(wrongKid) && !has(noKid):
		return false, "kid names no published key", ""
	case has(jsonSerialization):
		return false, "JWS JSON serialization", ""
	case has(withTyp) && !acceptableTyp(jsonString(lc.Typ)):
		return false, "typ " + lc.Typ, ""
	case has(withNonce):
		return false, "nonce", ""
	case has(wrongIss):
		return false, "iss of another issuer", ""
	case has(wrongAud):
		return false, "aud of another client", ""
	case has(foreignAzp):
		return false, "azp of another client", ""
	case has(omitIat):
		return false, "no iat", ""
	case has(omitExp):
		return false, "no exp", ""
	case clampOffset(lc.IatOff) > int64((fuzzSkew + time.Minute).Seconds()):
		return false, "iat in the future", ""
	case clampOffset(lc.ExpOff) < -int64(fuzzSkew.Seconds()):
		return false, "expired", ""
	case lc.JTI == "":
		return false, "no jti", ""
	case has(sidNumber):
		return false, "sid is not a string", ""
	case lc.Sub == "" && lc.SID == "":
		return false, "neither sub nor sid", ""
	case has(capitalEvents):
		// Claim names are case-sensitive (RFC 7519 §4): a token whose claim is named
		// "Events" has no events claim. go-oidc decodes claims with encoding/json, whose
		// field matching ignores case.
		return false, "no events claim, only Events", "claim names matched case-insensitively"
	case lc.eventsShape() == 1 || lc.eventsShape() == 2:
		return false, "no back-channel logout event", ""
	case lc.eventsShape() == 3:
		// §2.4: the event member's value MUST be a JSON object. go-oidc only checks that
		// the member is present.
		return false, "the event member is not a JSON object", "event member not checked to be an object"
	}
	return true, "", ""
}

// FuzzLogoutToken builds logout tokens from fuzzed claims, header and signing choices,
// and checks VerifyLogoutToken against the specification in both directions: every
// valid token is accepted with its claims, every invalid one refused with
// ErrInvalidToken, and nothing panics.
//
// Known leniencies, where either outcome passes (see expect): an events claim spelled
// with other capitals, and a back-channel logout event whose value is not a JSON object,
// are accepted. Both need a token the provider signed.
func FuzzLogoutToken(f *testing.F) {
	for _, lc := range logoutSeeds() {
		f.Add(lc.Sub, lc.SID, lc.JTI, lc.IatOff, lc.ExpOff, lc.Typ, lc.Flags)
	}
	c := newFuzzClient(f)
	f.Fuzz(func(t *testing.T, sub, sid, jti string, iatOff, expOff int64, typ string, flags uint32) {
		lc := logoutCase{Sub: sub, SID: sid, JTI: jti, IatOff: iatOff, ExpOff: expOff, Typ: typ, Flags: flags}
		raw := lc.token(t)
		lt, err := c.VerifyLogoutToken(t.Context(), raw)
		accept, why, known := lc.expect()
		if known != "" {
			if err == nil {
				t.Logf("accepted although %s: known leniency (%s)", why, known)
			}
			return
		}
		if !accept {
			if err == nil {
				t.Fatalf("accepted a logout token with %s: %+v\nflags %018b, token %s", why, lt, flags, raw)
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("refused a logout token with %s as %v; want ErrInvalidToken", why, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("refused a valid logout token: %v\nflags %018b, token %s", err, flags, raw)
		}
		sidWant := jsonString(sid)
		if lt.Subject != jsonString(sub) || lt.SID != sidWant || lt.JTI != jsonString(jti) ||
			!lt.IssuedAt.Equal(time.Unix(fuzzNow.Unix()+clampOffset(iatOff), 0)) ||
			!lt.Expiry.Equal(time.Unix(fuzzNow.Unix()+clampOffset(expOff), 0)) {
			t.Fatalf("verified token differs from its claims: %+v", lt)
		}
	})
}

// FuzzLogoutTokenRaw feeds arbitrary strings to the logout token parser. Nothing may
// panic; whatever is refused must be ErrInvalidToken; and whatever is accepted must be
// checked independently of go-jose and go-oidc: a compact JWS with alg EdDSA whose
// signature verifies with the published key, and claims that satisfy §2.6 by their exact
// names.
func FuzzLogoutTokenRaw(f *testing.F) {
	for _, raw := range rawLogoutSeeds(f) {
		f.Add(raw)
	}
	c := newFuzzClient(f)
	algs := []string{"EdDSA", "RS256"}
	f.Fuzz(func(t *testing.T, raw string) {
		typErr := checkLogoutTyp(raw, algs)
		lt, err := c.VerifyLogoutToken(t.Context(), raw)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("refused with %v; want ErrInvalidToken", err)
			}
			return
		}
		if typErr != nil {
			t.Fatalf("accepted a token whose header checkLogoutTyp refuses: %v", typErr)
		}
		problem, known := independentCheck(raw, lt)
		if problem != "" {
			t.Fatalf("accepted %q: %s", raw, problem)
		}
		if known != "" {
			t.Logf("accepted with a known leniency: %s", known)
		}
	})
}

// independentCheck verifies an accepted token with the standard library only and
// returns what is wrong with it, or "". known lists the known leniencies of
// VerifyLogoutToken (see FuzzLogoutToken) that the token relies on.
func independentCheck(raw string, lt *LogoutToken) (problem, known string) {
	problem, notes := check(raw, lt)
	return problem, strings.Join(notes, "; ")
}

func check(raw string, lt *LogoutToken) (string, []string) {
	var known []string
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "not three segments", known
	}
	dec := func(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
	hb, err1 := dec(parts[0])
	pb, err2 := dec(parts[1])
	sig, err3 := dec(parts[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return "a segment is not base64url: " + err.Error(), known
	}
	var header map[string]any
	if err := json.Unmarshal(hb, &header); err != nil {
		return "header is not a JSON object", known
	}
	if header["alg"] != "EdDSA" {
		return fmt.Sprintf("alg %v", header["alg"]), known
	}
	if kid, ok := header["kid"]; ok && kid != fuzzKeyID {
		return fmt.Sprintf("kid %v", kid), known
	}
	if typ, ok := header["typ"]; ok {
		if s, isString := typ.(string); !isString || !acceptableTyp(s) {
			return fmt.Sprintf("typ %v", typ), known
		}
	}
	// The signature covers the segments as encoded; a lenient decoder may have read
	// a different spelling of the same bytes, so check the canonical spelling too.
	input := parts[0] + "." + parts[1]
	canonical := b64(string(hb)) + "." + b64(string(pb))
	pub := fuzzKey.Public().(ed25519.PublicKey)
	if !ed25519.Verify(pub, []byte(input), sig) && !ed25519.Verify(pub, []byte(canonical), sig) {
		return "signature does not verify with the published key", known
	}
	var exact map[string]json.RawMessage
	if err := json.Unmarshal(pb, &exact); err != nil {
		return "payload is not a JSON object", known
	}
	// Claim names are case-sensitive; go-oidc also takes another spelling.
	claims := map[string]json.RawMessage{}
	for _, name := range []string{"iss", "aud", "azp", "events", "jti", "iat", "exp", "sub", "sid", "nonce"} {
		if v, ok := exact[name]; ok {
			claims[name] = v
			continue
		}
		for k, v := range exact {
			if strings.EqualFold(k, name) {
				claims[name] = v
				known = append(known, fmt.Sprintf("claim %q read as %q", k, name))
			}
		}
	}
	str := func(name string) (string, bool) {
		var s string
		err := json.Unmarshal(claims[name], &s)
		return s, err == nil && claims[name] != nil
	}
	num := func(name string) (int64, bool) {
		var n json.Number
		if claims[name] == nil || json.Unmarshal(claims[name], &n) != nil {
			return 0, false
		}
		i, err := n.Int64()
		return i, err == nil
	}
	if iss, _ := str("iss"); iss != fuzzIssuer {
		return "iss " + iss, known
	}
	var auds []string
	if a, ok := str("aud"); ok {
		auds = []string{a}
	} else if json.Unmarshal(claims["aud"], &auds) != nil {
		return "aud is neither a string nor an array of strings", known
	}
	if !slices.Contains(auds, fuzzClientID) {
		return fmt.Sprintf("aud %q", auds), known
	}
	for _, a := range auds {
		if a != fuzzClientID && a != fuzzTrusted {
			return fmt.Sprintf("untrusted audience %q", a), known
		}
	}
	if raw, ok := exact["azp"]; ok {
		if azp, isString := str("azp"); !isString || azp != fuzzClientID {
			return "azp " + string(raw), known
		}
	}
	var events map[string]json.RawMessage
	if json.Unmarshal(claims["events"], &events) != nil || events[backchannel] == nil {
		return "no back-channel logout event", known
	}
	if ev := bytes.TrimSpace(events[backchannel]); len(ev) == 0 || ev[0] != '{' {
		known = append(known, "event member "+string(ev)+" is not a JSON object")
	}
	if _, ok := claims["nonce"]; ok {
		return "nonce present", known
	}
	jti, _ := str("jti")
	sub, _ := str("sub")
	sid, _ := str("sid")
	iat, iatOK := num("iat")
	exp, expOK := num("exp")
	switch {
	case jti == "":
		return "no jti", known
	case sub == "" && sid == "":
		return "neither sub nor sid", known
	case !iatOK || time.Unix(iat, 0).After(fuzzNow.Add(fuzzSkew+time.Minute)):
		return "iat missing or in the future", known
	case !expOK || time.Unix(exp, 0).Before(fuzzNow.Add(-fuzzSkew)):
		return "exp missing or past", known
	case lt.Subject != sub || lt.SID != sid || lt.JTI != jti || lt.IssuedAt.Unix() != iat || lt.Expiry.Unix() != exp:
		return fmt.Sprintf("verified token %+v differs from its claims", lt), known
	}
	return "", known
}

// logoutSeeds are the seeds of FuzzLogoutToken: valid tokens, and tokens one step away.
func logoutSeeds() []logoutCase {
	valid := logoutCase{Sub: "alice", SID: "provider-session-1", JTI: "jti-1", IatOff: -5, ExpOff: 120, Typ: "logout+jwt", Flags: withTyp}
	with := func(change func(*logoutCase)) logoutCase {
		lc := valid
		change(&lc)
		return lc
	}
	seeds := []logoutCase{
		valid,
		with(func(lc *logoutCase) { lc.Flags = 0 }),                            // no typ (Dex)
		with(func(lc *logoutCase) { lc.Typ = "JWT" }),                          // typ JWT
		with(func(lc *logoutCase) { lc.Typ = "application/logout+JWT" }),       //
		with(func(lc *logoutCase) { lc.Typ = "at+jwt" }),                       // an access token
		with(func(lc *logoutCase) { lc.Typ = "" }),                             // empty typ
		with(func(lc *logoutCase) { lc.Sub = "" }),                             // sid only
		with(func(lc *logoutCase) { lc.SID = "" }),                             // sub only
		with(func(lc *logoutCase) { lc.Sub, lc.SID = "", "" }),                 // neither
		with(func(lc *logoutCase) { lc.JTI = "" }),                             //
		with(func(lc *logoutCase) { lc.IatOff = 90 }),                          // latest iat accepted
		with(func(lc *logoutCase) { lc.IatOff = 91 }),                          //
		with(func(lc *logoutCase) { lc.ExpOff = -30 }),                         // earliest exp accepted
		with(func(lc *logoutCase) { lc.ExpOff = -31 }),                         //
		with(func(lc *logoutCase) { lc.IatOff, lc.ExpOff = 60, -10 }),          // exp before iat: not checked
		with(func(lc *logoutCase) { lc.Sub = "al\xffice\u2028" }),              // invalid UTF-8
		with(func(lc *logoutCase) { lc.IatOff = -1 << 40 }),                    // a very old token
		with(func(lc *logoutCase) { lc.Typ = "logout+jwt\x00" }),               //
		with(func(lc *logoutCase) { lc.Flags |= audArray | noKid | withAzp }),  // valid variants
		with(func(lc *logoutCase) { lc.Flags |= audArray | wrongAud }),         // an untrusted audience besides us
		with(func(lc *logoutCase) { lc.Flags |= eventsShape1 | eventsShape2 }), // known leniency
		with(func(lc *logoutCase) { lc.Flags |= capitalEvents }),               // known leniency
	}
	for bit := range flagBits {
		f := uint32(1) << bit
		if f == withTyp || f == audArray || f == noKid || f == capitalEvents || f == withAzp {
			continue
		}
		seeds = append(seeds, with(func(lc *logoutCase) { lc.Flags |= f }))
	}
	seeds = append(seeds, with(func(lc *logoutCase) { lc.Flags |= signing1 | signing2 }))
	return seeds
}

// rawLogoutSeeds are the seeds of FuzzLogoutTokenRaw.
func rawLogoutSeeds(tb testing.TB) map[string]string {
	seeds := map[string]string{
		"empty": "", "dots": "..", "garbage": "not.a.token", "four-segments": "a.b.c.d",
		"header-only": b64(`{"alg":"EdDSA"}`) + "..",
	}
	for i, lc := range logoutSeeds() {
		seeds[fmt.Sprintf("case-%02d", i)] = lc.token(tb)
	}
	valid := logoutSeeds()[0].token(tb)
	parts := strings.Split(valid, ".")
	seeds["truncated-signature"] = valid[:len(valid)-4]
	seeds["extra-segment"] = valid + ".e30"
	seeds["swapped-segments"] = parts[1] + "." + parts[0] + "." + parts[2]
	seeds["newline-in-payload"] = parts[0] + "." + parts[1][:10] + "\n" + parts[1][10:] + "." + parts[2]
	seeds["padded-signature"] = valid + "=="
	seeds["other-header-same-signature"] = b64(`{"alg":"EdDSA","kid":"fuzz-key","typ":"at+jwt"}`) + "." + parts[1] + "." + parts[2]
	return seeds
}

// corpusFile encodes values in the format of Go's fuzzing corpus ("go test fuzz v1").
func corpusFile(vals ...any) []byte {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, v := range vals {
		switch v := v.(type) {
		case string:
			fmt.Fprintf(&b, "string(%q)\n", v)
		case int64, uint32:
			fmt.Fprintf(&b, "%T(%v)\n", v, v)
		default:
			panic(fmt.Sprintf("corpusFile: %T", v))
		}
	}
	return b.Bytes()
}

// TestLogoutFuzzCorpus checks that the committed seed corpora of the logout-token fuzz
// targets are the ones the current fixtures produce (they hold signed tokens, so a change
// of key, clock or issuer would make them stale). With GATEHOUSE_WRITE_FUZZ_CORPUS=1 it
// rewrites them instead.
func TestLogoutFuzzCorpus(t *testing.T) {
	want := map[string][]byte{}
	for i, lc := range logoutSeeds() {
		want[filepath.Join("FuzzLogoutToken", fmt.Sprintf("seed-%02d", i))] =
			corpusFile(lc.Sub, lc.SID, lc.JTI, lc.IatOff, lc.ExpOff, lc.Typ, lc.Flags)
	}
	for name, raw := range rawLogoutSeeds(t) {
		want[filepath.Join("FuzzLogoutTokenRaw", name)] = corpusFile(raw)
	}
	dir := filepath.Join("testdata", "fuzz")
	if os.Getenv("GATEHOUSE_WRITE_FUZZ_CORPUS") == "1" {
		for name, b := range want {
			os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755)
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, b := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s is missing or stale (rewrite with GATEHOUSE_WRITE_FUZZ_CORPUS=1 go test -run TestLogoutFuzzCorpus ./idp): %v", name, err)
		}
	}
	// And each valid seed verifies, each invalid one does not: the corpus means what
	// its names say.
	c := newFuzzClient(t)
	for i, lc := range logoutSeeds() {
		_, err := c.VerifyLogoutToken(t.Context(), lc.token(t))
		accept, why, known := lc.expect()
		if known == "" && (err == nil) != accept {
			t.Errorf("seed %02d (%s): VerifyLogoutToken = %v", i, why, err)
		}
	}
}
