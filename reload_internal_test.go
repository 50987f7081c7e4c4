package gatehouse

import (
	"crypto"
	"crypto/ed25519"
	"io/fs"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/gatehouse-bff/gatehouse/ratelimit"
	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/session/memstore"
)

// TestReloadRulesCoverConfig fails when a field is added to Config (or to one of its
// sections) without a reload decision: its `gatehouse` tag, giving the YAML key that
// Reload reports it by, and whether it is live, needs a restart or is a dependency.
func TestReloadRulesCoverConfig(t *testing.T) {
	var walk func(t reflect.Type, prefix string) []string
	var problems []string
	walk = func(typ reflect.Type, prefix string) []string {
		var keys []string
		for f := range typ.Fields() {
			tag, ok := f.Tag.Lookup("gatehouse")
			switch {
			case !ok:
				problems = append(problems, prefix+f.Name+": no gatehouse tag (say whether Reload may change it, and its YAML key)")
				continue
			case tag == "-":
				continue
			}
			key, mode, _ := strings.Cut(tag, ",")
			if key == "" || strings.ToLower(key) != key || strings.ContainsAny(key, " .") {
				problems = append(problems, prefix+f.Name+": "+tag+" is not a YAML key")
			}
			if mode != "" && mode != "live" {
				problems = append(problems, prefix+f.Name+": unknown reload mode "+mode+" (want none, live or -)")
			}
			if mode == "" && f.Type.Kind() == reflect.Struct {
				keys = append(keys, walk(f.Type, prefix+key+".")...)
				continue
			}
			keys = append(keys, prefix+key)
		}
		return keys
	}
	keys := walk(reflect.TypeFor[Config](), "")
	for _, p := range problems {
		t.Error(p)
	}
	var ruleKeys []string
	for _, r := range reloadRules {
		if r.mode != dependency {
			ruleKeys = append(ruleKeys, r.key)
		}
	}
	if !slices.Equal(keys, ruleKeys) {
		t.Errorf("reloadRules = %v,\nwant the tagged fields %v", ruleKeys, keys)
	}
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k] {
			t.Errorf("YAML key %s names two fields", k)
		}
		seen[k] = true
	}
	// What is read while serving is applied while serving.
	for _, k := range []string{"routes", "rate_limits", "websocket_origins", "session.flow_timeout", "insecure_diagnostics"} {
		if modeOf(k) != live {
			t.Errorf("%s is read at request time but not live", k)
		}
	}
}

func modeOf(key string) reloadMode {
	for _, r := range reloadRules {
		if r.key == key {
			return r.mode
		}
	}
	return -1
}

// TestReloadDiffEveryField changes every field of Config alone and checks what Reload
// makes of it: a live field is applied and not reported, a restart field is reported by
// its YAML key and keeps its running value, a dependency is neither.
func TestReloadDiffEveryField(t *testing.T) {
	base := Config{PublicURL: "https://app.example", Provider: ProviderConfig{Issuer: "https://id.example", ClientID: "c", ClientSecret: "s"}}.withDefaults()
	for _, rule := range reloadRules {
		next := base
		f := reflect.ValueOf(&next).Elem().FieldByIndex(rule.index)
		f.Set(otherValue(t, f))
		name := rule.key
		if name == "" {
			name = reflect.TypeFor[Config]().FieldByIndex(rule.index).Name
		}
		t.Run(name, func(t *testing.T) {
			got, needRestart := reloadDiff(base, next)
			applied := reflect.ValueOf(got).FieldByIndex(rule.index)
			old := reflect.ValueOf(base).FieldByIndex(rule.index)
			switch rule.mode {
			case live:
				if len(needRestart) != 0 || !same(applied, f) {
					t.Fatalf("live field: restart = %v, applied = %v", needRestart, same(applied, f))
				}
			case restart:
				if !slices.Equal(needRestart, []string{rule.key}) {
					t.Fatalf("restart = %v, want [%s]", needRestart, rule.key)
				}
				if !same(applied, old) {
					t.Fatal("a field that needs a restart was applied")
				}
			case dependency:
				if len(needRestart) != 0 || !same(applied, old) {
					t.Fatalf("dependency: restart = %v, kept = %v", needRestart, same(applied, old))
				}
			}
		})
	}
}

// same compares two field values; functions by identity.
func same(a, b reflect.Value) bool {
	if a.Kind() == reflect.Func {
		return a.Pointer() == b.Pointer()
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

// otherValue returns a value of v's type that differs from v.
func otherValue(t *testing.T, v reflect.Value) reflect.Value {
	t.Helper()
	typ := v.Type()
	switch typ {
	case reflect.TypeFor[crypto.Signer]():
		_, k, _ := ed25519.GenerateKey(nil)
		return reflect.ValueOf(&k).Elem().Convert(typ)
	case reflect.TypeFor[session.Store]():
		s := memstore.New(memstore.Options{})
		t.Cleanup(func() { s.Close() })
		return reflect.ValueOf(session.Store(s))
	case reflect.TypeFor[ratelimit.Limiter]():
		return reflect.ValueOf(ratelimit.Limiter(ratelimit.NewMemory(ratelimit.MemoryOptions{})))
	case reflect.TypeFor[http.RoundTripper]():
		return reflect.ValueOf(http.RoundTripper(&http.Transport{}))
	case reflect.TypeFor[prometheus.Registerer]():
		return reflect.ValueOf(prometheus.Registerer(prometheus.NewRegistry()))
	case reflect.TypeFor[fs.FS]():
		return reflect.ValueOf(fs.FS(fstest.MapFS{}))
	case reflect.TypeFor[trace.TracerProvider]():
		return reflect.ValueOf(trace.TracerProvider(tracenoop.NewTracerProvider()))
	case reflect.TypeFor[propagation.TextMapPropagator]():
		return reflect.ValueOf(propagation.TextMapPropagator(propagation.Baggage{}))
	}
	out := reflect.New(typ).Elem()
	out.Set(v)
	switch typ.Kind() {
	case reflect.String:
		out.SetString(v.String() + "-changed")
	case reflect.Bool:
		out.SetBool(!v.Bool())
	case reflect.Int, reflect.Int64:
		out.SetInt(v.Int() + 1)
	case reflect.Float64:
		out.SetFloat(v.Float() + 1)
	case reflect.Slice:
		out = reflect.Append(reflect.MakeSlice(typ, 0, v.Len()+1), append(sliceValues(v), reflect.Zero(typ.Elem()))...)
	case reflect.Map:
		out = reflect.MakeMap(typ)
		out.SetMapIndex(reflect.ValueOf("changed").Convert(typ.Key()), reflect.Zero(typ.Elem()))
	case reflect.Struct:
		first := out.Field(0)
		first.Set(otherValue(t, first))
	case reflect.Pointer:
		out = reflect.New(typ.Elem())
	case reflect.Func:
		out = reflect.MakeFunc(typ, func([]reflect.Value) []reflect.Value {
			res := make([]reflect.Value, typ.NumOut())
			for i := range res {
				res[i] = reflect.Zero(typ.Out(i))
			}
			return res
		})
	default:
		t.Fatalf("no other value for a %s: teach otherValue", typ)
	}
	return out
}

func sliceValues(v reflect.Value) []reflect.Value {
	out := make([]reflect.Value, v.Len())
	for i := range out {
		out[i] = v.Index(i)
	}
	return out
}
