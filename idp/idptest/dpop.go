package idptest

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// dpopClaims are a DPoP proof's claims (RFC 9449 §4.2).
type dpopClaims struct {
	jwt.Claims
	HTM   string `json:"htm"`
	HTU   string `json:"htu"`
	ATH   string `json:"ath"`
	Nonce string `json:"nonce"`
}

// CheckDPoPProof verifies a DPoP proof as a server does (RFC 9449 §4.3): typ dpop+jwt,
// an asymmetric algorithm, a public JWK in the header that verifies the signature, htm
// and htu for this request, an iat within a minute, ath for accessToken when one is
// given, and nonce when one is wanted. It returns the key's thumbprint (jkt) and the
// proof's jti. Tests of resource servers use it too.
func CheckDPoPProof(proof, method, htu, accessToken, nonce string, now time.Time) (jkt, jti, problem string) {
	tok, err := jwt.ParseSigned(proof, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256, jose.PS256})
	if err != nil || len(tok.Headers) != 1 {
		return "", "", "not a signed JWT"
	}
	h := tok.Headers[0]
	if h.ExtraHeaders["typ"] != "dpop+jwt" || h.JSONWebKey == nil || !h.JSONWebKey.IsPublic() {
		return "", "", "typ or jwk header wrong"
	}
	var c dpopClaims
	if err := tok.Claims(h.JSONWebKey.Key, &c); err != nil {
		return "", "", "signature"
	}
	if c.HTM != method || c.HTU != htu || c.ID == "" || c.IssuedAt == nil || now.Sub(c.IssuedAt.Time()).Abs() > time.Minute {
		return "", "", "htm, htu, jti or iat wrong"
	}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		if c.ATH != base64.RawURLEncoding.EncodeToString(sum[:]) {
			return "", "", "ath wrong"
		}
	}
	if nonce != "" && c.Nonce != nonce {
		return "", "", "nonce"
	}
	tp, err := h.JSONWebKey.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", "", "thumbprint"
	}
	return base64.RawURLEncoding.EncodeToString(tp), c.ID, ""
}

// dpopTokenRequest checks a token request's DPoP proof when the knobs ask for DPoP, and
// answers the request itself (false) when it is refused. jkt is the proof's key, "" when
// the request carries none (the token is then a bearer token).
func (p *Provider) dpopTokenRequest(w http.ResponseWriter, r *http.Request, k Knobs) (jkt string, ok bool) {
	proof := r.Header.Get("DPoP")
	if !k.DPoP || proof == "" {
		return "", true
	}
	p.count("dpop_proof")
	jkt, jti, problem := CheckDPoPProof(proof, http.MethodPost, p.Issuer+"/token", "", "", p.now())
	if problem == "" {
		p.mu.Lock()
		if p.jtis == nil {
			p.jtis = map[string]bool{}
		}
		if p.jtis["dpop:"+jti] {
			problem = "replayed"
		}
		p.jtis["dpop:"+jti] = true
		p.mu.Unlock()
	}
	if problem != "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_dpop_proof"})
		return "", false
	}
	if k.DPoPNonce != "" {
		if _, _, bad := CheckDPoPProof(proof, http.MethodPost, p.Issuer+"/token", "", k.DPoPNonce, p.now()); bad != "" {
			p.count("use_dpop_nonce")
			w.Header().Set("DPoP-Nonce", k.DPoPNonce)
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "use_dpop_nonce"})
			return "", false
		}
	}
	return jkt, true
}

// BoundTo returns the thumbprint of the key an access token is bound to (DPoP), and
// whether it is bound.
func (p *Provider) BoundTo(accessToken string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	jkt, ok := p.bound[accessToken]
	return jkt, ok
}

// dpopUserinfo checks a userinfo request's token: a bound token must come with the
// DPoP scheme and a proof of its key for it; a bearer one with Bearer.
func (p *Provider) dpopUserinfo(r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	scheme, token, _ := strings.Cut(auth, " ")
	p.mu.Lock()
	jkt, bound := p.bound[token]
	p.mu.Unlock()
	if !bound {
		return strings.EqualFold(scheme, "Bearer") && strings.HasPrefix(token, "at-")
	}
	if !strings.EqualFold(scheme, "DPoP") {
		return false
	}
	got, _, problem := CheckDPoPProof(r.Header.Get("DPoP"), r.Method, p.Issuer+"/userinfo", token, "", p.now())
	return problem == "" && got == jkt
}
