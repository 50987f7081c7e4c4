// Package helm holds the tests of the Helm chart in gatehouse/: they render it with the
// real helm (the binary $HELM names, or one built from its Go module) and run the real
// `gatehouse check` on the configuration it renders.
package helm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"
)

const (
	chartDir    = "gatehouse"
	redisValues = "gatehouse/ci/redis-values.yaml"
	alertsFile  = "../prometheus-alerts.yml"
	helmModule  = "helm.sh/helm/v3/cmd/helm@v3.22.0"

	operationsDoc = "../../docs/operations.md"
)

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error
)

// helm runs helm with args and returns its standard output and error. $HELM names a helm
// binary; without it helm is installed from its module into a temporary directory (the
// Go build cache keeps the compiled packages, so only the first time is slow). A helm that
// cannot be built or run fails the test: it is never skipped.
func helm(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	helmOnce.Do(func() {
		if helmPath = os.Getenv("HELM"); helmPath != "" {
			return
		}
		dir, err := os.MkdirTemp("", "gatehouse-helm")
		if err != nil {
			helmErr = err
			return
		}
		cmd := exec.Command("go", "install", helmModule)
		cmd.Env = append(os.Environ(), "GOBIN="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			helmErr = fmt.Errorf("go install %s: %v\n%s", helmModule, err, out)
			return
		}
		helmPath = filepath.Join(dir, "helm")
	})
	if helmErr != nil {
		t.Fatalf("cannot build helm (set HELM to a helm binary): %v", helmErr)
	}
	cmd := exec.Command(helmPath, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("cannot run helm %s: %v", helmPath, err)
	}
	return out.String(), errb.String(), err
}

// manifest is one rendered Kubernetes object.
type manifest map[string]any

func (m manifest) kind() string { return str(m, "kind") }
func (m manifest) name() string { return str(m, "metadata", "name") }

// render runs helm template with args and parses every document it prints.
func render(t *testing.T, args ...string) []manifest {
	t.Helper()
	out, stderr, err := helm(t, append([]string{"template", "gh", chartDir}, args...)...)
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, stderr)
	}
	var ms []manifest
	dec := yaml.NewDecoder(strings.NewReader(out))
	for {
		var raw map[string]any // nested maps decode as map[string]any, not as manifest
		err := dec.Decode(&raw)
		m := manifest(raw)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("helm template %v printed YAML that does not parse: %v", args, err)
		}
		if m == nil {
			continue
		}
		if m.kind() == "" || m.name() == "" || str(m, "apiVersion") == "" {
			t.Fatalf("a manifest without apiVersion, kind or name: %v", m)
		}
		ms = append(ms, m)
	}
	return ms
}

// get walks a path of map keys and list indexes (ints) in a decoded YAML value.
func get(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(manifest)
			if ok {
				v = map[string]any(m)[k]
				continue
			}
			mm, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = mm[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, keys ...any) string {
	s, _ := get(v, keys...).(string)
	return s
}

func kinds(ms []manifest) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.kind())
	}
	sort.Strings(out)
	return out
}

func find(t *testing.T, ms []manifest, kind string) manifest {
	t.Helper()
	for _, m := range ms {
		if m.kind() == kind {
			return m
		}
	}
	t.Fatalf("no %s rendered; kinds: %v", kind, kinds(ms))
	return nil
}

// A rendering of the chart, with what the checks below look at.
type rendered struct {
	ms        []manifest
	deploy    manifest
	container map[string]any
	config    map[string]any // the gatehouse YAML in the ConfigMap
	configRaw string
}

func renderChart(t *testing.T, args ...string) rendered {
	t.Helper()
	r := rendered{ms: render(t, args...)}
	r.deploy = find(t, r.ms, "Deployment")
	cs, _ := get(r.deploy, "spec", "template", "spec", "containers").([]any)
	if len(cs) != 1 {
		t.Fatalf("the Deployment has %d containers, want 1", len(cs))
	}
	r.container = cs[0].(map[string]any)
	r.configRaw = str(find(t, r.ms, "ConfigMap"), "data", "gatehouse.yaml")
	if err := yaml.Unmarshal([]byte(r.configRaw), &r.config); err != nil || r.config == nil {
		t.Fatalf("the ConfigMap's gatehouse.yaml does not parse (%v):\n%s", err, r.configRaw)
	}
	return r
}

func TestChartDefaults(t *testing.T) {
	r := renderChart(t)
	want := []string{"ConfigMap", "Deployment", "NetworkPolicy", "PersistentVolumeClaim", "PodDisruptionBudget", "Service", "ServiceAccount"}
	if got := kinds(r.ms); !slices.Equal(got, want) {
		t.Errorf("kinds = %v, want %v", got, want)
	}
	if n := get(r.deploy, "spec", "replicas"); n != 1 {
		t.Errorf("replicas = %v, want 1", n)
	}
	if s := str(r.deploy, "spec", "strategy", "type"); s != "Recreate" {
		t.Errorf("strategy = %q, want Recreate: the bolt store belongs to one process", s)
	}
	if s := str(r.config, "session", "store"); s != "bolt:///var/lib/gatehouse/sessions.db" {
		t.Errorf("session.store = %q", s)
	}
	if !hasMount(r.container, "state", "/var/lib/gatehouse") {
		t.Error("the bolt store's directory is not mounted from the state volume")
	}
	checkCommon(t, r)
	warnings := gatehouseCheck(t, r)
	// Secure by default: no weaker option, no footgun (memory store, no session.keys).
	if len(warnings) > 0 {
		t.Errorf("gatehouse check warned %q on the default values, want no warning", warnings)
	}
	if get(r.config, "admin") != nil {
		t.Errorf("admin = %v by default, want no admin listener", get(r.config, "admin"))
	}
}

func TestChartRedis(t *testing.T) {
	r := renderChart(t, "-f", redisValues)
	want := []string{"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Ingress", "NetworkPolicy",
		"PodDisruptionBudget", "PrometheusRule", "Service", "Service", "ServiceAccount", "ServiceMonitor"}
	if got := kinds(r.ms); !slices.Equal(got, want) {
		t.Errorf("kinds = %v, want %v", got, want)
	}
	if n := get(r.deploy, "spec", "replicas"); n != nil {
		t.Errorf("replicas = %v with an HPA, want none (the HPA owns it)", n)
	}
	if s := str(r.deploy, "spec", "strategy", "type"); s != "RollingUpdate" {
		t.Errorf("strategy = %q, want RollingUpdate", s)
	}
	if s := str(r.config, "session", "store"); !strings.HasPrefix(s, "redis://") {
		t.Errorf("session.store = %q, want the Redis URL", s)
	}
	if s := str(r.config, "session", "redis", "key_prefix"); s != "gatehouse:" {
		t.Errorf("session.redis.key_prefix = %q: config.session.redis was not merged", s)
	}
	if s := str(r.config, "routes", 0, "max_body"); s != "10MiB" {
		t.Errorf("routes[0].max_body = %q", s)
	}
	checkCommon(t, r)
	// The admin listener on the pod's interfaces, for Prometheus, is a weaker option; with
	// its token there is no footgun.
	warnings := gatehouseCheck(t, r)
	if want := []string{"warning: admin.allow_non_loopback weakens the defaults"}; !slices.Equal(warnings, want) {
		t.Errorf("gatehouse check warned %q, want %q", warnings, want)
	}

	// The ServiceMonitor scrapes the admin port through its own headless Service; the
	// public Service never has it.
	sm := find(t, r.ms, "ServiceMonitor")
	if p := str(sm, "spec", "endpoints", 0, "port"); p != "admin" {
		t.Errorf("ServiceMonitor port = %q, want admin", p)
	}
	if j := str(sm, "spec", "jobLabel"); j != "app.kubernetes.io/name" {
		t.Errorf("ServiceMonitor jobLabel = %q: the alerts need job=\"gatehouse\"", j)
	}
	var metricsSvc manifest
	for _, m := range r.ms {
		if m.kind() == "Service" && str(m, "metadata", "labels", "app.kubernetes.io/component") == "metrics" {
			metricsSvc = m
		}
	}
	if metricsSvc == nil || str(metricsSvc, "spec", "clusterIP") != "None" {
		t.Errorf("no headless metrics Service for the ServiceMonitor: %v", metricsSvc)
	}
	if got := str(metricsSvc, "metadata", "labels", "app.kubernetes.io/name"); got != "gatehouse" {
		t.Errorf("metrics Service app.kubernetes.io/name = %q, want gatehouse (the job label)", got)
	}

	// One source for the alerts: the PrometheusRule's groups are deploy/prometheus-alerts.yml's.
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var alerts map[string]any
	if err := yaml.Unmarshal(b, &alerts); err != nil {
		t.Fatal(err)
	}
	rule := find(t, r.ms, "PrometheusRule")
	if !reflect.DeepEqual(get(rule, "spec", "groups"), alerts["groups"]) {
		t.Errorf("the PrometheusRule's groups differ from %s's: cp %s %s/files/prometheus-alerts.yml",
			alertsFile, "deploy/prometheus-alerts.yml", "deploy/helm/gatehouse")
	}
	if n := len(get(rule, "spec", "groups").([]any)); n == 0 {
		t.Error("the PrometheusRule has no groups")
	}
	if !strings.Contains(fmt.Sprint(get(rule, "spec", "groups")), "{{ $labels.instance }}") {
		t.Error("the alerts' {{ $labels… }} templates did not survive helm's rendering")
	}

	ing := find(t, r.ms, "Ingress")
	if s := str(ing, "spec", "rules", 0, "http", "paths", 0, "backend", "service", "port", "name"); s != "http" {
		t.Errorf("Ingress backend port = %q, want http", s)
	}
}

// The other one-replica shapes: the memory store, bolt on an emptyDir, and a client key
// (private_key_jwt) instead of a client secret.
func TestChartSingleReplicaStores(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		r := renderChart(t, "--set", "store.type=memory")
		if got := kinds(r.ms); slices.Contains(got, "PersistentVolumeClaim") {
			t.Errorf("kinds = %v: the memory store needs no claim", got)
		}
		if s := str(r.deploy, "spec", "strategy", "type"); s != "Recreate" {
			t.Errorf("strategy = %q, want Recreate", s)
		}
		if s := str(r.config, "session", "store"); s != "memory" {
			t.Errorf("session.store = %q, want memory", s)
		}
		checkCommon(t, r)
		warnings := gatehouseCheck(t, r)
		if len(warnings) != 1 || !strings.Contains(warnings[0], "session.store: memory behind a non-loopback listener") {
			t.Errorf("gatehouse check warned %q, want the memory store's footgun only", warnings)
		}
	})
	t.Run("bolt on an emptyDir, client key", func(t *testing.T) {
		r := renderChart(t, "--set", "store.bolt.persistence.enabled=false",
			"--set", "secrets.clientSecret.name=", "--set", "secrets.clientKey.name=gatehouse-key")
		if got := kinds(r.ms); slices.Contains(got, "PersistentVolumeClaim") {
			t.Errorf("kinds = %v with persistence off", got)
		}
		var state any
		for _, v := range get(r.deploy, "spec", "template", "spec", "volumes").([]any) {
			if str(v, "name") == "state" {
				state = v
			}
		}
		if get(state, "emptyDir") == nil {
			t.Errorf("state volume = %v, want an emptyDir", state)
		}
		if get(r.config, "provider", "client_secret_file") != nil || str(r.config, "provider", "client_key_file") == "" {
			t.Errorf("provider = %v, want client_key_file and no client_secret_file", get(r.config, "provider"))
		}
		checkCommon(t, r)
		if w := gatehouseCheck(t, r); len(w) > 0 {
			t.Errorf("gatehouse check warned %q", w)
		}
	})
}

// Forward-auth for ingress-nginx: the controller's network joins trusted_proxies, and each
// app's Ingress asks this release's /bff/auth and copies the answer's headers upstream,
// with no answer cache (it would outlive a logout). The rendered configuration passes
// gatehouse check, with a forward-auth-only route.
func TestChartForwardAuth(t *testing.T) {
	r := renderChart(t, "--namespace", "shop", "--set", "forwardAuth.enabled=true",
		"--set", "forwardAuth.trustedProxies[0]=10.42.0.0/16", "--set", "config.trusted_proxies[0]=192.0.2.0/24",
		"--set", "forwardAuth.redirectNavigations=true",
		"--set", "forwardAuth.responseHeaders={Authorization,X-User}",
		"--set", "config.routes[0].path=/api/",
		"--set", "forwardAuth.ingresses[0].name=api", "--set", "forwardAuth.ingresses[0].host=app.example.com",
		"--set", "forwardAuth.ingresses[0].paths[0].path=/api/", "--set", "forwardAuth.ingresses[0].service.name=orders",
		"--set", "forwardAuth.ingresses[0].service.port=8000", "--set", "forwardAuth.ingresses[0].tls.secretName=app-tls")
	if got := fmt.Sprint(get(r.config, "trusted_proxies")); got != "[192.0.2.0/24 10.42.0.0/16]" {
		t.Errorf("trusted_proxies = %s", got)
	}
	if get(r.config, "forward_auth", "redirect_navigations") != true {
		t.Errorf("forward_auth = %v", get(r.config, "forward_auth"))
	}
	var ing manifest
	for _, m := range r.ms {
		if m.kind() == "Ingress" && str(m, "metadata", "labels", "app.kubernetes.io/component") == "forward-auth" {
			ing = m
		}
	}
	if ing == nil {
		t.Fatalf("no forward-auth Ingress in %v", kinds(r.ms))
	}
	ann := func(k string) string { return str(ing, "metadata", "annotations", "nginx.ingress.kubernetes.io/"+k) }
	if got := ann("auth-url"); got != "http://gh-gatehouse.shop.svc.cluster.local:9080/bff/auth" {
		t.Errorf("auth-url = %q", got)
	}
	if got := ann("auth-response-headers"); got != "Authorization,X-User" {
		t.Errorf("auth-response-headers = %q", got)
	}
	if ann("auth-cache-key") != "" {
		t.Error("an auth cache would outlive a logout")
	}
	if str(ing, "spec", "rules", 0, "host") != "app.example.com" ||
		str(ing, "spec", "rules", 0, "http", "paths", 0, "backend", "service", "name") != "orders" ||
		fmt.Sprint(get(ing, "spec", "rules", 0, "http", "paths", 0, "backend", "service", "port", "number")) != "8000" ||
		str(ing, "spec", "tls", 0, "hosts", 0) != "app.example.com" || str(ing, "spec", "tls", 0, "secretName") != "app-tls" {
		t.Errorf("Ingress spec = %v", get(ing, "spec"))
	}
	checkCommon(t, r)
	if w := gatehouseCheck(t, r); len(w) > 0 {
		t.Errorf("gatehouse check warned %q", w)
	}
}

// A bolt or memory store belongs to one process: more replicas must not render.
func TestChartRefuses(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"replicas without redis", []string{"--set", "replicaCount=2"},
			"replicaCount is 2 but store.type is bolt: the bolt store belongs to one process, so more than one replica needs store.type: redis"},
		{"replicas with memory", []string{"--set", "replicaCount=3", "--set", "store.type=memory"},
			"replicaCount is 3 but store.type is memory"},
		{"autoscaling without redis", []string{"--set", "autoscaling.enabled=true"},
			"autoscaling.enabled needs store.type: redis"},
		{"redis without url", []string{"--set", "store.type=redis"}, "store.redis.url is empty"},
		{"forward auth without trusted proxies", []string{"--set", "forwardAuth.enabled=true"}, "forwardAuth.enabled needs forwardAuth.trustedProxies"},
		{"forward-auth ingresses while off", []string{"--set", "forwardAuth.ingresses[0].name=api"}, "forwardAuth.ingresses is set but forwardAuth.enabled is false"},
		{"a key the chart owns", []string{"--set", "config.listen=0.0.0.0:80"}, "config.listen is set by the chart"},
		{"a secret in config", []string{"--set", "config.provider.client_secret=x"}, "config.provider.client_secret is set by the chart"},
		{"no client credentials", []string{"--set", "secrets.clientSecret.name="}, "secrets.clientSecret.name or secrets.clientKey.name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, stderr, err := helm(t, append([]string{"template", "gh", chartDir}, c.args...)...)
			if err == nil {
				t.Fatalf("helm template %v rendered; want it to fail with %q", c.args, c.want)
			}
			if !strings.Contains(stderr, c.want) {
				t.Errorf("helm template %v failed with\n%s\nwant a message containing %q", c.args, stderr, c.want)
			}
		})
	}
}

// A changed configuration changes the pods' checksum annotation, so the Deployment rolls.
func TestChartConfigChecksum(t *testing.T) {
	sum := func(args ...string) string {
		r := renderChart(t, args...)
		return str(r.deploy, "spec", "template", "metadata", "annotations", "checksum/config")
	}
	a, b := sum(), sum("--set", "config.log.level=debug")
	if a == "" || a == b {
		t.Errorf("checksum/config = %q, then %q after a config change; want two different sums", a, b)
	}
	if c := sum("--set", "rollOnConfigChange=false"); c != "" {
		t.Errorf("rollOnConfigChange=false still sets checksum/config %q", c)
	}
}

func TestChartLint(t *testing.T) {
	for _, args := range [][]string{{}, {"-f", redisValues}} {
		out, stderr, err := helm(t, append([]string{"lint", "--strict", chartDir}, args...)...)
		if err != nil {
			t.Errorf("helm lint --strict %v: %v\n%s%s", args, err, out, stderr)
		}
	}
}

// The values shown in docs/operations.md's "Helm chart" section render, and the
// configuration they give passes gatehouse check.
func TestChartDocsExamples(t *testing.T) {
	b, err := os.ReadFile(operationsDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "\n### Helm chart\n")
	if start < 0 {
		t.Fatalf("%s has no \"### Helm chart\" section", operationsDoc)
	}
	section := doc[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	blocks := yamlFence.FindAllStringSubmatch(section, -1)
	if len(blocks) < 2 {
		t.Fatalf("%d yaml blocks in the Helm chart section, want the install values and Redis mode", len(blocks))
	}
	for i, b := range blocks {
		values := filepath.Join(t.TempDir(), fmt.Sprintf("values-%d.yaml", i))
		if err := os.WriteFile(values, []byte(b[1]), 0o600); err != nil {
			t.Fatal(err)
		}
		r := renderChart(t, "-f", values)
		checkCommon(t, r)
		gatehouseCheck(t, r)
	}
}

var yamlFence = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// checkCommon checks what every rendering must have: the security settings, the probes
// on the health listener, every *_file of the configuration mounted from a Secret.
func checkCommon(t *testing.T, r rendered) {
	t.Helper()
	pod := get(r.deploy, "spec", "template", "spec")
	if get(pod, "securityContext", "runAsNonRoot") != true {
		t.Error("pod securityContext.runAsNonRoot is not true")
	}
	if s := str(pod, "securityContext", "seccompProfile", "type"); s != "RuntimeDefault" {
		t.Errorf("pod seccompProfile = %q", s)
	}
	if get(pod, "automountServiceAccountToken") != false {
		t.Error("the pod mounts a service account token; Gatehouse never calls the API")
	}
	sc := get(r.container, "securityContext")
	for key, want := range map[string]any{"runAsNonRoot": true, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false} {
		if got := get(sc, key); got != want {
			t.Errorf("container securityContext.%s = %v, want %v", key, got, want)
		}
	}
	if d := get(sc, "capabilities", "drop"); !reflect.DeepEqual(d, []any{"ALL"}) {
		t.Errorf("capabilities.drop = %v, want [ALL]", d)
	}
	if s := str(sc, "seccompProfile", "type"); s != "RuntimeDefault" {
		t.Errorf("container seccompProfile = %q", s)
	}

	// The probes use the health listener's port, and health.listen is that port.
	ports := map[string]int{}
	for _, p := range get(r.container, "ports").([]any) {
		ports[str(p, "name")] = get(p, "containerPort").(int)
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"} {
		if got := str(r.container, probe, "httpGet", "path"); got != path {
			t.Errorf("%s path = %q, want %q", probe, got, path)
		}
		if got := get(r.container, probe, "httpGet", "port"); got != "health" {
			t.Errorf("%s port = %v, want health", probe, got)
		}
	}
	if got, want := str(r.config, "health", "listen"), fmt.Sprintf("0.0.0.0:%d", ports["health"]); got != want {
		t.Errorf("health.listen = %q, want %q (the probes' port)", got, want)
	}
	if got, want := str(r.config, "listen"), fmt.Sprintf("0.0.0.0:%d", ports["http"]); got != want {
		t.Errorf("listen = %q, want %q", got, want)
	}
	for _, m := range r.ms {
		if m.kind() == "Service" && str(m, "metadata", "labels", "app.kubernetes.io/component") != "metrics" {
			for _, p := range get(m, "spec", "ports").([]any) {
				if get(p, "targetPort") != "http" {
					t.Errorf("the Service %s exposes port %v; only http belongs there", m.name(), get(p, "targetPort"))
				}
			}
		}
	}

	// The configuration is read from the directory the ConfigMap is mounted at (not a
	// subPath, which never sees an update).
	args := fmt.Sprint(get(r.container, "args"))
	if !strings.Contains(args, "/etc/gatehouse/gatehouse.yaml") || !hasMount(r.container, "config", "/etc/gatehouse") {
		t.Errorf("args %s do not read the ConfigMap's mount", args)
	}
	for _, m := range get(r.container, "volumeMounts").([]any) {
		if get(m, "subPath") != nil {
			t.Errorf("volume mount %v uses subPath", m)
		}
	}

	// Every *_file is a file of the projected secrets volume, at its mount path.
	var mountPath string
	for _, m := range get(r.container, "volumeMounts").([]any) {
		if str(m, "name") == "secrets" {
			mountPath = str(m, "mountPath")
		}
	}
	items := map[string]bool{}
	for _, v := range get(pod, "volumes").([]any) {
		if str(v, "name") != "secrets" {
			continue
		}
		for _, src := range get(v, "projected", "sources").([]any) {
			for _, it := range get(src, "secret", "items").([]any) {
				items[path.Join(mountPath, str(it, "path"))] = true
			}
		}
	}
	files := secretFiles(r.config, "")
	if len(files) == 0 {
		t.Error("the configuration names no *_file")
	}
	for key, file := range files {
		if !items[file] {
			t.Errorf("%s: %s is not a file of the secrets volume (%v)", key, file, items)
		}
	}
}

func hasMount(container map[string]any, volume, at string) bool {
	for _, m := range get(container, "volumeMounts").([]any) {
		if str(m, "name") == volume && str(m, "mountPath") == at {
			return true
		}
	}
	return false
}

// secretFiles returns the configuration's *_file keys (by dotted name) and their paths.
func secretFiles(v any, prefix string) map[string]string {
	out := map[string]string{}
	m, ok := v.(map[string]any)
	if !ok {
		return out
	}
	for k, v := range m {
		name := strings.TrimPrefix(prefix+"."+k, ".")
		if s, ok := v.(string); ok && strings.HasSuffix(k, "_file") {
			out[name] = s
		}
		for k, v := range secretFiles(v, name) {
			out[k] = v
		}
	}
	return out
}

var (
	buildOnce sync.Once
	gatehouse string
	buildErr  error
)

// gatehouseCheck runs `gatehouse check` on the rendered configuration, with each secret
// file it names made in a temporary directory, and returns the warnings it printed.
func gatehouseCheck(t *testing.T, r rendered) []string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gatehouse-helm-test")
		if err != nil {
			buildErr = err
			return
		}
		gatehouse = filepath.Join(dir, "gatehouse")
		out, err := exec.Command("go", "build", "-o", gatehouse, "github.com/gatehouse-bff/gatehouse/cmd/gatehouse").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}

	dir := t.TempDir()
	raw := r.configRaw
	for key, file := range secretFiles(r.config, "") {
		local := filepath.Join(dir, "secrets", filepath.Base(file))
		if err := os.MkdirAll(filepath.Dir(local), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(local, secretContent(t, key), 0o600); err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(raw, ": "+file+"\n"); n != 1 {
			t.Fatalf("%s appears %d times in the configuration", file, n)
		}
		raw = strings.Replace(raw, ": "+file+"\n", ": "+local+"\n", 1)
	}
	cfg := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(cfg, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(gatehouse, "check", "--config", cfg)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("gatehouse check on the chart's configuration: %v\n%s%s\nconfiguration:\n%s", err, stdout.String(), stderr.String(), r.configRaw)
	}
	if !strings.Contains(stdout.String(), "configuration OK") {
		t.Fatalf("gatehouse check printed %q", stdout.String())
	}
	var warnings []string
	for _, line := range strings.Split(stdout.String(), "\n") {
		if strings.HasPrefix(line, "warning: ") {
			warnings = append(warnings, line)
		}
	}
	return warnings
}

// secretContent is a valid value for the secret file of a configuration key.
func secretContent(t *testing.T, key string) []byte {
	t.Helper()
	switch key {
	case "session.keys_file", "session.accept_keys_file":
		k := make([]byte, 32)
		rand.Read(k)
		return []byte(base64.StdEncoding.EncodeToString(k) + "\n")
	case "provider.client_key_file":
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	return []byte(rand.Text() + "\n")
}
