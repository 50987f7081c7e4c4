package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// caller is an authenticated request's token, described.
type caller struct {
	claims      map[string]any // the JWT's claims, or the userinfo answer for an opaque token
	kind        string         // "jwt" or "opaque"
	fingerprint string         // first 8 hex digits of sha256(token)
	issuedAt    *time.Time     // nil when unknown
	expiresAt   *time.Time     // nil when unknown
}

func (c *caller) subject() string {
	s, _ := c.claims["sub"].(string)
	return s
}

// authenticator checks bearer tokens against one provider. Its discovery result is kept
// once it succeeded; it holds no context.
type authenticator struct {
	issuer string
	client *http.Client

	mu       sync.Mutex
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
}

// discover loads the provider's metadata on first use; a failure is retried by the next
// request.
func (a *authenticator) discover(ctx context.Context) (*oidc.Provider, *oidc.IDTokenVerifier, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.provider == nil {
		p, err := oidc.NewProvider(oidc.ClientContext(ctx, a.client), a.issuer)
		if err != nil {
			return nil, nil, err
		}
		// An access token's audience is the API (or the client id, for devidp without
		// resource indicators), not a fixed client id: this demo API checks iss and exp only.
		a.provider, a.verifier = p, p.Verifier(&oidc.Config{SkipClientIDCheck: true})
	}
	return a.provider, a.verifier, nil
}

func (a *authenticator) authenticate(ctx context.Context, raw string) (*caller, error) {
	p, v, err := a.discover(ctx)
	if err != nil {
		return nil, &apiError{status: http.StatusServiceUnavailable, code: "unavailable", reason: "provider_unavailable", cause: err}
	}
	sum := sha256.Sum256([]byte(raw))
	c := &caller{fingerprint: hex.EncodeToString(sum[:4])}
	if strings.Count(raw, ".") != 2 {
		c.kind = "opaque"
		if c.claims, err = a.userinfo(ctx, p.UserInfoEndpoint(), raw); err != nil {
			return nil, err
		}
		return c, nil
	}

	c.kind = "jwt"
	tok, err := v.Verify(ctx, raw)
	if err != nil {
		reason := "invalid"
		if _, ok := errors.AsType[*oidc.TokenExpiredError](err); ok {
			reason = "expired"
		}
		return nil, &apiError{status: http.StatusUnauthorized, code: "invalid_token", reason: reason, cause: err}
	}
	if err := tok.Claims(&c.claims); err != nil {
		return nil, &apiError{status: http.StatusUnauthorized, code: "invalid_token", reason: "invalid", cause: err}
	}
	if !tok.IssuedAt.IsZero() {
		c.issuedAt = &tok.IssuedAt
	}
	c.expiresAt = &tok.Expiry
	return c, nil
}

// userinfo accepts an opaque token by asking the provider who it belongs to: the
// provider answers 401 for a token it did not issue or that expired.
func (a *authenticator) userinfo(ctx context.Context, endpoint, raw string) (map[string]any, error) {
	if endpoint == "" {
		return nil, &apiError{status: http.StatusUnauthorized, code: "invalid_token", reason: "opaque_token_unsupported",
			cause: errors.New("the provider has no userinfo endpoint")}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+raw)
	req.Header.Set("Accept", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, &apiError{status: http.StatusBadGateway, code: "bad_gateway", reason: "provider_unreachable", cause: err}
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, &apiError{status: http.StatusUnauthorized, code: "invalid_token", reason: "rejected_by_provider",
			cause: fmt.Errorf("userinfo answered %s", resp.Status)}
	case resp.StatusCode != http.StatusOK:
		return nil, &apiError{status: http.StatusBadGateway, code: "bad_gateway", reason: "userinfo_failed",
			cause: fmt.Errorf("userinfo answered %s", resp.Status)}
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
		return nil, &apiError{status: http.StatusBadGateway, code: "bad_gateway", reason: "userinfo_failed",
			cause: fmt.Errorf("userinfo answered %q, want application/json", mt)}
	}
	var claims map[string]any
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&claims); err != nil {
		return nil, &apiError{status: http.StatusBadGateway, code: "bad_gateway", reason: "userinfo_failed", cause: err}
	}
	if sub, _ := claims["sub"].(string); sub == "" {
		return nil, &apiError{status: http.StatusBadGateway, code: "bad_gateway", reason: "userinfo_failed",
			cause: errors.New("userinfo has no sub")}
	}
	return claims, nil
}
