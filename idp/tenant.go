package idp

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// TenantPlaceholder in Config.Issuer makes the issuer a template, as multi-tenant
// providers publish it (Microsoft Entra ID's common and organizations endpoints:
// https://login.microsoftonline.com/{tenantid}/v2.0). The discovery document must name
// the template itself; every token's "iss" must be the template with the token's "tid"
// claim, a tenant id, in place of the placeholder.
const TenantPlaceholder = "{tenantid}"

// DiscoveryTenant replaces TenantPlaceholder in the default discovery URL of a template
// issuer: Entra's endpoint for work, school and personal accounts alike.
const DiscoveryTenant = "common"

// ErrTenantNotAllowed: a token (or an authorization response) came from a tenant that
// Config.AllowedTenants does not list. Errors wrapping it wrap ErrInvalidToken or
// ErrRefused too.
var ErrTenantNotAllowed = errors.New("idp: the tenant is not allowed")

// IsTenantID reports whether s looks like a tenant id: a GUID in lower-case hex with
// dashes (8-4-4-4-12), the form of Entra's "tid" claim.
func IsTenantID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}

// CheckIssuerTemplate checks where TenantPlaceholder appears in an issuer: at most once,
// as a whole path segment. An issuer without it is not a template and passes.
func CheckIssuerTemplate(issuer string) error {
	n := strings.Count(issuer, TenantPlaceholder)
	if n == 0 {
		return nil
	}
	if n > 1 {
		return fmt.Errorf("%s may appear once", TenantPlaceholder)
	}
	u, err := url.Parse(strings.Replace(issuer, TenantPlaceholder, "t", 1))
	if err != nil || u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", issuer)
	}
	i := strings.Index(issuer, TenantPlaceholder)
	pathStart := len(u.Scheme) + len("://") + len(u.Host)
	rest := issuer[i+len(TenantPlaceholder):]
	if i <= pathStart || issuer[i-1] != '/' || (rest != "" && rest[0] != '/') || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%s must be a whole path segment of the issuer (as in https://login.microsoftonline.com/%s/v2.0)", TenantPlaceholder, TenantPlaceholder)
	}
	return nil
}

// template returns the parts of a template issuer around the placeholder, or ok false.
func (c *Client) template() (prefix, suffix string, ok bool) {
	return strings.Cut(c.cfg.Issuer, TenantPlaceholder)
}

// IsTemplate reports whether the configured issuer holds TenantPlaceholder.
func (c *Client) IsTemplate() bool {
	_, _, ok := c.template()
	return ok
}

// IssuerMatches reports whether iss is this provider's: the configured issuer exactly, or
// for a template the template with a tenant id (IsTenantID) in place of the
// placeholder. It does not apply AllowedTenants: a session of a tenant removed from the
// list since is still this provider's.
func (c *Client) IssuerMatches(iss string) bool {
	_, ok := c.tenantOf(iss)
	return ok
}

// tenantOf returns the tenant id iss names under a template issuer ("" for a plain
// issuer), and whether iss is this provider's at all.
func (c *Client) tenantOf(iss string) (string, bool) {
	prefix, suffix, ok := c.template()
	if !ok {
		return "", iss == c.cfg.Issuer
	}
	if len(iss) < len(prefix)+len(suffix) || !strings.HasPrefix(iss, prefix) || !strings.HasSuffix(iss, suffix) {
		return "", false
	}
	tid := iss[len(prefix) : len(iss)-len(suffix)]
	return tid, IsTenantID(tid)
}

// tenantAllowed applies Config.AllowedTenants (empty: every tenant).
func (c *Client) tenantAllowed(tid string) bool {
	return len(c.cfg.AllowedTenants) == 0 || slices.Contains(c.cfg.AllowedTenants, tid)
}

// checkTokenIssuer checks a verified token's iss against a template issuer: its "tid"
// claim must be a tenant id, iss the template filled with it, and the tenant allowed.
// go-oidc skipped its own issuer check only for templates; plain issuers never get here.
func (c *Client) checkTokenIssuer(iss string, tidClaim json.RawMessage) error {
	var tid string
	if len(tidClaim) == 0 || json.Unmarshal(tidClaim, &tid) != nil {
		return errors.New("no tid claim (a multi-tenant issuer needs it)")
	}
	if !IsTenantID(tid) {
		return errors.New("the tid claim is not a tenant id")
	}
	want := strings.Replace(c.cfg.Issuer, TenantPlaceholder, tid, 1)
	if subtle.ConstantTimeCompare([]byte(iss), []byte(want)) != 1 {
		return fmt.Errorf("iss %q is not the issuer of tenant %s", iss, tid)
	}
	if !c.tenantAllowed(tid) {
		return fmt.Errorf("%w: tenant %s", ErrTenantNotAllowed, tid)
	}
	return nil
}
