package gatehouse

import (
	"os"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// There is no Traefik or Envoy binary in Debian to check their files with (nginx's and
// Caddy's are checked by their own tools in e2e): these tests read them as YAML and check
// what forward-auth depends on.

func readYAML(t *testing.T, path string) any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// dig walks maps by key and lists by index ("0").
func dig(t *testing.T, v any, path ...string) any {
	t.Helper()
	for _, k := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[k]
		case []any:
			i := 0
			for _, c := range k {
				i = i*10 + int(c-'0')
			}
			if i >= len(x) {
				t.Fatalf("no %s in %v", k, path)
			}
			v = x[i]
		default:
			t.Fatalf("no %s in %v", k, path)
		}
	}
	return v
}

func strs(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, e := range l {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
		if m, ok := e.(map[string]any); ok {
			if s, ok := m["exact"].(string); ok {
				out = append(out, s)
			}
			if s, ok := m["prefix"].(string); ok {
				out = append(out, s+"*")
			}
		}
	}
	return out
}

func TestDeployTraefikForwardAuth(t *testing.T) {
	v := readYAML(t, "deploy/forward-auth/traefik.yml")
	fa := dig(t, v, "http", "middlewares", "gatehouse-auth", "forwardAuth")
	if a, _ := dig(t, fa, "address").(string); !strings.HasSuffix(a, "/bff/auth") {
		t.Errorf("forwardAuth.address = %q", a)
	}
	if !slices.Contains(strs(dig(t, fa, "authResponseHeaders")), "Authorization") {
		t.Error("authResponseHeaders lacks Authorization")
	}
	if dig(t, fa, "trustForwardHeader") != false {
		t.Error("trustForwardHeader must be false: Traefik's own X-Forwarded-Uri only")
	}
	mw := strs(dig(t, v, "http", "routers", "api", "middlewares"))
	if len(mw) == 0 || mw[0] != "gatehouse-auth" {
		t.Errorf("the api router's middlewares %v do not start with gatehouse-auth", mw)
	}
}

func TestDeployEnvoyForwardAuth(t *testing.T) {
	v := readYAML(t, "deploy/forward-auth/envoy.yaml")
	hcm := dig(t, v, "static_resources", "listeners", "0", "filter_chains", "0", "filters", "0", "typed_config")
	filters, _ := dig(t, hcm, "http_filters").([]any)
	if len(filters) < 2 || dig(t, filters[0], "name") != "envoy.filters.http.ext_authz" {
		t.Fatalf("ext_authz is not the first HTTP filter: %v", filters)
	}
	ext := dig(t, filters[0], "typed_config")
	if dig(t, ext, "failure_mode_allow") != false {
		t.Error("failure_mode_allow must be false")
	}
	svc := dig(t, ext, "http_service")
	if dig(t, svc, "path_prefix") != "/bff/auth" {
		t.Errorf("path_prefix = %v", dig(t, svc, "path_prefix"))
	}
	allowed := strs(dig(t, svc, "authorization_request", "allowed_headers", "patterns"))
	for _, h := range []string{"cookie", "origin", "x-csrf", "sec-fetch-*"} {
		if !slices.Contains(allowed, h) {
			t.Errorf("authorization_request.allowed_headers lacks %s", h)
		}
	}
	for _, h := range []string{"x-original-uri", "x-forwarded-uri"} {
		if slices.Contains(allowed, h) {
			t.Errorf("a browser's %s would reach Gatehouse", h)
		}
	}
	if up := strs(dig(t, svc, "authorization_response", "allowed_upstream_headers", "patterns")); !slices.Contains(up, "authorization") {
		t.Error("allowed_upstream_headers lacks authorization")
	}
	routes, _ := dig(t, hcm, "route_config", "virtual_hosts", "0", "routes").([]any)
	if len(routes) == 0 || dig(t, routes[0], "match", "prefix") != "/bff/" ||
		dig(t, routes[0], "typed_per_filter_config", "envoy.filters.http.ext_authz", "disabled") != true {
		t.Error("/bff/ must be routed to Gatehouse without the check")
	}
}

func TestDeployIngressNginxForwardAuth(t *testing.T) {
	b, err := os.ReadFile("deploy/forward-auth/ingress-nginx.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	var docs []any
	for {
		var v any
		if err := dec.Decode(&v); err != nil {
			break
		}
		docs = append(docs, v)
	}
	if len(docs) != 2 {
		t.Fatalf("%d documents, want the API's Ingress and Gatehouse's", len(docs))
	}
	ann := dig(t, docs[0], "metadata", "annotations")
	if u, _ := dig(t, ann, "nginx.ingress.kubernetes.io/auth-url").(string); !strings.HasSuffix(u, "/bff/auth") {
		t.Errorf("auth-url = %q", u)
	}
	if dig(t, ann, "nginx.ingress.kubernetes.io/auth-response-headers") != "Authorization" {
		t.Error("auth-response-headers must be Authorization")
	}
	if _, ok := dig(t, docs[1], "metadata").(map[string]any)["annotations"]; ok {
		t.Error("Gatehouse's own Ingress must not be behind auth-url")
	}
}
