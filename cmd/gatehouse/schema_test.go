package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

var updateSchema = flag.Bool("update", false, "rewrite docs/gatehouse.schema.json from the config types")

const schemaFile = "../../docs/gatehouse.schema.json"

// TestSchemaFileIsCurrent keeps the published schema equal to the generated one.
// Regenerate with `go generate ./cmd/gatehouse`.
func TestSchemaFileIsCurrent(t *testing.T) {
	want := schemaJSON()
	if *updateSchema {
		if err := os.WriteFile(schemaFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatalf("%v (run `go generate ./cmd/gatehouse`)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run `go generate ./cmd/gatehouse`", schemaFile)
	}
	var out, errb bytes.Buffer
	if code := run(t.Context(), []string{"schema"}, &out, &errb); code != 0 || !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("gatehouse schema: exit %d, output differs from the file: %v; stderr %q", code, !bytes.Equal(out.Bytes(), want), errb.String())
	}
	if code := run(t.Context(), []string{"schema", "--help"}, &out, &errb); code != 0 {
		t.Fatalf("gatehouse schema --help exits %d", code)
	}
}

// compiledSchema compiles the committed file, as an editor would read it.
func compiledSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(schemaID, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(schemaID)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// validateYAML validates YAML text against the schema, as the YAML language server does
// (YAML read as JSON values).
func validateYAML(s *jsonschema.Schema, data []byte) error {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return err
	}
	j, err := json.Marshal(v)
	if err != nil {
		return err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		return err
	}
	return s.Validate(inst)
}

var envName = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)`)

// setEnvFor sets the environment variables a config names, so that the parser sees a
// value for each.
func setEnvFor(t *testing.T, data []byte) {
	for _, m := range envName.FindAllSubmatch(data, -1) {
		name := string(m[1])
		if _, ok := os.LookupEnv(name); !ok {
			t.Setenv(name, "from-env-"+strings.ToLower(name))
		}
	}
}

// TestSchemaAcceptsEveryExample: each configuration in the repository validates against
// the schema and loads with the real parser. Code blocks of the docs that are fragments
// (a provider: block) are laid over a minimal file first; blocks that are not Gatehouse
// configurations (Kubernetes, Prometheus, devidp) are skipped by their top-level keys.
func TestSchemaAcceptsEveryExample(t *testing.T) {
	s := compiledSchema(t)
	examples, _ := filepath.Glob("../../examples/*/gatehouse.yaml")
	if len(examples) == 0 {
		t.Fatal("no example configurations found")
	}
	for _, path := range examples {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		setEnvFor(t, data)
		if err := validateYAML(s, data); err != nil {
			t.Errorf("%s: schema: %v", path, err)
		}
		if _, err := loadConfig(path); err != nil {
			t.Errorf("%s: parser: %v", path, err)
		}
	}

	docs := []string{"../../docs/configuration.md", "../../docs/operations.md", "../../docs/providers.md", "../../README.md"}
	blocks := 0
	for _, path := range docs {
		md, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for i, block := range yamlBlocks(string(md)) {
			var doc map[string]any
			if err := yaml.Unmarshal([]byte(block), &doc); err != nil {
				t.Errorf("%s: yaml block %d: %v", path, i, err)
				continue
			}
			if !isGatehouseConfig(doc) {
				continue
			}
			blocks++
			full := overMinimal(doc)
			data, err := yaml.Marshal(full)
			if err != nil {
				t.Fatal(err)
			}
			setEnvFor(t, data)
			if err := validateYAML(s, data); err != nil {
				t.Errorf("%s: yaml block %d: schema: %v\n%s", path, i, err, block)
			}
			var fc fileConfig
			var probs problems
			if !decodeStrict(data, &fc, &probs) || len(probs) > 0 {
				t.Errorf("%s: yaml block %d: parser: %v\n%s", path, i, probs, block)
			}
		}
	}
	t.Logf("%d configuration blocks of the docs checked", blocks)
	if blocks < 10 {
		t.Errorf("only %d configuration blocks found in the docs", blocks)
	}
}

var yamlFence = regexp.MustCompile("(?ms)^( *)```yaml\n(.*?)^ *```")

// yamlBlocks returns the ```yaml code blocks of a Markdown text, unindented.
func yamlBlocks(md string) []string {
	var out []string
	for _, m := range yamlFence.FindAllStringSubmatch(md, -1) {
		indent := m[1]
		var b strings.Builder
		for _, line := range strings.SplitAfter(m[2], "\n") {
			b.WriteString(strings.TrimPrefix(line, indent))
		}
		out = append(out, b.String())
	}
	return out
}

// isGatehouseConfig tells a Gatehouse file from the other YAML of the docs: it has one
// of the keys every Gatehouse file starts with, and none of the others' marks.
func isGatehouseConfig(doc map[string]any) bool {
	for _, other := range []string{"apiVersion", "scrape_configs", "groups", "clients", "users"} {
		if _, ok := doc[other]; ok {
			return false
		}
	}
	for _, k := range []string{"public_url", "provider", "session", "routes"} {
		if _, ok := doc[k]; ok {
			return true
		}
	}
	return false
}

// overMinimal lays a fragment over the smallest complete file.
func overMinimal(fragment map[string]any) map[string]any {
	base := map[string]any{
		"public_url": "https://app.example.com",
		"provider":   map[string]any{"issuer": "https://id.example.com", "client_id": "spa-bff"},
	}
	var merge func(dst, src map[string]any)
	merge = func(dst, src map[string]any) {
		for k, v := range src {
			dm, dok := dst[k].(map[string]any)
			sm, sok := v.(map[string]any)
			if dok && sok {
				merge(dm, sm)
				continue
			}
			dst[k] = v
		}
	}
	merge(base, fragment)
	return base
}

// minimalFile is a complete file that loads; the invalid cases add one mistake to it.
const minimalFile = `public_url: https://app.example.com
provider:
  issuer: https://id.example.com
  client_id: spa-bff
  client_secret: s3cret
`

// TestSchemaAndParserRejectTheSameMistakes: a handful of broken files are refused by
// the schema (so editors flag them) and by the parser, which names the field.
func TestSchemaAndParserRejectTheSameMistakes(t *testing.T) {
	s := compiledSchema(t)
	more := func(extra string) string { return minimalFile + extra }
	cases := []struct{ name, data, field string }{
		{"unknown top-level key", more("provder: {}\n"), "provder"},
		{"unknown key in a block", more("session:\n  idle_timout: 5m\n"), "session.idle_timout"},
		{"unknown key in a route", more("routes:\n  - path: /api/\n    upstream: http://127.0.0.1:1\n    tokn: user\n"), "routes[0].tokn"},
		{"duration that is not one", more("session:\n  idle_timeout: soon\n"), "session.idle_timeout"},
		{"number where a duration goes", strings.Replace(minimalFile, "  client_secret: s3cret\n", "  client_secret: s3cret\n  timeout: 10\n", 1), "provider.timeout"},
		{"list where a mapping goes", more("cookie: [a]\n"), "cookie"},
		{"mapping where a list goes", more("trusted_proxies: {a: b}\n"), "trusted_proxies"},
		{"string where a bool goes", more("insecure_diagnostics: maybe\n"), "insecure_diagnostics"},
		{"string where a number goes", more("session:\n  max_pending_flows: many\n"), "session.max_pending_flows"},
		{"bad token mode", more("routes:\n  - path: /api/\n    upstream: http://127.0.0.1:1\n    token: bearer\n"), "routes[0].token"},
		{"bad same_site", more("cookie:\n  same_site: none\n"), "cookie.same_site"},
		{"bad log level", more("log:\n  level: loud\n"), "log.level"},
		{"bad log format", more("log:\n  format: xml\n"), "log.format"},
		{"bad store scheme", more("session:\n  store: mysql://db/sessions\n"), "session.store"},
		{"bad size", more("routes:\n  - path: /api/\n    upstream: http://127.0.0.1:1\n    max_body: lots\n"), "routes[0].max_body"},
		{"prefix out of range", more("session:\n  bind_ipv4_prefix: 33\n"), "session.bind_ipv4_prefix"},
		{"missing public_url", strings.Replace(minimalFile, "public_url: https://app.example.com\n", "", 1), "public_url"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := c.data
			if err := validateYAML(s, []byte(data)); err == nil {
				t.Errorf("the schema accepts it:\n%s", data)
			}
			path := filepath.Join(t.TempDir(), "gatehouse.yaml")
			if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := loadConfig(path)
			if err == nil {
				t.Fatalf("the parser accepts it:\n%s", data)
			}
			if !strings.Contains(err.Error(), c.field) {
				t.Errorf("the parser's error does not name %s: %v", c.field, err)
			}
		})
	}
}

// TestSchemaAndParserAcceptEnvValues: ${VAR} fills any field, typed ones included, for
// the schema and the parser alike (the parser used to refuse it outside string fields).
func TestSchemaAndParserAcceptEnvValues(t *testing.T) {
	s := compiledSchema(t)
	t.Setenv("GH_LEVEL", "debug")
	t.Setenv("GH_FLAG", "true")
	t.Setenv("GH_IDLE", "5m")
	t.Setenv("GH_FLOWS", "100")
	t.Setenv("GH_TOKEN", "null") // a string field keeps it: not YAML's null
	ok := minimalFile + "log:\n  level: ${GH_LEVEL}\nfrontend:\n  require_login: ${GH_FLAG:-false}\n" +
		"session:\n  idle_timeout: ${GH_IDLE}\n  max_pending_flows: ${GH_FLOWS}\ncsrf:\n  value: 1\nadmin:\n  token: ${GH_TOKEN}\n"
	if err := validateYAML(s, []byte(ok)); err != nil {
		t.Errorf("the schema refuses a valid file: %v\n%s", err, ok)
	}
	path := filepath.Join(t.TempDir(), "gatehouse.yaml")
	if err := os.WriteFile(path, []byte(ok), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := loadConfig(path)
	if err != nil {
		t.Fatalf("the parser refuses a valid file: %v", err)
	}
	if !l.gw.Frontend.RequireLogin || l.gw.Session.MaxPendingFlows != 100 || l.gw.Session.IdleTimeout != 5*time.Minute || l.gw.CSRF.Value != "1" || l.gw.Admin.Token != "null" {
		t.Errorf("values from the environment: require_login %v, max_pending_flows %d, idle_timeout %v, csrf.value %q, admin.token %q",
			l.gw.Frontend.RequireLogin, l.gw.Session.MaxPendingFlows, l.gw.Session.IdleTimeout, l.gw.CSRF.Value, l.gw.Admin.Token)
	}
	// A quoted value stays a string, as a quoted literal does.
	quoted := strings.Replace(ok, "max_pending_flows: ${GH_FLOWS}", `max_pending_flows: "${GH_FLOWS}"`, 1)
	if err := os.WriteFile(path, []byte(quoted), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadConfig(path); err == nil || !strings.Contains(err.Error(), "session.max_pending_flows") {
		t.Errorf("a quoted variable in an int field: %v", err)
	}
}

// TestSchemaKnowsEveryKey walks the parser's types: every YAML key it accepts is in the
// committed schema, with a description in schemaDocs; and every schemaDocs entry names
// a key that exists, so the docs cannot describe a key that is gone.
func TestSchemaKnowsEveryKey(t *testing.T) {
	raw, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	var root map[string]any
	if err := json.Unmarshal(raw, &root); err != nil {
		t.Fatal(err)
	}
	var used []string
	var walkType func(rt reflect.Type, node map[string]any, path string)
	walkType = func(rt reflect.Type, node map[string]any, path string) {
		if rt.Kind() == reflect.Pointer {
			rt = rt.Elem()
		}
		if rt.Kind() == reflect.Slice && rt != stringListType {
			items, _ := node["items"].(map[string]any)
			if items == nil {
				t.Errorf("%s: the schema has no items", path)
				return
			}
			walkType(rt.Elem(), items, path+"[]")
			return
		}
		if rt.Kind() != reflect.Struct || rt == durationType || rt == byteSizeType {
			return
		}
		if node["additionalProperties"] != false {
			t.Errorf("%s: the parser is strict but the schema allows unknown keys", nonEmpty(path))
		}
		props, _ := node["properties"].(map[string]any)
		for i := range rt.NumField() {
			f := rt.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			child := join(path, name)
			d, ok := docFor(child)
			if !ok || d.desc == "" {
				t.Errorf("%s: no description: add it to schemaDocs in schema.go", child)
			} else {
				k, _ := docKey(child)
				used = append(used, k)
			}
			sub, _ := props[name].(map[string]any)
			if sub == nil {
				t.Errorf("%s: not in %s: run `go generate ./cmd/gatehouse`", child, schemaFile)
				continue
			}
			walkType(f.Type, sub, child)
		}
		if len(props) != countYAMLFields(rt) {
			t.Errorf("%s: the schema has %d keys, the parser %d", nonEmpty(path), len(props), countYAMLFields(rt))
		}
	}
	walkType(reflect.TypeFor[fileConfig](), root, "")
	for k := range schemaDocs {
		if !slices.Contains(used, k) {
			t.Errorf("schemaDocs[%q] names no key the parser knows", k)
		}
	}
}

func countYAMLFields(rt reflect.Type) int {
	n := 0
	for i := range rt.NumField() {
		if name, _, _ := strings.Cut(rt.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
			n++
		}
	}
	return n
}

func nonEmpty(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

// TestSchemaEnumsAreParserValues: every fixed value the schema offers (editors complete
// them) loads with the parser without a problem on that key.
func TestSchemaEnumsAreParserValues(t *testing.T) {
	type enumKey struct {
		path  []string // YAML keys; "[]" enters a list
		value string
	}
	var keys []enumKey
	var walkSchema func(s object, path []string)
	walkSchema = func(s object, path []string) {
		if items, ok := s["items"].(object); ok {
			walkSchema(items, append(slices.Clone(path), "[]"))
		}
		if props, ok := s["properties"].(object); ok {
			for k, v := range props {
				walkSchema(v.(object), append(slices.Clone(path), k))
			}
		}
		if anyOf, ok := s["anyOf"].([]any); ok {
			if enum, ok := anyOf[0].(object)["enum"].([]string); ok {
				for _, v := range enum {
					keys = append(keys, enumKey{path, v})
				}
			}
		}
	}
	walkSchema(configSchema(), nil)
	if len(keys) < 10 {
		t.Fatalf("only %d fixed values found", len(keys))
	}
	// A route is needed to hold a route's key.
	route := map[string]any{"path": "/api/", "upstream": "http://127.0.0.1:1"}
	for _, k := range keys {
		// Build {a: {b: value}} (or a list) from the path, innermost first.
		var v any = k.value
		for i := len(k.path) - 1; i >= 0; i-- {
			switch {
			case k.path[i] == "[]" && i > 0 && k.path[i-1] == "routes":
				r := maps.Clone(route)
				maps.Copy(r, v.(map[string]any))
				v = []any{r}
			case k.path[i] == "[]":
				v = []any{v}
			default:
				v = map[string]any{k.path[i]: v}
			}
		}
		doc := overMinimal(v.(map[string]any))
		if k.value == "private_key_jwt" {
			doc["provider"].(map[string]any)["client_secret"] = nil
		} else {
			doc["provider"].(map[string]any)["client_secret"] = "s3cret"
		}
		data, err := yaml.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		// The parser names a list's bad item by the list (provider.allowed_auth_params).
		field := strings.ReplaceAll(strings.Join(k.path, "."), ".[]", "[0]")
		field = strings.TrimSuffix(field, "[0]")
		path := filepath.Join(t.TempDir(), "gatehouse.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadConfig(path); err != nil && strings.Contains(err.Error(), field+":") {
			t.Errorf("%s: %q is offered by the schema but refused by the parser: %v", field, k.value, err)
		}
	}
}
