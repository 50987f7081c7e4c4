package main

import (
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	gatehouse "github.com/gatehouse-bff/gatehouse"
)

// A file with frontends: is several apps. Each app's settings are the file's top level
// with the app's own (frontends[i]) laid over it: mappings merge key by key, anything
// else is replaced. The app's providers: names entries of the top-level providers: (all
// of them, in order, when it names none). What an app cannot set (listen, the store, the
// keys, logs, rate limits, TLS, …) the strict parser already refused inside frontends.

// appKeys are the top-level keys that are not an app's settings.
var appKeys = []string{"frontends", "default_frontend", "providers", "provider"}

// loadFrontends turns the checked document root of a file with frontends into one
// fileConfig per app. Problems name the frontend's field (frontends[1].providers).
func loadFrontends(root *yaml.Node, fc fileConfig, probs *problems) []appFile {
	items := mappingValue(root, "frontends")
	if items == nil || items.Kind != yaml.SequenceNode {
		return nil
	}
	topProviders := mappingValue(root, "providers")
	named := map[string]*yaml.Node{}
	var allProviders []*yaml.Node
	index := map[*yaml.Node]int{} // a top-level provider's place in providers:
	listed := false
	if topProviders != nil && topProviders.Kind == yaml.SequenceNode {
		for i, p := range topProviders.Content {
			name := scalarValue(mappingValue(p, "name"))
			field := fmt.Sprintf("providers[%d].name", i)
			switch {
			case name == "":
				probs.add(field, "is required: frontends name their providers")
			case named[name] != nil:
				probs.add(field, "%q names another provider too", name)
			default:
				named[name] = p
			}
			index[p] = i
			allProviders = append(allProviders, p)
		}
		listed = true
	} else if p := mappingValue(root, "provider"); p != nil {
		allProviders = []*yaml.Node{p}
	}
	var out []appFile
	for i, item := range items.Content {
		app := fc.Frontends[i]
		merged := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		for j := 0; j+1 < len(root.Content); j += 2 {
			if !slices.Contains(appKeys, root.Content[j].Value) {
				merged.Content = append(merged.Content, root.Content[j], deepCopy(root.Content[j+1]))
			}
		}
		for j := 0; j+1 < len(item.Content); j += 2 {
			if k := item.Content[j].Value; k != "name" && k != "providers" {
				setMerged(merged, item.Content[j], item.Content[j+1])
			}
		}
		chosen := allProviders
		badNames := false
		if len(app.Providers) > 0 {
			chosen = nil
			for k, name := range app.Providers {
				p := named[name]
				if p == nil {
					probs.add(fmt.Sprintf("frontends[%d].providers[%d]", i, k), "%q is none of the providers' names", name)
					badNames = true
					continue
				}
				chosen = append(chosen, p)
			}
		}
		af := appFile{badProviders: badNames || len(chosen) == 0}
		for _, p := range chosen {
			if listed {
				af.providerFields = append(af.providerFields, fmt.Sprintf("providers[%d]", index[p]))
			} else {
				af.providerFields = append(af.providerFields, "provider")
			}
		}
		switch len(chosen) {
		case 0:
			if len(app.Providers) == 0 {
				probs.add(fmt.Sprintf("frontends[%d].providers", i), "no provider: set provider: or providers: at the top level")
			}
		case 1:
			setMerged(merged, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "provider"}, deepCopy(chosen[0]))
		default:
			seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
			for _, p := range chosen {
				seq.Content = append(seq.Content, deepCopy(p))
			}
			setMerged(merged, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "providers"}, seq)
		}
		if err := merged.Decode(&af.file); err != nil {
			probs.add(fmt.Sprintf("frontends[%d]", i), "%v", err)
		}
		out = append(out, af)
	}
	return out
}

// appFile is one app's merged settings, and what its provider problems are about.
type appFile struct {
	file fileConfig
	// providerFields are the top-level fields of the app's providers, in its order:
	// "providers[2]", or "provider".
	providerFields []string
	badProviders   bool // its providers: names none, or a name that is no provider's
}

// providerLine turns a problem of an app's provider (provider.x, providers[k].x) into
// the field of the file where that provider is (providers[2].x), and says whether it was
// one.
func (a appFile) providerLine(line string) (string, bool) {
	var k int
	var rest string
	switch {
	case strings.HasPrefix(line, "provider."):
		k, rest = 0, strings.TrimPrefix(line, "provider")
	case strings.HasPrefix(line, "providers["):
		end := strings.Index(line, "]")
		if _, err := fmt.Sscanf(line[len("providers["):end], "%d", &k); err != nil {
			return line, false
		}
		rest = line[end+1:]
	default:
		return line, false
	}
	if k >= len(a.providerFields) {
		return line, true
	}
	return a.providerFields[k] + rest, true
}

// loadApps converts each app of a file with frontends and checks them, alone and
// against each other. A problem every app has (a shared setting's) is reported once;
// one of some apps only is prefixed with frontends[i].
func (l *loaded) loadApps(base string, apps []appFile, probs *problems) {
	var lines [][]string
	for i, af := range apps {
		sub := &loaded{file: af.file}
		var all, p problems
		cfg := sub.convert(base, &all)
		cfg.Name = l.file.Frontends[i].Name
		if err := cfg.Validate(); err != nil {
			all = append(all, strings.Split(err.Error(), "\n")...)
		}
		for _, line := range all {
			fixed, isProvider := af.providerLine(line)
			switch {
			case isProvider && af.badProviders:
				// Its providers: is wrong, which is reported: not what follows from it.
			case isProvider:
				if !slices.Contains(*probs, fixed) {
					*probs = append(*probs, fixed) // the provider's, once
				}
			default:
				p = append(p, line)
			}
		}
		lines = append(lines, p)
		l.apps = append(l.apps, cfg)
		if i == 0 {
			// The first app's conversion holds what every app shares: the store, logs,
			// tracing, TLS, the admin token.
			shared := sub
			shared.file = l.file
			l.storeURL, l.redis, l.logger, l.auditOut, l.auditPath = shared.storeURL, shared.redis, shared.logger, shared.auditOut, shared.auditPath
			l.accessPath, l.tracing, l.tls, l.warnings = shared.accessPath, shared.tracing, shared.tls, append(l.warnings, shared.warnings...)
			l.gw = cfg
		}
	}
	seen := map[string]bool{}
	for i, p := range lines {
		for _, line := range p {
			inAll := true
			for _, q := range lines {
				inAll = inAll && slices.Contains(q, line)
			}
			if inAll {
				if !seen[line] {
					seen[line] = true
					*probs = append(*probs, line)
				}
				continue
			}
			*probs = append(*probs, fmt.Sprintf("frontends[%d].%s", i, line))
		}
	}
	if err := l.multiConfig().Validate(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			if (strings.HasPrefix(line, "default_frontend") || isConflict(line)) && !slices.Contains(*probs, line) {
				*probs = append(*probs, line)
			}
		}
	}
}

// isConflict reports whether a MultiConfig problem is about apps against each other
// (the apps' own problems were reported already).
func isConflict(line string) bool {
	for _, s := range []string{"names frontends[", "is the public URL of frontends[", "cookie on the same host", "is not a name"} {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

// multiConfig is the library's configuration of the apps.
func (l *loaded) multiConfig() gatehouse.MultiConfig {
	return gatehouse.MultiConfig{Frontends: slices.Clone(l.apps), DefaultFrontend: l.file.DefaultFrontend}
}

func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func scalarValue(n *yaml.Node) string {
	if n == nil || n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.Value
}

// setMerged sets key in the mapping m to v: a mapping merges into a mapping already
// there, key by key; anything else replaces it.
func setMerged(m, key, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != key.Value {
			continue
		}
		if old := m.Content[i+1]; old.Kind == yaml.MappingNode && v.Kind == yaml.MappingNode {
			for j := 0; j+1 < len(v.Content); j += 2 {
				setMerged(old, v.Content[j], v.Content[j+1])
			}
			return
		}
		m.Content[i+1] = deepCopy(v)
		return
	}
	m.Content = append(m.Content, key, deepCopy(v))
}

func deepCopy(n *yaml.Node) *yaml.Node {
	if n == nil {
		return nil
	}
	c := *n
	c.Content = nil
	for _, x := range n.Content {
		c.Content = append(c.Content, deepCopy(x))
	}
	return &c
}
