package e2e

// The log audit of the whole e2e suite: every gatehouse process any test starts runs with
// debug logging (startGatehouse enforces it), and when its test ends its logs — every run of
// it, across restarts — are compared with every secret known at that moment: every
// authorization code, access, refresh, ID and logout token any oidc-provider of this test
// binary issued (harness.AllProviders, read from their token logs), the secrets of other
// sources registered with registerAuditSource (the devidp tap of the browser tests, the
// fake provider and the cookies of the security suite), and the secrets of the process's own
// configuration (client secret, admin token, session keys, Redis password). The audit log
// file, when a configuration writes one (audit_log.output), is checked too. A hit fails the
// test that started the process.

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/gatehouse-bff/gatehouse/e2e/internal/harness"
)

var (
	auditMu      sync.Mutex
	auditSources []func() []harness.IssuedSecret
)

// registerAuditSource adds a source of secrets that no gatehouse log may contain. Sources
// stay registered for the rest of the test binary: a secret is never allowed in any log.
func registerAuditSource(f func() []harness.IssuedSecret) {
	auditMu.Lock()
	defer auditMu.Unlock()
	auditSources = append(auditSources, f)
}

// auditSecrets is every secret known now: all providers' token logs and the registered
// sources.
func auditSecrets(t testing.TB) []harness.IssuedSecret {
	t.Helper()
	var out []harness.IssuedSecret
	for _, p := range harness.AllProviders() {
		out = append(out, p.IssuedTokens(t)...)
	}
	auditMu.Lock()
	sources := append([]func() []harness.IssuedSecret(nil), auditSources...)
	auditMu.Unlock()
	for _, f := range sources {
		out = append(out, f()...)
	}
	return out
}

// configSecrets extracts the secrets of a gatehouse YAML configuration: client secret,
// admin token, session keys, Redis password.
func configSecrets(config string) []harness.IssuedSecret {
	var doc map[string]any
	if yaml.Unmarshal([]byte(config), &doc) != nil {
		return nil
	}
	var out []harness.IssuedSecret
	add := func(kind string, v any) {
		switch x := v.(type) {
		case string:
			// Short values would match ordinary words of a log line; no e2e secret is short.
			if len(x) >= 6 && !strings.Contains(x, "${") {
				out = append(out, harness.IssuedSecret{Kind: kind, Value: x})
			}
		case []any:
			for _, e := range x {
				if s, ok := e.(string); ok && len(s) >= 6 {
					out = append(out, harness.IssuedSecret{Kind: kind, Value: s})
				}
			}
		}
	}
	section := func(name string) map[string]any {
		m, _ := doc[name].(map[string]any)
		return m
	}
	add("client_secret", section("provider")["client_secret"])
	add("admin token", section("admin")["token"])
	add("session key", section("session")["keys"])
	if redis, ok := section("session")["redis"].(map[string]any); ok {
		add("redis password", redis["password"])
	}
	return out
}

// withDebugLogging returns config with `log: {level: debug}` added when it has no log
// section, and fails the test when it sets another level: every gatehouse of the e2e suite
// logs at debug, so that the audit sees the most a process ever logs. Benchmarks
// (TestBench*, which run only on request) may log less, to measure the gateway rather than
// its logging.
func withDebugLogging(t testing.TB, config string) string {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(config), &doc); err != nil {
		return config // gatehouse itself will say what is wrong with it
	}
	section, present := doc["log"]
	if !present {
		return strings.TrimRight(config, "\n") + "\nlog:\n  level: debug\n"
	}
	if m, _ := section.(map[string]any); (m == nil || m["level"] != "debug") && !strings.HasPrefix(t.Name(), "TestBench") {
		t.Fatalf("e2e: every gatehouse of the e2e suite must log at debug (log: {level: debug}), so that the log audit covers everything it can log; this configuration sets another level:\n%s", config)
	}
	return config
}

// logLeaks returns one line per secret found in logs: its kind and the log line (with the
// secret masked), at most one line per secret.
func logLeaks(logs string, secrets []harness.IssuedSecret) []string {
	if logs == "" {
		return nil
	}
	lines := strings.Split(logs, "\n")
	seen := map[string]bool{}
	var out []string
	for _, s := range secrets {
		if s.Value == "" || seen[s.Value] {
			continue
		}
		seen[s.Value] = true
		if !strings.Contains(logs, s.Value) {
			continue
		}
		for _, line := range lines {
			if strings.Contains(line, s.Value) {
				masked := strings.ReplaceAll(line, s.Value, "<"+s.Kind+">")
				if len(masked) > 400 {
					masked = masked[:400] + "…"
				}
				out = append(out, fmt.Sprintf("%s found in the log line: %s", s.Kind, masked))
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// auditFile is the audit log file a gatehouse configuration names (audit_log.output other
// than stderr or stdout), or "".
func auditFile(cfgPath, config string) string {
	var doc struct {
		AuditLog struct {
			Output string `yaml:"output"`
		} `yaml:"audit_log"`
	}
	if yaml.Unmarshal([]byte(config), &doc) != nil {
		return ""
	}
	switch out := doc.AuditLog.Output; out {
	case "", "stderr", "stdout":
		return ""
	default:
		if !filepath.IsAbs(out) {
			out = filepath.Join(filepath.Dir(cfgPath), out)
		}
		return out
	}
}

// accessFile is the access log file a gatehouse configuration names (log.access_file), or "".
func accessFile(cfgPath, config string) string {
	var doc struct {
		Log struct {
			AccessFile string `yaml:"access_file"`
		} `yaml:"log"`
	}
	if yaml.Unmarshal([]byte(config), &doc) != nil || doc.Log.AccessFile == "" {
		return ""
	}
	if !filepath.IsAbs(doc.Log.AccessFile) {
		return filepath.Join(filepath.Dir(cfgPath), doc.Log.AccessFile)
	}
	return doc.Log.AccessFile
}

// auditGatehouseLogs fails t when the logs of g — its output and its audit log file, if it
// writes one — contain any known secret.
func auditGatehouseLogs(t testing.TB, g *gatehouseProc) {
	t.Helper()
	cfg, _ := os.ReadFile(g.cfgPath)
	secrets := append(auditSecrets(t), configSecrets(string(cfg))...)
	for _, leak := range logLeaks(g.Logs(), secrets) {
		t.Errorf("log audit: gatehouse %s: %s", g.URL, leak)
	}
	if path := accessFile(g.cfgPath, string(cfg)); path != "" {
		data, _ := os.ReadFile(path)
		for _, leak := range logLeaks(string(data), secrets) {
			t.Errorf("log audit: gatehouse %s, access log file: %s", g.URL, leak)
		}
	}
	if path := auditFile(g.cfgPath, string(cfg)); path != "" {
		data, err := os.ReadFile(path)
		if err != nil && !os.IsNotExist(err) {
			t.Errorf("log audit: gatehouse %s: reading its audit log %s: %v", g.URL, path, err)
		}
		for _, leak := range logLeaks(string(data), secrets) {
			t.Errorf("log audit: gatehouse %s, audit log file: %s", g.URL, leak)
		}
	}
}
