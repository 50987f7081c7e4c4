package idp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Bounds of a distributed claims request.
const (
	distributedTimeout = 10 * time.Second
	distributedMaxBody = 1 << 20
)

// resolveDistributed applies OpenID Connect Core §5.6.2 to the claims of a login (ID
// token and userinfo merged): each claim named in Config.DistributedClaims that
// "_claim_names" points to a source for is read from that source, an "endpoint"
// fetched with the source's access_token or, without one, the user's (Bearer), or an
// aggregated "JWT". An answer is a JSON object, or a JWT signed with the provider's
// keys. "_claim_names" and "_claim_sources" are removed in every case: they are
// protocol data, and a source's access token must not reach /bff/user.
func (c *Client) resolveDistributed(ctx context.Context, d *discovered, claims map[string]any, accessToken, subject string) error {
	names, _ := claims["_claim_names"].(map[string]any)
	sources, _ := claims["_claim_sources"].(map[string]any)
	delete(claims, "_claim_names")
	delete(claims, "_claim_sources")
	if c.cfg.GraphGroups {
		_, overage := names["groups"]
		hasGroups, _ := claims["hasgroups"].(bool)
		delete(claims, "hasgroups")
		if overage || hasGroups {
			groups, err := c.graphGroups(ctx, accessToken)
			if err != nil {
				return fmt.Errorf("groups from Microsoft Graph: %w", err)
			}
			claims["groups"] = groups
			delete(names, "groups") // read: not again from the pointer's (retired) source
		}
	}
	fetched := map[string]map[string]any{} // by source, when several claims share one
	for _, name := range c.cfg.DistributedClaims {
		src, _ := names[name].(string)
		if src == "" {
			continue
		}
		from, ok := fetched[src]
		if !ok {
			source, _ := sources[src].(map[string]any)
			var err error
			if from, err = c.claimSource(ctx, d, source, accessToken, subject); err != nil {
				return fmt.Errorf("distributed claim %q: %w", name, err)
			}
			fetched[src] = from
		}
		if v, ok := from[name]; ok {
			claims[name] = v
		} else {
			delete(claims, name) // a stale value in the token would not be the source's
		}
	}
	return nil
}

// graphGroups reads the ids of every group and directory role the user is a member of,
// transitively, from Microsoft Graph (POST /v1.0/me/getMemberObjects), with the user's
// access token for Graph.
func (c *Client) graphGroups(ctx context.Context, accessToken string) ([]any, error) {
	base := strings.TrimSuffix(c.cfg.GraphURL, "/")
	if base == "" {
		base = "https://graph.microsoft.com"
	}
	ctx, cancel := context.WithTimeout(ctx, distributedTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1.0/me/getMemberObjects", strings.NewReader(`{"securityEnabledOnly":false}`))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRefused, redactURLError(err))
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, redactURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, distributedMaxBody+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: reading the answer: %v", ErrUnavailable, err)
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return nil, fmt.Errorf("%w: Graph answered %d", ErrUnavailable, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		// 401/403: the access token is not a Graph token with a group-reading scope.
		return nil, fmt.Errorf("%w: Graph answered %d (is the access token for Graph, with GroupMember.Read.All?)", ErrRefused, resp.StatusCode)
	case len(body) > distributedMaxBody:
		return nil, fmt.Errorf("%w: Graph's answer is larger than 1 MiB", ErrRefused)
	}
	var out struct {
		Value []any `json:"value"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.Value == nil {
		return nil, fmt.Errorf("%w: Graph's answer has no value list", ErrRefused)
	}
	for _, v := range out.Value {
		if _, ok := v.(string); !ok {
			return nil, fmt.Errorf("%w: Graph's value list holds a non-string", ErrRefused)
		}
	}
	return out.Value, nil
}

// claimSource reads the claims of one _claim_sources entry.
func (c *Client) claimSource(ctx context.Context, d *discovered, source map[string]any, accessToken, subject string) (map[string]any, error) {
	if raw, _ := source["JWT"].(string); raw != "" {
		return c.claimsJWT(ctx, d, raw, subject)
	}
	endpoint, _ := source["endpoint"].(string)
	u, err := url.Parse(endpoint)
	if endpoint == "" || err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
		return nil, fmt.Errorf("%w: the source has no usable https endpoint", ErrRefused)
	}
	token, _ := source["access_token"].(string)
	if token == "" {
		token = accessToken
	}
	ctx, cancel := context.WithTimeout(ctx, distributedTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: the source's endpoint: %v", ErrRefused, redactURLError(err))
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json, application/jwt")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: the source: %v", ErrUnavailable, redactURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, distributedMaxBody+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: the source: reading the answer: %v", ErrUnavailable, err)
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return nil, fmt.Errorf("%w: the source answered %d", ErrUnavailable, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%w: the source answered %d", ErrRefused, resp.StatusCode)
	case len(body) > distributedMaxBody:
		return nil, fmt.Errorf("%w: the source's answer is larger than 1 MiB", ErrRefused)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/jwt" {
		return c.claimsJWT(ctx, d, strings.TrimSpace(string(body)), subject)
	}
	var out map[string]any
	if err := json.Unmarshal(body, &out); err != nil || out == nil {
		return nil, fmt.Errorf("%w: the source's answer is neither a JSON object nor a JWT", ErrRefused)
	}
	return out, nil
}

// claimsJWT verifies a JWT of claims with the provider's keys and returns its claims; an
// expired one, or one about another subject, is refused.
func (c *Client) claimsJWT(ctx context.Context, d *discovered, raw, subject string) (map[string]any, error) {
	allowed := make([]jose.SignatureAlgorithm, 0, len(d.algs))
	for _, a := range d.algs {
		allowed = append(allowed, jose.SignatureAlgorithm(a))
	}
	if _, err := jose.ParseSignedCompact(raw, allowed); err != nil {
		return nil, fmt.Errorf("%w: the source's JWT: %v", ErrInvalidToken, err)
	}
	payload, err := d.keys.VerifySignature(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: the source's JWT: %v", ErrInvalidToken, err)
	}
	var out map[string]any
	if err := json.Unmarshal(payload, &out); err != nil || out == nil {
		return nil, fmt.Errorf("%w: the source's JWT holds no claims object", ErrInvalidToken)
	}
	if exp, ok := out["exp"].(float64); ok && c.now().Add(-c.cfg.ClockSkew).After(time.Unix(int64(exp), 0)) {
		return nil, fmt.Errorf("%w: the source's JWT has expired", ErrInvalidToken)
	}
	if sub, ok := out["sub"]; ok && sub != subject {
		return nil, fmt.Errorf("%w: the source's JWT is about another subject", ErrInvalidToken)
	}
	return out, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
