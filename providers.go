package gatehouse

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/url"
	"strconv"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatehouse-bff/gatehouse/idp"
	"github.com/gatehouse-bff/gatehouse/session"
)

// provider is one of an app's identity providers: Config.Providers[index], and its
// client. The first is the default.
type provider struct {
	name  string
	index int
	idp   *idp.Client
}

// newProviders makes a client for each configured provider. rt carries their requests
// (traced and measured); raw is the transport under it, which a provider with a TLS
// client certificate or its own CAs gets a copy of.
func (g *Gateway) newProviders(cfg Config, hc http.Client, raw, rt http.RoundTripper) error {
	for i, p := range cfg.Providers {
		phc := hc
		phc.Transport = rt
		if t, ok := raw.(*http.Transport); ok && (p.TLSClientCertificate != nil || p.TLSRootCAs != nil) {
			// RFC 8705's credential, or a private CA: on a copy of the transport, for this
			// provider only.
			t = t.Clone()
			if t.TLSClientConfig == nil {
				t.TLSClientConfig = &tls.Config{}
			}
			if cert := p.TLSClientCertificate; cert != nil {
				// Always this certificate: a self-signed one (self_signed_tls_client_auth)
				// is issued by none of the CAs a server lists in its request, and with
				// Certificates alone Go would then send none.
				t.TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
			}
			if p.TLSRootCAs != nil {
				t.TLSClientConfig.RootCAs = p.TLSRootCAs
			}
			var own http.RoundTripper = t
			if g.tracing.wrapProvider != nil {
				own = g.tracing.wrapProvider(own)
			}
			phc.Transport = &providerTransport{base: own, m: g.metrics, endpoint: func(r *http.Request) string { return g.providerEndpointName(r.URL) }}
		}
		c, err := idp.New(idp.Config{
			Issuer: p.Issuer, DiscoveryURL: p.DiscoveryURL, AllowedTenants: p.AllowedTenants, ClientID: p.ClientID, ClientSecret: p.ClientSecret,
			ClientKey: p.ClientKey, ClientKeyID: p.ClientKeyID, ClientKeyAlg: p.ClientKeyAlg, AuthMethod: p.AuthMethod, PAR: p.PAR,
			AssertionAudience: p.ClientAssertionAudience,
			RedirectURL:       g.base + "/bff/callback", Scopes: p.Scopes, EndSessionURL: p.EndSessionURL,
			RequireIssuerParam: p.RequireIssuerParam, SigningAlgs: p.SigningAlgs, ClockSkew: p.ClockSkew,
			SkipUserinfo: p.SkipUserinfo, DefaultTokenLifetime: p.DefaultTokenLifetime,
			TrustedAudiences: p.TrustedAudiences, DistributedClaims: p.DistributedClaims, Logger: g.log,
			GraphGroups: p.GraphGroups, GraphURL: p.GraphURL,
			HTTPClient: &phc, Now: cfg.Now,
		})
		if err != nil {
			if len(cfg.Providers) > 1 {
				return &fieldError{field: "providers[" + strconv.Itoa(i) + "]", err: err}
			}
			return err
		}
		g.providers = append(g.providers, &provider{name: p.Name, index: i, idp: c})
	}
	g.idp = g.providers[0].idp
	return nil
}

// providerEndpointName names the provider endpoint u is (token, jwks, …) for metrics and
// spans: "other" when it is none of any provider's.
func (g *Gateway) providerEndpointName(u *url.URL) string {
	for _, p := range g.providers {
		if n := p.idp.EndpointName(u); n != "other" {
			return n
		}
	}
	return "other"
}

// providerNamed is the app's provider called name ("" is the default), or nil.
func (g *Gateway) providerNamed(name string) *provider {
	if name == "" {
		return g.providers[0]
	}
	for _, p := range g.providers {
		if p.name == name {
			return p
		}
	}
	return nil
}

// providerOf is the provider s signed in with. A session of a provider no longer
// configured gets nil: it cannot be refreshed or logged out at its provider.
func (g *Gateway) providerOf(s *session.Session) *provider {
	if s == nil || s.Provider == "" {
		return g.providers[0]
	}
	return g.providerNamed(s.Provider)
}

// cfgOf is p's configuration now.
func (g *Gateway) cfgOf(p *provider) *ProviderConfig {
	cfg := g.config()
	if p == nil || p.index >= len(cfg.Providers) {
		return &cfg.Provider
	}
	return &cfg.Providers[p.index]
}

// sessionProviderName is what a new session of p records: nothing for an app of one
// provider, so that its sessions stay valid when providers are added.
func (g *Gateway) sessionProviderName(p *provider) string {
	if len(g.providers) == 1 {
		return ""
	}
	return p.name
}

// logoutTokenProvider picks the provider a logout token is for by its (not yet
// verified) iss: the provider's own keys then verify it. nil when no provider has that
// issuer.
func (g *Gateway) logoutTokenProvider(raw string) *provider {
	if len(g.providers) == 1 {
		return g.providers[0]
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
		jose.ES256, jose.ES384, jose.ES512, jose.EdDSA})
	if err != nil {
		return g.providers[0] // its verification gives the error
	}
	var c struct {
		Issuer string `json:"iss"`
	}
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		return g.providers[0]
	}
	for _, p := range g.providers {
		if p.idp.IssuerMatches(c.Issuer) {
			return p
		}
	}
	return nil
}

// providersReady reports whether every provider's metadata is loaded, with the first
// problem.
func (g *Gateway) providersReady() (bool, error) {
	for _, p := range g.providers {
		if ok, err := p.idp.Ready(); !ok {
			if err != nil && len(g.providers) > 1 {
				err = &fieldError{field: "provider " + p.name, err: err}
			}
			return false, err
		}
	}
	return true, nil
}

// discoverAll runs discovery for every provider until each has succeeded.
func (g *Gateway) discoverAll(ctx context.Context) {
	defer close(g.done)
	done := make(chan struct{}, len(g.providers))
	for _, p := range g.providers {
		go func() {
			g.discoverLoop(ctx, p)
			done <- struct{}{}
		}()
	}
	for range g.providers {
		<-done
	}
}

// fieldError prefixes an error with what it is about.
type fieldError struct {
	field string
	err   error
}

func (e *fieldError) Error() string { return e.field + ": " + e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

// renderChooser answers /bff/login without ?provider= when login.chooser is on: a page
// with a link per provider, each starting the login there.
func (g *Gateway) renderChooser(w http.ResponseWriter, r *http.Request, returnURL string) {
	p := page{Title: "Sign in", Message: "Choose how to sign in."}
	for i, pv := range g.providers {
		label := g.config().Providers[i].Label
		if label == "" {
			label = pv.name
		}
		q := url.Values{"provider": {pv.name}, "returnUrl": {returnURL}}
		p.Choices = append(p.Choices, pageLink{Href: g.basePath + "/bff/login?" + q.Encode(), Text: label})
	}
	g.renderPage(w, http.StatusOK, p)
}
