package main

import (
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// problems collects configuration errors, each with the field path, so that `check`
// and `serve` report every problem at once.
type problems []string

func (p *problems) add(path, format string, args ...any) {
	*p = append(*p, fmt.Sprintf("%s: %s", path, fmt.Sprintf(format, args...)))
}

// decodeStrict decodes YAML into out (a pointer to a struct with yaml tags): unknown
// keys, wrong kinds and unparsable values are reported with their field paths and
// lines; ${VAR} and ${VAR:-default} in values are expanded from the environment
// ("$${" stands for a literal "${").
// It reports false when the file is not YAML at all.
func decodeStrict(data []byte, out any, probs *problems) bool {
	_, ok := decodeStrictNode(data, out, probs)
	return ok
}

// decodeStrictNode is decodeStrict that also returns the document's checked and expanded
// root node.
func decodeStrictNode(data []byte, out any, probs *problems) (*yaml.Node, bool) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		probs.add("(file)", "not valid YAML: %v", strings.TrimPrefix(err.Error(), "yaml: "))
		return nil, false
	}
	if len(doc.Content) == 0 {
		probs.add("(file)", "is empty")
		return nil, false
	}
	root := doc.Content[0]
	// walk reports each bad field and blanks it, so that the rest still decodes and the
	// semantic checks can report their problems in the same run.
	walk(root, reflect.TypeOf(out).Elem(), "", probs)
	if err := root.Decode(out); err != nil {
		probs.add("(file)", "%v", err)
	}
	return root, true
}

// blank turns a node the walker rejected into null, which decodes to the zero value.
func blank(n *yaml.Node) {
	*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// walk checks node against type t, expanding environment variables in scalars.
func walk(node *yaml.Node, t reflect.Type, path string, probs *problems) {
	at := func() string {
		if path == "" {
			return "(top level)"
		}
		return path
	}
	if node.Kind == yaml.AliasNode {
		node = node.Alias
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if node.Kind == yaml.ScalarNode && node.Tag == "!!null" {
		return
	}
	// Types with their own YAML decoding (durations, string-or-list) check themselves.
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		fromEnv := expandAll(node, at(), probs)
		if err := node.Decode(reflect.New(t).Interface()); err != nil {
			probs.add(at(), "%s (line %d)", decodeProblem(err, fromEnv), node.Line)
			blank(node)
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if node.Kind != yaml.MappingNode {
			probs.add(at(), "must be a mapping of keys to values (line %d)", node.Line)
			blank(node)
			return
		}
		fields := map[string]reflect.StructField{}
		var names []string
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			fields[name] = f
			names = append(names, name)
		}
		seen := map[string]bool{}
		var kept []*yaml.Node
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			child := join(path, k.Value)
			f, ok := fields[k.Value]
			switch {
			case !ok:
				probs.add(child, "unknown field (line %d)%s", k.Line, suggest(k.Value, names))
				continue
			case seen[k.Value]:
				probs.add(child, "given twice (line %d)", k.Line)
				continue
			}
			seen[k.Value] = true
			walk(v, f.Type, child, probs)
			kept = append(kept, k, v)
		}
		node.Content = kept
	case reflect.Slice:
		if node.Kind != yaml.SequenceNode {
			probs.add(at(), "must be a list (line %d)", node.Line)
			blank(node)
			return
		}
		for i, item := range node.Content {
			walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), probs)
		}
	case reflect.Map:
		if node.Kind != yaml.MappingNode {
			probs.add(at(), "must be a mapping (line %d)", node.Line)
			blank(node)
			return
		}
		for i := 0; i+1 < len(node.Content); i += 2 {
			walk(node.Content[i+1], t.Elem(), join(path, node.Content[i].Value), probs)
		}
	default:
		if node.Kind != yaml.ScalarNode {
			probs.add(at(), "must be a single value (line %d)", node.Line)
			blank(node)
			return
		}
		plain := node.Style&(yaml.TaggedStyle|yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0
		fromEnv := expandAll(node, at(), probs)
		if fromEnv && plain && t.Kind() != reflect.String {
			// The parser tagged the plain "${VAR}" !!str; resolve the value as if it
			// were written there, so that ${PORT} fills an int. A quoted value stays a
			// string, and string fields keep theirs ("null" is not nothing).
			node.Tag = ""
		}
		if err := node.Decode(reflect.New(t).Interface()); err != nil {
			probs.add(at(), "%s (line %d)", decodeProblem(err, fromEnv), node.Line)
			blank(node)
		}
	}
}

// decodeProblem describes a value that does not decode. A value that came from an
// environment variable is not quoted: it may be a secret put in the wrong field.
func decodeProblem(err error, fromEnv bool) string {
	if fromEnv {
		return "the value from the environment variable is not valid here (not shown, it may be a secret)"
	}
	return cleanYAMLError(err)
}

// expandAll expands environment variables in every scalar under node, and reports
// whether it expanded any.
func expandAll(node *yaml.Node, path string, probs *problems) (expanded bool) {
	if node.Kind == yaml.ScalarNode {
		v, missing := expandEnv(node.Value)
		for _, name := range missing {
			probs.add(path, "environment variable %s is not set (line %d)", name, node.Line)
		}
		if v != node.Value {
			node.Value = v
			if node.Tag != "!!str" {
				node.Tag = "" // let the expanded text be resolved like a literal value
			}
			node.Style = 0
			return true
		}
		return false
	}
	for _, c := range node.Content {
		if expandAll(c, path, probs) {
			expanded = true
		}
	}
	return expanded
}

// expandEnv replaces ${NAME} and ${NAME:-default}; "$${" is a literal "${".
func expandEnv(s string) (string, []string) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	var missing []string
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			break
		}
		if i > 0 && s[i-1] == '$' {
			b.WriteString(s[:i-1])
			b.WriteString("${")
			s = s[i+2:]
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		expr := s[i+2 : i+end]
		name, def, hasDef := strings.Cut(expr, ":-")
		if v, ok := os.LookupEnv(name); ok && (v != "" || !hasDef) {
			b.WriteString(v)
		} else if hasDef {
			b.WriteString(def)
		} else {
			missing = append(missing, name)
		}
		s = s[i+end+1:]
	}
	return b.String(), missing
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func cleanYAMLError(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: unmarshal errors:\n")
	msg = strings.TrimSpace(msg)
	if i := strings.Index(msg, ": "); i >= 0 && strings.HasPrefix(msg, "line ") {
		msg = msg[i+2:]
	}
	return msg
}

// suggest proposes the closest known key for a misspelt one.
func suggest(got string, known []string) string {
	best, bestD := "", 4
	for _, k := range known {
		if d := editDistance(got, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return "; did you mean " + strconv.Quote(best) + "?"
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
