package main

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	gatehouse "github.com/gatehouse-bff/gatehouse"
)

// gatewayKeys are the YAML keys of gatehouse.Config's fields, from their gatehouse tags:
// a section with its own reload mode (routes, rate_limits) is one key.
func gatewayKeys(t reflect.Type, prefix string) []string {
	var out []string
	for f := range t.Fields() {
		tag := f.Tag.Get("gatehouse")
		if tag == "" || tag == "-" {
			continue
		}
		key, mode, _ := strings.Cut(tag, ",")
		if mode == "" && f.Type.Kind() == reflect.Struct {
			out = append(out, gatewayKeys(f.Type, prefix+key+".")...)
			continue
		}
		out = append(out, prefix+key)
	}
	return out
}

// TestFileSettingsHaveAReloadDecision fails when the file gains a setting that SIGHUP
// would neither pass to the gateway (a field of gatehouse.Config, which decides) nor
// report as needing a restart (fileOnly).
func TestFileSettingsHaveAReloadDecision(t *testing.T) {
	keys := gatewayKeys(reflect.TypeFor[gatehouse.Config](), "")
	toGateway := func(setting string) bool {
		for _, k := range keys {
			// A secret may come from a file instead: client_secret_file is client_secret.
			if setting == k || strings.HasPrefix(setting, k+".") || strings.TrimSuffix(setting, "_file") == k {
				return true
			}
		}
		return false
	}
	used := map[string]bool{}
	for _, l := range fileLeaves(reflect.ValueOf(fileConfig{}), "") {
		switch {
		case isFileOnly(l.key):
			for _, p := range fileOnly {
				if l.key == p || strings.HasPrefix(l.key, p+".") {
					used[p] = true
				}
			}
		case toGateway(l.key), slices.Contains(multiSettings, l.key):
		default:
			t.Errorf("setting %s reaches neither gatehouse.Config nor fileOnly: decide what a reload does with it", l.key)
		}
	}
	for _, p := range fileOnly {
		if !used[p] {
			t.Errorf("fileOnly names %s, which is not a setting of the file", p)
		}
	}
	// Both sides agree on names: every key of gatehouse.Config is a setting of the file.
	settings := map[string]bool{}
	for _, l := range fileLeaves(reflect.ValueOf(fileConfig{}), "") {
		settings[l.key] = true
		settings[strings.TrimSuffix(l.key, "_file")] = true
		for k := l.key; strings.Contains(k, "."); {
			k = k[:strings.LastIndex(k, ".")]
			settings[k] = true
		}
	}
	settings["name"] = true // frontends[].name
	for _, k := range keys {
		if !settings[k] {
			t.Errorf("gatehouse.Config names %s, which is not a setting of the file", k)
		}
	}
}

func TestReloadReportsFileOnlyChangesByName(t *testing.T) {
	dir := t.TempDir()
	write := func(name, extra string) *loaded {
		p := writeFile(t, dir, name, `
public_url: http://127.0.0.1:9080
provider:
  issuer: http://127.0.0.1:9000
  client_id: bff
  client_secret: s3cret
`+extra)
		l, err := loadConfig(p)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	a := write("a.yaml", "listen: 127.0.0.1:9080\nserver:\n  idle_timeout: 60s\nlog:\n  level: info\n")
	b := write("b.yaml", "listen: 127.0.0.1:9081\nserver:\n  idle_timeout: 90s\nlog:\n  level: info\nrate_limits:\n  login: {per_minute: 5, burst: 5}\n")
	if got, want := fileChanges(a, b), []string{"listen", "server.idle_timeout"}; !slices.Equal(got, want) {
		t.Fatalf("fileChanges = %v, want %v", got, want)
	}
	if got := fileChanges(a, a); len(got) != 0 {
		t.Fatalf("fileChanges of the same file = %v", got)
	}
}
