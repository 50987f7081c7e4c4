package main

import (
	"strings"
	"testing"
)

// FuzzConfig: any file gives a configuration or a list of problems, never a panic, and
// problems never echo a secret taken from the environment.
func FuzzConfig(f *testing.F) {
	f.Add("public_url: http://127.0.0.1:9080\nprovider: {issuer: http://127.0.0.1:9000, client_id: a, client_secret: b}\n")
	f.Add("routes: [{path: /api/, upstream: http://x, require: [{claim: g, contains: [a, b]}]}]\n")
	f.Add("provider: ${X}\n")
	f.Add("a: &a [*a]\n")
	f.Add("session: {idle_timeout: 5m, store: 'redis://:${FUZZ_SECRET}@h/0'}\n")
	f.Add("session: {idle_timeout: '${FUZZ_SECRET}'}\n")
	f.Add("provider: {skip_userinfo: '${FUZZ_SECRET}', clock_skew: '${FUZZ_SECRET}'}\n")
	f.Fuzz(func(t *testing.T, doc string) {
		t.Setenv("FUZZ_SECRET", "fuzz-secret-value")
		var fc fileConfig
		var probs problems
		decodeStrict([]byte(doc), &fc, &probs)
		for _, p := range probs {
			// go.yaml.in/yaml/v3 shortens long values in its errors ("fuzz-se..."): look for a prefix.
			if strings.Contains(p, "fuzz-se") && !strings.Contains(doc, "fuzz-se") {
				t.Fatalf("a problem echoes an environment secret: %s", p)
			}
		}
	})
}

func FuzzExpandEnv(f *testing.F) {
	for _, s := range []string{"${A}", "$${A}", "${A:-b}", "${", "}${", "$$$${A}", "${A:-${B}}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, missing := expandEnv(s)
		if !strings.Contains(s, "${") && out != s {
			t.Fatalf("expandEnv(%q) changed a string without ${", s)
		}
		_ = missing
	})
}
