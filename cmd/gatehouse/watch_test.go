package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
)

const watchBase = `
public_url: http://127.0.0.1:9080
provider:
  issuer: http://127.0.0.1:9000
  client_id: bff
  client_secret: s3cret
`

func startWatcher(t *testing.T, files ...string) *configWatcher {
	t.Helper()
	w, err := newConfigWatcher(files, 50*time.Millisecond, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

// waitChange reports whether the watcher signals within d.
func waitChange(w *configWatcher, d time.Duration) bool {
	select {
	case <-w.Changed():
		return true
	case <-time.After(d):
		return false
	}
}

func TestWatchSeesRenameOver(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "gatehouse.yaml", watchBase)
	w := startWatcher(t, p)
	// An editor's save: write a temporary file, rename it over the original.
	tmp := writeFile(t, dir, ".gatehouse.yaml.swp", watchBase+"routes:\n  - {path: /api/, upstream: http://127.0.0.1:1}\n")
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	if !waitChange(w, 2*time.Second) {
		t.Fatal("no change seen within 2s after a rename over the file")
	}
}

func TestWatchSeesConfigMapSymlinkSwap(t *testing.T) {
	// The layout the kubelet gives a mounted ConfigMap: dir/gatehouse.yaml →
	// ..data/gatehouse.yaml, ..data → ..<timestamp>; an update writes a new timestamped
	// directory and renames a new ..data symlink over the old one.
	dir := t.TempDir()
	v1 := filepath.Join(dir, "..2026_01_01_v1")
	os.Mkdir(v1, 0o755)
	writeFile(t, v1, "gatehouse.yaml", watchBase)
	must(t, os.Symlink("..2026_01_01_v1", filepath.Join(dir, "..data")))
	p := filepath.Join(dir, "gatehouse.yaml")
	must(t, os.Symlink("..data/gatehouse.yaml", p))
	w := startWatcher(t, p)

	v2 := filepath.Join(dir, "..2026_01_02_v2")
	os.Mkdir(v2, 0o755)
	writeFile(t, v2, "gatehouse.yaml", watchBase+"insecure_diagnostics: false\n")
	must(t, os.Symlink("..2026_01_02_v2", filepath.Join(dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	must(t, os.RemoveAll(v1))
	if !waitChange(w, 2*time.Second) {
		t.Fatal("no change seen within 2s after the ..data symlink swap")
	}
}

func TestWatchSeesSecretFileAndIgnoresOthers(t *testing.T) {
	dir, secrets := t.TempDir(), t.TempDir()
	sf := writeFile(t, secrets, "client_secret", "one")
	p := writeFile(t, dir, "gatehouse.yaml", watchBase)
	w := startWatcher(t, p, sf)
	writeFile(t, dir, "unrelated.log", "x")
	must(t, os.WriteFile(p, []byte(watchBase), 0o600)) // the same content
	if waitChange(w, 500*time.Millisecond) {
		t.Fatal("a change was signalled for an unrelated file or for the same content")
	}
	writeFile(t, secrets, "client_secret", "two")
	if !waitChange(w, 2*time.Second) {
		t.Fatal("no change seen within 2s after a *_file secret changed")
	}
}

func TestWatchDebounces(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "gatehouse.yaml", watchBase)
	w := startWatcher(t, p)
	for i := range 5 {
		writeFile(t, dir, "gatehouse.yaml", watchBase+strings.Repeat("#\n", i+1))
		time.Sleep(10 * time.Millisecond)
	}
	if !waitChange(w, 2*time.Second) {
		t.Fatal("no change seen")
	}
	if waitChange(w, 500*time.Millisecond) {
		t.Fatal("five writes within the debounce gave more than one reload")
	}
}

// TestReloadFailureKeepsTheRunningConfig: a broken file changes nothing, and says so in
// the metric and on /readyz (which stays ready); the next good file clears it.
func TestReloadFailureKeepsTheRunningConfig(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "upstream") }))
	defer up.Close()
	dir := t.TempDir()
	route := "routes:\n  - {path: /api/, upstream: " + up.URL + ", token: none}\n"
	p := writeFile(t, dir, "gatehouse.yaml", watchBase+route)
	l, err := loadConfig(p)
	must(t, err)
	gw, err := gatehouse.New(l.gw)
	must(t, err)
	defer gw.Close()
	log := slog.New(slog.DiscardHandler)
	admin := gw.AdminHandler()
	get := func(h http.Handler, path string) string {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "http://127.0.0.1:9080"+path, nil)
		req.Header.Set("X-CSRF", "1")
		h.ServeHTTP(rec, req)
		return rec.Body.String()
	}

	writeFile(t, dir, "gatehouse.yaml", watchBase+route+"rate_limits: {login: {per_minute: oops}}\n")
	if reload(p, l, gw, nil, log) != nil {
		t.Fatal("reload of a broken file returned a configuration")
	}
	if got := get(gw, "/api/x"); got != "upstream" {
		t.Fatalf("after a failed reload /api/x = %q, want the old route", got)
	}
	metrics := get(admin, "/metrics")
	for _, want := range []string{`gatehouse_config_reloads_total{outcome="failed"} 1`, "gatehouse_config_last_reload_success 0"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if rz := get(admin, "/readyz"); !strings.Contains(rz, "configuration reload failed") || !strings.Contains(rz, "1 problem(s)") {
		t.Errorf("/readyz = %s, want the reload failure", rz)
	}
	if gw.Readiness(t.Context()).Reload == nil {
		t.Error("Readiness().Reload is nil after a failed reload")
	}

	writeFile(t, dir, "gatehouse.yaml", watchBase)
	if reload(p, l, gw, nil, log) == nil {
		t.Fatal("reload of a good file failed")
	}
	metrics = get(admin, "/metrics")
	for _, want := range []string{`gatehouse_config_reloads_total{outcome="ok"} 1`, "gatehouse_config_last_reload_success 1"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if rz := get(admin, "/readyz"); strings.Contains(rz, "reload failed") {
		t.Errorf("/readyz = %s after a good reload", rz)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
