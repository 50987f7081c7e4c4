package gatehouse_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const modulePath = "github.com/gatehouse-bff/gatehouse"

// banned are what a program embedding the gateway must not link: the stores and the file
// format that only cmd/gatehouse needs. A package is banned when its import path is path
// or below it, or, for a path ending in '.' or '/', when it starts with path. Entries
// with the same why are one kind of package (any YAML library).
var banned = []struct{ path, why string }{
	{"github.com/redis/rueidis", "the Redis client: only session/redisstore imports it"},
	{"go.etcd.io/bbolt", "the bolt database: only session/boltstore imports it"},
	{modulePath + "/session/redisstore", "a store the program picks itself (cmd/gatehouse does)"},
	{modulePath + "/session/boltstore", "a store the program picks itself (cmd/gatehouse does)"},
	{"gopkg.in/yaml.", "YAML: the configuration file is cmd/gatehouse's business"},
	{"go.yaml.in/yaml/", "YAML: the configuration file is cmd/gatehouse's business"},
	{"sigs.k8s.io/yaml", "YAML: the configuration file is cmd/gatehouse's business"},
	{"github.com/goccy/go-yaml", "YAML: the configuration file is cmd/gatehouse's business"},
	// The library takes an OpenTelemetry API TracerProvider (Config.TracerProvider); the
	// SDK, an exporter and their wire formats are the program's choice, as the binary's.
	{"go.opentelemetry.io/otel/sdk", "the OpenTelemetry SDK: the program that makes the TracerProvider links it (cmd/gatehouse does)"},
	{"go.opentelemetry.io/otel/exporters/", "an OpenTelemetry exporter, with its wire format: the program picks it (cmd/gatehouse: OTLP/HTTP)"},
	{"go.opentelemetry.io/proto/otlp", "an OpenTelemetry exporter, with its wire format: the program picks it (cmd/gatehouse: OTLP/HTTP)"},
	{"google.golang.org/grpc", "gRPC: only the OTLP exporter's dependencies bring it, and only into cmd/gatehouse"},
}

// The library's import graph stays free of the stores and YAML, on every platform it
// builds for, so that embedding the gateway with the memory store compiles neither. Test
// files may import anything: `go list` without -test does not follow them.
func TestDeps(t *testing.T) {
	platforms := []string{runtime.GOOS + "/" + runtime.GOARCH, "linux/amd64", "darwin/arm64", "windows/amd64"}
	slices.Sort(platforms)
	for _, p := range slices.Compact(platforms) {
		t.Run(strings.ReplaceAll(p, "/", "_"), func(t *testing.T) {
			t.Parallel()
			goos, goarch, _ := strings.Cut(p, "/")
			g := listDeps(t, modulePath, "GOOS="+goos, "GOARCH="+goarch)
			for _, v := range g.violations() {
				t.Errorf("%s links %s, %s; import chain:\n\t%s", modulePath, v.pkg, v.why, strings.Join(v.chain, "\n\t→ "))
			}
		})
	}
}

// The check finds what is there: the binary links every kind of banned package (one YAML
// library is enough), and each chain reported leads from the binary to the package, one
// import at a time.
func TestDepsCheckSeesTheBinary(t *testing.T) {
	t.Parallel()
	root := modulePath + "/cmd/gatehouse"
	g := listDeps(t, root)
	got := map[string][]string{}
	for _, v := range g.violations() {
		got[v.why] = v.chain
		if v.chain[0] != root || v.chain[len(v.chain)-1] != v.pkg {
			t.Errorf("chain to %s = %q; want it to run from %s to %s", v.pkg, v.chain, root, v.pkg)
		}
		for i := 1; i < len(v.chain); i++ {
			if !slices.Contains(g.imports[v.chain[i-1]], v.chain[i]) {
				t.Errorf("chain to %s = %q: %s does not import %s", v.pkg, v.chain, v.chain[i-1], v.chain[i])
			}
		}
	}
	for _, b := range banned {
		if _, ok := got[b.why]; !ok {
			t.Errorf("the check does not see that %s links %s", root, b.why)
			got[b.why] = nil // one error per kind
		}
	}
}

// depGraph is what `go list -deps` says of one root package.
type depGraph struct {
	root    string
	order   []string            // every package, dependencies first, as go list prints them
	imports map[string][]string // package → what it imports (not its tests)
}

// listDeps runs `go list -deps -json` on root, with env added to the environment.
func listDeps(t *testing.T, root string, env ...string) *depGraph {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "go", "list", "-deps", "-json=ImportPath,Imports", root)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s %v: %v\n%s", root, env, err, stderr.Bytes())
	}
	g := &depGraph{root: root, imports: map[string][]string{}}
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list -deps %s: %v", root, err)
		}
		g.order = append(g.order, p.ImportPath)
		g.imports[p.ImportPath] = p.Imports
	}
	// Without these the check would pass on an empty or truncated graph.
	for _, want := range []string{root, "net/http", modulePath + "/session"} {
		if _, ok := g.imports[want]; !ok {
			t.Fatalf("go list -deps %s does not list %s: %q", root, want, g.order)
		}
	}
	return g
}

type violation struct {
	pkg, why string
	chain    []string // root first, pkg last
}

// violations returns, for each entry of banned that the graph holds, the package nearest
// the root that it bans, with the shortest import chain to it.
func (g *depGraph) violations() []violation {
	parent := map[string]string{g.root: ""}
	queue := []string{g.root}
	var found []violation
	seen := map[int]bool{} // index in banned
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if i := bannedIndex(p); i >= 0 && !seen[i] {
			seen[i] = true
			var chain []string
			for q := p; q != ""; q = parent[q] {
				chain = append(chain, q)
			}
			slices.Reverse(chain)
			found = append(found, violation{pkg: p, why: banned[i].why, chain: chain})
		}
		for _, q := range g.imports[p] {
			if _, ok := parent[q]; !ok {
				parent[q] = p
				queue = append(queue, q)
			}
		}
	}
	return found
}

func bannedIndex(pkg string) int {
	for i, b := range banned {
		if strings.HasSuffix(b.path, ".") || strings.HasSuffix(b.path, "/") {
			if strings.HasPrefix(pkg, b.path) {
				return i
			}
		} else if pkg == b.path || strings.HasPrefix(pkg, b.path+"/") {
			return i
		}
	}
	return -1
}
