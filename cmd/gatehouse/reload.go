package main

import (
	"errors"
	"log/slog"
	"reflect"
	"slices"
	"strings"

	gatehouse "github.com/gatehouse-bff/gatehouse"
)

// fileOnly are the settings of the file that never reach gatehouse.Config: the binary
// uses them once, when it starts, so a change needs a restart. Every other setting is a
// field of gatehouse.Config, whose `gatehouse` tags say what Gateway.Reload does with a
// change. TestFileSettingsHaveAReloadDecision fails for a setting that is neither.
var fileOnly = []string{
	"listen", "admin.listen", "admin.allow_non_loopback", "health.listen", "provider.timeout", "provider.tls_client_key_file",
	"session.store", "session.redis", "log", "audit_log", "tracing", "tls",
	"server.read_header_timeout", "server.idle_timeout", "server.shutdown_timeout", "server.shutdown_delay",
}

// multiSettings are the settings of a file with frontends that Multi.Reload applies:
// apps added, reloaded and removed.
var multiSettings = []string{"frontends", "default_frontend"}

// reload applies a changed configuration file on SIGHUP or when the watcher saw it
// change: the gateway takes what it can change live, and the audit log file is reopened
// (for logrotate). Every changed setting that needs a restart is named, by its YAML
// key, in one warning; an invalid file changes nothing, and the failure shows in the
// log, gatehouse_config_reloads_total{outcome="failed"} and /readyz. cur is the
// configuration the process started with. It returns the configuration read, or nil
// when it had problems.
func reload(path string, cur *loaded, gw served, audit *auditFile, log *slog.Logger) *loaded {
	if audit != nil {
		if err := audit.Reopen(); err != nil {
			log.Error("cannot reopen the audit log", "error", err)
		}
	}
	next, err := loadConfig(path)
	if err != nil {
		gw.ReloadFailed(err) // first, so that whoever reads the log sees it on /readyz
		log.Error("configuration not reloaded: the file has problems; the running configuration stays", "error", err)
		return nil
	}
	var restart []string
	switch g := gw.(type) {
	case *gatehouse.Gateway:
		if next.apps != nil {
			err = errors.New("frontends: cannot be added while serving one app; restart to serve several")
			g.ReloadFailed(err)
			break
		}
		restart, err = g.Reload(next.gw)
	case *gatehouse.Multi:
		if next.apps == nil {
			err = errors.New("frontends: cannot be removed while serving several apps; restart to serve one")
			g.ReloadFailed(err)
			break
		}
		restart, err = g.Reload(next.multiConfig())
	}
	if err != nil {
		log.Error("configuration not reloaded; the running configuration stays", "error", err)
		return nil
	}
	restart = append(restart, fileChanges(cur, next)...)
	if len(restart) > 0 {
		log.Warn("configuration reloaded, but these changes need a restart to apply", "settings", strings.Join(restart, ", "))
	}
	return next
}

// fileChanges returns the YAML keys of the file-only settings that differ between a and
// b, in the file's order.
func fileChanges(a, b *loaded) []string {
	bv := map[string]any{}
	for _, l := range fileLeaves(reflect.ValueOf(b.file), "") {
		bv[l.key] = l.value.Interface()
	}
	var out []string
	for _, l := range fileLeaves(reflect.ValueOf(a.file), "") {
		if isFileOnly(l.key) && !reflect.DeepEqual(l.value.Interface(), bv[l.key]) {
			out = append(out, l.key)
		}
	}
	// Secrets read from files count by their content, not only by their path.
	for _, s := range []struct {
		key  string
		a, b string
	}{
		{"session.redis.password", a.redis.password, b.redis.password},
		{"session.redis.sentinel_password", a.redis.sentinelPassword, b.redis.sentinelPassword},
		{"session.redis.tls_ca_file", string(a.redis.caPEM), string(b.redis.caPEM)},
	} {
		if s.a != s.b && !slices.Contains(out, s.key) {
			out = append(out, s.key)
		}
	}
	return out
}

func isFileOnly(key string) bool {
	for _, p := range fileOnly {
		if key == p || strings.HasPrefix(key, p+".") {
			return true
		}
	}
	return false
}

// leaf is one setting of the file: its YAML key and its value.
type leaf struct {
	key   string
	value reflect.Value
}

// fileLeaves flattens a struct of the file's format into its settings, by their YAML
// keys: nested structs are walked into; lists, maps and scalars are settings.
func fileLeaves(v reflect.Value, prefix string) []leaf {
	var out []leaf
	t := v.Type()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		f := v.Field(i)
		if f.Kind() == reflect.Struct {
			out = append(out, fileLeaves(f, prefix+name+".")...)
			continue
		}
		out = append(out, leaf{key: prefix + name, value: f})
	}
	return out
}
