package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

const healthBase = `
public_url: http://127.0.0.1:9080
provider: {issuer: "http://127.0.0.1:1", client_id: bff, client_secret: s}
`

// TestHealthListenAnyAddressNoWarning: health.listen accepts a non-loopback address
// (unlike admin.listen) and adds no warning: `check` prints the same warnings with and
// without it.
func TestHealthListenAnyAddressNoWarning(t *testing.T) {
	dir := t.TempDir()
	without := writeFile(t, dir, "without.yaml", healthBase)
	with := writeFile(t, dir, "with.yaml", healthBase+"health: {listen: \"0.0.0.0:0\"}\n")
	warnings := func(p string) []string {
		t.Helper()
		code, out, errOut := runCmd(t, "check", "--config", p)
		if code != 0 {
			t.Fatalf("check %s = %d\n%s%s", p, code, out, errOut)
		}
		l, err := loadConfig(p)
		if err != nil {
			t.Fatal(err)
		}
		var w []string
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "warning:") {
				w = append(w, line)
			}
		}
		return append(append(w, l.warnings...), l.gw.WeakerOptions()...)
	}
	if a, b := warnings(without), warnings(with); !slices.Equal(a, b) {
		t.Fatalf("health.listen: 0.0.0.0:0 changed the warnings: %q, want %q", b, a)
	}
	// A reload names it among the settings that need a restart.
	a, _ := loadConfig(without)
	b, _ := loadConfig(with)
	if got := fileChanges(a, b); !slices.Equal(got, []string{"health.listen"}) {
		t.Errorf("fileChanges = %v, want [health.listen]", got)
	}
	// The same address is refused for the admin listener without allow_non_loopback.
	admin := writeFile(t, dir, "admin.yaml", healthBase+"admin: {listen: \"0.0.0.0:0\"}\n")
	if code, _, errOut := runCmd(t, "check", "--config", admin); code != 1 || !strings.Contains(errOut, "admin.listen:") {
		t.Fatalf("admin.listen 0.0.0.0:0 = %d %s", code, errOut)
	}
}

// TestHealthListenErrorsNamed: a bad health.listen is named by its key, with every other
// problem of the file at once.
func TestHealthListenErrorsNamed(t *testing.T) {
	dir := t.TempDir()
	for _, v := range []struct{ yaml, want string }{
		{`health: {listen: "nope"}`, `health.listen: "nope" is not host:port`},
		{`health: {listen: "9091"}`, `health.listen: "9091" is not host:port`},
		{"admin: {listen: \"127.0.0.1:9090\"}\nhealth: {listen: \"127.0.0.1:9090\"}", `health.listen: "127.0.0.1:9090" is also admin.listen`},
		{"listen: \"0.0.0.0:9080\"\nhealth: {listen: \"0.0.0.0:9080\"}", `health.listen: "0.0.0.0:9080" is also listen`},
		{"health: {listen: \"nope\", port: 1}", "health.port"},
	} {
		p := writeFile(t, dir, "gatehouse.yaml", healthBase+v.yaml+"\ncookie: {same_site: sideways}\n")
		code, _, errOut := runCmd(t, "check", "--config", p)
		if code != 1 || !strings.Contains(errOut, v.want) || !strings.Contains(errOut, "cookie.same_site") {
			t.Errorf("%s: check = %d, want %q and cookie.same_site in:\n%s", v.yaml, code, v.want, errOut)
		}
	}
}

// TestHealthServerBounds: the health listener has the admin listener's http.Server bounds.
func TestHealthServerBounds(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, opts := range []fileServerOpts{{}, {ReadHeaderTimeout: duration(3 * time.Second), IdleTimeout: duration(40 * time.Second)}} {
		l := &loaded{file: fileConfig{Server: opts}}
		h, a := healthServer(l, http.NotFoundHandler(), log), adminServer(l, http.NotFoundHandler(), log)
		if h.ReadHeaderTimeout != a.ReadHeaderTimeout || h.IdleTimeout != a.IdleTimeout || h.MaxHeaderBytes != a.MaxHeaderBytes ||
			h.ReadTimeout != a.ReadTimeout || h.ReadTimeout == 0 || h.ReadHeaderTimeout == 0 || h.IdleTimeout == 0 || h.MaxHeaderBytes != adminMaxHeaderBytes {
			t.Errorf("%+v: health server ReadHeaderTimeout %v IdleTimeout %v MaxHeaderBytes %d ReadTimeout %v; want the admin's %v %v %d %v", opts,
				h.ReadHeaderTimeout, h.IdleTimeout, h.MaxHeaderBytes, h.ReadTimeout, a.ReadHeaderTimeout, a.IdleTimeout, a.MaxHeaderBytes, a.ReadTimeout)
		}
	}
}

// TestServeHealthListener: `serve` opens health.listen, which answers the probes and 404
// for the rest, next to an admin listener; cancelling ends serve with 0.
func TestServeHealthListener(t *testing.T) {
	port := func() int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port
	}
	pub, adm, hp := port(), port(), port()
	p := writeFile(t, t.TempDir(), "gatehouse.yaml", fmt.Sprintf(healthBase+`
listen: 127.0.0.1:%d
admin: {listen: "127.0.0.1:%d", token: admin-token}
health: {listen: "127.0.0.1:%d"}
log: {level: error}
`, pub, adm, hp))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", p}, io.Discard, io.Discard) }()
	defer func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("serve = %d", code)
			}
		case <-time.After(40 * time.Second):
			t.Error("serve did not stop")
		}
	}()
	get := func(port int, path string) int {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d%s", port, path), nil)
		req.Header.Set("Authorization", "Bearer admin-token")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		res.Body.Close()
		return res.StatusCode
	}
	for deadline := time.Now().Add(10 * time.Second); get(hp, "/healthz") != 200; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the health listener did not answer /healthz")
		}
	}
	// The provider is unreachable: /readyz says 503 with the detail, on both listeners.
	if h, a := get(hp, "/readyz"), get(adm, "/readyz"); h != 503 || a != 503 {
		t.Errorf("/readyz: health %d, admin %d; want 503 on both", h, a)
	}
	for _, path := range []string{"/metrics", "/admin/sessions?sub=alice", "/bff/user"} {
		if c := get(hp, path); c != 404 {
			t.Errorf("health listener %s = %d, want 404", path, c)
		}
	}
	if c := get(adm, "/metrics"); c != 200 {
		t.Errorf("admin listener /metrics = %d", c)
	}
}
