package gatehouse

import (
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"

	"github.com/gatehouse-bff/gatehouse/upstream"
)

// running is the configuration a Gateway serves with, and what is derived from it.
// Reload replaces it as a whole; requests under way finish with the one they started
// with. Only the live fields of reloadRules ever differ from what New was given.
type running struct {
	cfg    Config                // with defaults applied
	routes []*route              // longest prefix first
	strip  *upstream.HeaderNames // every route's identity header names, nil for none
	// csrfHeader is cfg.CSRF.Header in canonical form: looked up in the header map
	// directly, it costs no allocation per request.
	csrfHeader string
}

func (g *Gateway) current() *running { return g.run.Load() }

// config is the configuration in effect now. Read it once per use: a reload may replace
// it between two calls.
func (g *Gateway) config() *Config { return &g.run.Load().cfg }

func newRunning(cfg Config) *running {
	run := &running{cfg: cfg, csrfHeader: http.CanonicalHeaderKey(cfg.CSRF.Header)}
	origin := strings.TrimSuffix(cfg.PublicURL, "/")
	strip := identityStrip(cfg.Routes)
	run.strip = strip
	for _, r := range cfg.Routes {
		u, _ := url.Parse(r.Upstream)
		hdr := http.Header{}
		for k, v := range r.Headers {
			hdr.Set(k, v)
		}
		rt := &route{Route: r, prefix: routePrefix(r.Path), strip: strip}
		rt.identity = newRouteIdentity(r, origin, rt.prefix)
		if r.Upstream != "" { // else a forward-auth-only route: no target, never proxied
			rt.target = &upstream.Target{Name: rt.prefix, Prefix: rt.prefix, StripPrefix: r.StripPrefix, URL: u,
				Timeout: r.Timeout, Headers: hdr, ForwardCookies: r.ForwardCookies,
				Fast: r.Transport == TransportFast || r.Transport == "" && cfg.fastByDefault()}
		}
		run.routes = append(run.routes, rt)
	}
	slices.SortFunc(run.routes, func(a, b *route) int { return len(b.prefix) - len(a.prefix) })
	return run
}

// reloadMode is what Reload does with a changed field.
type reloadMode int

const (
	// restart: the field is built into something long-lived (the provider client, the
	// session manager, the cookie policy); a change is reported and waits for a restart.
	restart reloadMode = iota
	// live: the field is read while serving; Reload applies a change at once.
	live
	// dependency: a live dependency the embedder passes (a logger, a store, a clock);
	// Reload neither compares nor replaces it.
	dependency
)

// reloadRule is the reload decision for one field of Config: its place, its YAML key
// and its mode. A rule on a struct covers all of its fields.
type reloadRule struct {
	index []int
	key   string
	mode  reloadMode
}

// reloadRules are read once from the `gatehouse` tags of Config's fields, the one
// declaration of what Reload may change while serving (TestReloadRulesCoverConfig fails
// when a field has no tag). A field tagged live must really be read while serving,
// through Gateway.config, never captured at New.
var reloadRules = configRules(reflect.TypeFor[Config](), nil, "")

// configRules walks the fields of struct type t. A struct field without a mode of its
// own is walked into; any other field is one rule. A field without a tag, or with an
// unknown mode, needs a restart (and fails TestReloadRulesCoverConfig).
func configRules(t reflect.Type, index []int, prefix string) []reloadRule {
	var rules []reloadRule
	for i := range t.NumField() {
		f := t.Field(i)
		idx := append(slices.Clone(index), i)
		tag, ok := f.Tag.Lookup("gatehouse")
		if !ok {
			tag = f.Name // a test fails; meanwhile the safe choice: report it, apply nothing
		}
		if tag == "-" {
			rules = append(rules, reloadRule{index: idx, mode: dependency})
			continue
		}
		key, opt, _ := strings.Cut(tag, ",")
		key = prefix + key
		switch {
		case opt == "live":
			rules = append(rules, reloadRule{index: idx, key: key, mode: live})
		case opt == "" && f.Type.Kind() == reflect.Struct:
			rules = append(rules, configRules(f.Type, idx, key+".")...)
		default:
			rules = append(rules, reloadRule{index: idx, key: key, mode: restart})
		}
	}
	return rules
}

// Reload applies the live fields of cfg while serving (routes, rate limits, WebSocket
// origins, the login flow timeout, diagnostics, the server key ring: see reloadRules and
// docs/configuration.md): requests already under way finish with the old values,
// sessions are untouched. A changed field that needs a restart keeps its running value
// and is returned by its YAML name, for a warning; dependencies (loggers, the store, the
// clock, transports) are neither compared nor replaced. cfg is validated first, and
// nothing changes when it is invalid.
func (g *Gateway) Reload(cfg Config) (needRestart []string, err error) {
	defer func() { g.recordReload(err) }()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	old := g.current()
	next, needRestart := reloadDiff(old.cfg, cfg.withDefaults())
	keysChanged := !reflect.DeepEqual(old.cfg.Session.Keys, next.Session.Keys) ||
		!reflect.DeepEqual(old.cfg.Session.AcceptKeys, next.Session.AcceptKeys)
	if keysChanged {
		ring, err := serverKeyRing(next)
		if err != nil {
			return nil, err
		}
		g.sessions.SetKeys(ring)
		g.log.Info("server key ring reloaded", "keys", len(next.Session.Keys), "accepted_keys", len(next.Session.AcceptKeys))
	}
	rotated, err := g.identityKeys.update(next.Identity, g.now())
	if err != nil {
		return nil, err
	}
	if rotated {
		g.log.Info("identity signing key rotated; the previous key stays published", "overlap", keyOverlap(next.Identity.AssertionTTL).String())
	}
	if next.signsWithGeneratedKey() && !old.cfg.signsWithGeneratedKey() {
		g.log.Warn(generatedKeyWarning)
	}
	g.run.Store(newRunning(next))
	g.log.Info("configuration reloaded", "routes", len(next.Routes), "routes_before", len(old.routes))
	before := old.cfg.WeakerOptions()
	for _, w := range next.WeakerOptions() {
		if !slices.Contains(before, w) {
			g.log.Warn("weaker security option in use", "option", w)
		}
	}
	return needRestart, nil
}

// reloadDiff returns cur with the live fields of next, and the YAML keys of the fields
// that differ but need a restart.
func reloadDiff(cur, next Config) (Config, []string) {
	out := cur
	have, want := reflect.ValueOf(&out).Elem(), reflect.ValueOf(next)
	var needRestart []string
	for _, rule := range reloadRules {
		if rule.mode == dependency {
			continue
		}
		if rule.key == "providers" && len(cur.Providers) <= 1 && len(next.Providers) <= 1 {
			continue // the one provider's changes are named by its provider.* keys
		}
		h, w := have.FieldByIndex(rule.index), want.FieldByIndex(rule.index)
		if reflect.DeepEqual(h.Interface(), w.Interface()) {
			continue
		}
		if rule.mode == live {
			h.Set(w)
		} else {
			needRestart = append(needRestart, rule.key)
		}
	}
	return out, needRestart
}

// ReloadFailed records a reload that failed before it reached Reload (a configuration
// file that does not parse): gatehouse_config_reloads_total{outcome="failed"}, the
// gatehouse_config_last_reload_success gauge and a warning on /readyz, until the next
// successful reload. Only the first line of err is kept for /readyz, which may be
// probed without a token; log the whole error.
func (g *Gateway) ReloadFailed(err error) {
	if err == nil {
		err = errors.New("unknown error")
	}
	g.recordReload(err)
}

func (g *Gateway) recordReload(err error) {
	if err == nil {
		g.reloadFailure.Store(nil)
		g.metrics.reloads.WithLabelValues("ok").Inc()
		g.metrics.reloadOK.Set(1)
		return
	}
	why, _, _ := strings.Cut(err.Error(), "\n")
	why = strings.TrimSuffix(why, ":")
	g.reloadFailure.Store(&why)
	g.metrics.reloads.WithLabelValues("failed").Inc()
	g.metrics.reloadOK.Set(0)
}
