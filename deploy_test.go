package gatehouse

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.yaml.in/yaml/v3"
)

// The files in deploy/ name metrics in PromQL. These tests check that every name they use
// is one Gatehouse registers (metricNames), so that a renamed metric cannot leave a blank
// dashboard panel or an alert that never fires.

const (
	dashboardFile  = "deploy/grafana-dashboard.json"
	alertsFile     = "deploy/prometheus-alerts.yml"
	alertTestsFile = "deploy/prometheus-alerts.test.yml"
	scrapeFile     = "deploy/prometheus-scrape.yml"
	operationsDoc  = "docs/operations.md"
)

// promMetricRE finds the metric names of interest in PromQL with its string literals and
// comments removed: Gatehouse's own, the Go and process collectors', and up.
var promMetricRE = regexp.MustCompile(`\b(?:gatehouse_|go_|process_)[a-zA-Z0-9_:]*|\bup\b`)

// promStringRE matches PromQL string literals and comments.
var promStringRE = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'` + "|`[^`]*`" + `|#[^\n]*`)

func promQLMetrics(expr string) []string {
	return promMetricRE.FindAllString(promStringRE.ReplaceAllString(expr, `""`), -1)
}

// metricUse is a metric name found in a deploy file, and where.
type metricUse struct{ name, where string }

func TestDeployDashboard(t *testing.T) {
	uses := dashboardMetrics(t)
	if len(uses) == 0 {
		t.Fatal("no metric found in the dashboard's queries")
	}
}

// dashboardMetrics checks the dashboard's structure and returns the metrics its queries
// and variables use.
func dashboardMetrics(t *testing.T) []metricUse {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		Expr   string `json:"expr"`
		RefID  string `json:"refId"`
		Hidden bool   `json:"hide"`
	}
	type panel struct {
		ID         int                       `json:"id"`
		Type       string                    `json:"type"`
		Title      string                    `json:"title"`
		Datasource json.RawMessage           `json:"datasource"`
		GridPos    *struct{ H, W, X, Y int } `json:"gridPos"`
		Targets    []target                  `json:"targets"`
		Panels     []json.RawMessage         `json:"panels"` // a collapsed row's panels
	}
	var d struct {
		UID           string `json:"uid"`
		Title         string `json:"title"`
		SchemaVersion int    `json:"schemaVersion"`
		Inputs        []struct {
			Name string `json:"name"`
		} `json:"__inputs"`
		Templating struct {
			List []struct {
				Type       string          `json:"type"`
				Name       string          `json:"name"`
				Query      json.RawMessage `json:"query"`
				Definition string          `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("%s: the dashboard needs a uid and a title", dashboardFile)
	}
	if d.SchemaVersion < 38 {
		t.Errorf("%s: schemaVersion %d, want 38 or more", dashboardFile, d.SchemaVersion)
	}

	// The data source is a variable (or an import input), never a fixed uid.
	var dsRefs []string
	for _, v := range d.Templating.List {
		if v.Type == "datasource" {
			dsRefs = append(dsRefs, "${"+v.Name+"}", "$"+v.Name)
		}
	}
	for _, in := range d.Inputs {
		dsRefs = append(dsRefs, "${"+in.Name+"}")
	}
	if len(dsRefs) == 0 {
		t.Errorf("%s: no datasource variable and no __inputs: the dashboard cannot be imported into another Grafana", dashboardFile)
	}

	var uses []metricUse
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q := v.Definition
		if q == "" {
			var s string
			if json.Unmarshal(v.Query, &s) == nil {
				q = s
			} else {
				var o struct{ Query string }
				json.Unmarshal(v.Query, &o)
				q = o.Query
			}
		}
		if q == "" {
			t.Errorf("%s: variable %q has no query", dashboardFile, v.Name)
		}
		for _, m := range promQLMetrics(q) {
			uses = append(uses, metricUse{m, fmt.Sprintf("%s variable %q", dashboardFile, v.Name)})
		}
	}

	ids := map[int]string{}
	var walk func(raw []json.RawMessage)
	walk = func(raw []json.RawMessage) {
		for _, r := range raw {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Errorf("%s: panel: %v", dashboardFile, err)
				continue
			}
			where := fmt.Sprintf("%s panel %q", dashboardFile, p.Title)
			if p.Title == "" {
				t.Errorf("%s: panel %d has no title", dashboardFile, p.ID)
			}
			if other, dup := ids[p.ID]; dup {
				t.Errorf("%s: panels %q and %q share id %d", dashboardFile, other, p.Title, p.ID)
			}
			ids[p.ID] = p.Title
			if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("%s: no valid gridPos", where)
			}
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if p.Type == "text" {
				continue
			}
			if !slices.ContainsFunc(dsRefs, func(ref string) bool { return bytes.Contains(p.Datasource, []byte(ref)) }) {
				t.Errorf("%s: datasource %s is not the dashboard's variable", where, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s has no query", where)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("%s: query %s is empty", where, tg.RefID)
				}
				if refs[tg.RefID] {
					t.Errorf("%s: two queries with refId %q", where, tg.RefID)
				}
				refs[tg.RefID] = true
				for _, m := range promQLMetrics(tg.Expr) {
					uses = append(uses, metricUse{m, where})
				}
			}
		}
	}
	walk(d.Panels)
	return uses
}

// alertRules is the Prometheus rule file format.
type alertRules struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Limit    int    `yaml:"limit"`
		Rules    []struct {
			Alert         string            `yaml:"alert"`
			Record        string            `yaml:"record"`
			Expr          string            `yaml:"expr"`
			For           string            `yaml:"for"`
			KeepFiringFor string            `yaml:"keep_firing_for"`
			Labels        map[string]string `yaml:"labels"`
			Annotations   map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

var promDurationRE = regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`)

func TestDeployAlerts(t *testing.T) {
	if len(alertMetrics(t)) == 0 {
		t.Fatal("no metric found in the alert rules")
	}
}

// alertMetrics checks the alert rules and returns the metrics their expressions use.
func alertMetrics(t *testing.T) []metricUse {
	t.Helper()
	var rf alertRules
	decodeDeployYAMLStrict(t, alertsFile, &rf)
	if len(rf.Groups) == 0 {
		t.Fatalf("%s: no rule groups", alertsFile)
	}
	doc, err := os.ReadFile(operationsDoc)
	if err != nil {
		t.Fatal(err)
	}
	var uses []metricUse
	alerts := map[string]bool{}
	for _, g := range rf.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("%s: a group needs a name and rules (group %q)", alertsFile, g.Name)
		}
		for i, r := range g.Rules {
			where := fmt.Sprintf("%s %s rule %d (%s)", alertsFile, g.Name, i, r.Alert)
			switch {
			case r.Alert == "":
				t.Errorf("%s: no alert name (this file holds alerting rules only)", where)
			case alerts[r.Alert]:
				t.Errorf("%s: alert name used twice", where)
			}
			alerts[r.Alert] = true
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("%s: no expr", where)
			}
			if !promDurationRE.MatchString(r.For) {
				t.Errorf("%s: for: %q is not a Prometheus duration such as 5m", where, r.For)
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
				t.Errorf("%s: labels.severity %q is not critical, warning or info", where, s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no annotations.%s", where, a)
				}
			}
			// The runbook is a section of docs/operations.md titled with the alert's name.
			anchor := "#" + strings.ToLower(r.Alert)
			if r.Alert != "" && !strings.HasSuffix(r.Annotations["runbook_url"], operationsDoc+anchor) {
				t.Errorf("%s: runbook_url %q does not end in %s%s", where, r.Annotations["runbook_url"], operationsDoc, anchor)
			}
			if r.Alert != "" && !regexp.MustCompile(`(?m)^#{2,4} `+regexp.QuoteMeta(r.Alert)+`$`).Match(doc) {
				t.Errorf("%s: %s has no section titled %q", where, operationsDoc, r.Alert)
			}
			for _, m := range promQLMetrics(r.Expr) {
				uses = append(uses, metricUse{m, where})
			}
		}
	}

	// The promtool unit tests feed series of the same metrics.
	var tests struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			InputSeries []struct {
				Series string `yaml:"series"`
			} `yaml:"input_series"`
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	decodeDeployYAML(t, alertTestsFile, &tests)
	tested := map[string]bool{}
	if !slices.Contains(tests.RuleFiles, "prometheus-alerts.yml") {
		t.Errorf("%s: rule_files does not name prometheus-alerts.yml", alertTestsFile)
	}
	for _, tc := range tests.Tests {
		for _, s := range tc.InputSeries {
			for _, m := range promQLMetrics(s.Series) {
				uses = append(uses, metricUse{m, alertTestsFile})
			}
		}
		for _, a := range tc.AlertRuleTest {
			if !alerts[a.Alertname] {
				t.Errorf("%s: tests alert %q, which %s does not define", alertTestsFile, a.Alertname, alertsFile)
			}
			tested[a.Alertname] = true
		}
	}
	// Every alert has a promtool test (scripts/test.sh runs them).
	for a := range alerts {
		if !tested[a] {
			t.Errorf("%s: no test of alert %s", alertTestsFile, a)
		}
	}
	return uses
}

// TestDeployMetricNames checks every metric the dashboard and the alerts use against the
// metrics Gatehouse registers.
func TestDeployMetricNames(t *testing.T) {
	uses := append(dashboardMetrics(t), alertMetrics(t)...)
	known := map[string]bool{}
	for _, n := range metricNames() {
		known[n] = true
	}
	rt := runtimeMetricNames(t)

	missing := map[string][]string{}
	for _, u := range uses {
		name := u.name
		switch {
		case name == "up":
			continue
		case strings.HasPrefix(name, "gatehouse_"):
			if _, ok := resolveMetric(name, known); ok {
				continue
			}
		case strings.HasPrefix(name, "go_"), strings.HasPrefix(name, "process_"):
			// The process collector exports nothing on some platforms: allow then.
			if _, ok := resolveMetric(name, rt); ok || (strings.HasPrefix(name, "process_") && !rt["process_cpu_seconds_total"]) {
				continue
			}
		}
		// Report a histogram once, by its base name.
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			name = strings.TrimSuffix(name, suffix)
		}
		if !slices.Contains(missing[name], u.where) {
			missing[name] = append(missing[name], u.where)
		}
	}
	names := make([]string, 0, len(missing))
	for n := range missing {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		t.Errorf("metric %s is not registered by Gatehouse; used in:\n\t%s", n, strings.Join(missing[n], "\n\t"))
	}
}

// resolveMetric finds the registered metric behind a series name: the name itself, or a
// histogram's or summary's _bucket, _sum and _count series.
func resolveMetric(name string, known map[string]bool) (string, bool) {
	if known[name] {
		return name, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && known[base] {
			return base, true
		}
	}
	return name, false
}

// runtimeMetricNames are the metrics of the Go and process collectors the binary
// registers next to Gatehouse's own.
func runtimeMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Logf("gathering the runtime collectors: %v", err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	return names
}

type scrapeJob struct {
	JobName     string `yaml:"job_name"`
	MetricsPath string `yaml:"metrics_path"`
}

func TestDeployScrapeConfig(t *testing.T) {
	var c struct {
		RuleFiles     []string    `yaml:"rule_files"`
		ScrapeConfigs []scrapeJob `yaml:"scrape_configs"`
	}
	decodeDeployYAML(t, scrapeFile, &c)
	if !slices.Contains(c.RuleFiles, "prometheus-alerts.yml") {
		t.Errorf("%s: rule_files does not load prometheus-alerts.yml", scrapeFile)
	}
	// GatehouseTargetDown and GatehouseTargetMissing select up{job="gatehouse"}.
	i := slices.IndexFunc(c.ScrapeConfigs, func(s scrapeJob) bool { return s.JobName == "gatehouse" })
	if i < 0 {
		t.Fatalf("%s: no scrape job named gatehouse, which the alerts select", scrapeFile)
	}
	if p := c.ScrapeConfigs[i].MetricsPath; p != "" && p != "/metrics" {
		t.Errorf("%s: metrics_path %q; the admin listener serves /metrics", scrapeFile, p)
	}
}

// TestDeployDockerfileVersion checks that the image's build sets the variable that
// `gatehouse version` reports.
func TestDeployDockerfileVersion(t *testing.T) {
	b, err := os.ReadFile("deploy/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	pkg := reflect.TypeOf(Gateway{}).PkgPath()
	for _, want := range []string{"-X " + pkg + ".Version=", "CGO_ENABLED=0", "-trimpath", "./cmd/gatehouse", "USER 65532"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("deploy/Dockerfile does not contain %q", want)
		}
	}
}

func decodeDeployYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// decodeDeployYAMLStrict refuses unknown keys, as Prometheus does when it loads rules: a
// misspelt "annotation:" fails here rather than at deployment.
func decodeDeployYAMLStrict(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestPromQLMetrics(t *testing.T) {
	for expr, want := range map[string][]string{
		`up{job="gatehouse"} == 0`: {"up"},
		`sum by (job, reason) (rate(gatehouse_login_failures_total{reason!~"gatehouse_x|up"}[10m])) # gatehouse_comment`: {"gatehouse_login_failures_total"},
		`histogram_quantile(0.99, sum by (le) (rate(gatehouse_store_operation_seconds_bucket[$__rate_interval])))`:       {"gatehouse_store_operation_seconds_bucket"},
		`rate(go_gc_duration_seconds_sum[5m]) / rate(go_gc_duration_seconds_count[5m]) + process_open_fds`:               {"go_gc_duration_seconds_sum", "go_gc_duration_seconds_count", "process_open_fds"},
		`label_values(gatehouse_ready{job=~"$job"}, instance)`:                                                           {"gatehouse_ready"},
		`sum(setup_seconds) + cargo_total`: nil,
	} {
		if got := promQLMetrics(expr); !slices.Equal(got, want) {
			t.Errorf("promQLMetrics(%s) = %q, want %q", expr, got, want)
		}
	}
}
