package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/session/boltstore"
	"github.com/gatehouse-bff/gatehouse/session/memstore"
	"github.com/gatehouse-bff/gatehouse/session/redisstore"
)

// sessionTemplate is what one real login stored: token and claim sizes are taken from
// it, values are random per session.
type sessionTemplate struct {
	Issuer       string         `json:"issuer"`
	AccessToken  int            `json:"access_token_len"`
	RefreshToken int            `json:"refresh_token_len"`
	IDToken      int            `json:"id_token_len"`
	Claims       map[string]any `json:"claims"`
}

// memResult is what `bench memsession` prints (JSON).
type memResult struct {
	Store      string  `json:"store"`
	Sessions   int     `json:"sessions"`
	TokenBytes int     `json:"token_bytes"`  // access + refresh + ID token, per session
	RecordSize int     `json:"record_bytes"` // one sealed record, as stored
	Heap       float64 `json:"heap_per_session"`
	RSS        float64 `json:"rss_per_session"`
	StoreBytes float64 `json:"store_per_session"` // redis used_memory or bolt file growth
	Live       float64 `json:"live_per_session"`  // bolt: pages in use
	KeyUsage   int     `json:"key_usage"`         // redis MEMORY USAGE of one record
	Decoded    float64 `json:"decoded_per_session"`
	DecodedMax int     `json:"decoded_max"`
	Seconds    float64 `json:"seconds"`
}

func memSessionMain(args []string) error {
	fs := flag.NewFlagSet("memsession", flag.ContinueOnError)
	store := fs.String("store", "memory", "memory, bolt or redis")
	n := fs.Int("n", 100000, "sessions to create")
	tmplPath := fs.String("template", "", "session template (JSON)")
	redisAddr := fs.String("redis", "", "redis address (an otherwise empty server)")
	dir := fs.String("dir", os.TempDir(), "directory for the bolt file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var tmpl sessionTemplate
	b, err := os.ReadFile(*tmplPath)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &tmpl); err != nil {
		return err
	}
	ctx := context.Background()
	keys, _ := session.NewKeyRing(session.NewRandomKey())
	res := memResult{Store: *store, Sessions: *n, TokenBytes: tmpl.AccessToken + tmpl.RefreshToken + tmpl.IDToken}
	start := time.Now()
	switch *store {
	case "memory":
		heap0, rss0 := memNow()
		st := memstore.New(memstore.Options{})
		m := newManager(st, keys)
		h, err := createSessions(ctx, m, tmpl, *n, 1)
		if err != nil {
			return err
		}
		heap1, rss1 := memNow()
		res.Heap = float64(heap1-heap0) / float64(*n)
		res.RSS = float64(rss1-rss0) / float64(*n)
		rec, _ := st.Get(ctx, "s:{"+h+"}")
		res.RecordSize = len(rec)
		runtime.KeepAlive(st)
		// The decoded-record cache of the hot path: loading a session keeps its decoded
		// form, for at most 10,000 sessions.
		res.DecodedMax = 10000
		if res.Decoded, err = decodedCost(ctx, keys, tmpl, min(*n, res.DecodedMax)); err != nil {
			return err
		}
	case "redis":
		before := redisUsedMemory(*redisAddr)
		st, err := redisstore.Open(ctx, redisstore.Options{URL: "redis://" + *redisAddr + "/0"})
		if err != nil {
			return err
		}
		defer st.Close()
		m := newManager(st, keys)
		h, err := createSessions(ctx, m, tmpl, *n, 32)
		if err != nil {
			return err
		}
		after := redisUsedMemory(*redisAddr)
		res.StoreBytes = float64(after-before) / float64(*n)
		fmt.Sscanf(redisCmd(*redisAddr, "MEMORY", "USAGE", "gatehouse:s:{"+h+"}", "SAMPLES", "0"), ":%d", &res.KeyUsage)
		res.RecordSize = len(redisCmd(*redisAddr, "GET", "gatehouse:s:{"+h+"}"))
	case "bolt":
		path := filepath.Join(*dir, "memsession.db")
		st, err := boltstore.Open(boltstore.Options{Path: path, InsecureNoSync: true})
		if err != nil {
			return err
		}
		fi, _ := os.Stat(path)
		size0 := fi.Size()
		m := newManager(st, keys)
		h, err := createSessions(ctx, m, tmpl, *n, 1)
		if err != nil {
			return err
		}
		rec, _ := st.Get(ctx, "s:{"+h+"}")
		res.RecordSize = len(rec)
		st.Close()
		fi, _ = os.Stat(path)
		res.StoreBytes = float64(fi.Size()-size0) / float64(*n)
		live, err := boltLiveBytes(path)
		if err != nil {
			return err
		}
		res.Live = float64(live) / float64(*n)
	default:
		return fmt.Errorf("unknown store %q", *store)
	}
	res.Seconds = time.Since(start).Seconds()
	return json.NewEncoder(os.Stdout).Encode(res)
}

func newManager(st session.Store, keys *session.KeyRing) *session.Manager {
	return &session.Manager{Store: st, Keys: keys, IdleTimeout: 30 * time.Minute, AbsoluteTimeout: 12 * time.Hour}
}

// createSessions creates n sessions shaped like tmpl (distinct subjects, provider
// sessions and random tokens of the template's sizes) with the given concurrency, and
// returns the handle of one of them.
func createSessions(ctx context.Context, m *session.Manager, tmpl sessionTemplate, n, workers int) (string, error) {
	var next atomic.Int64
	var handle atomic.Value
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				s := newBenchSession(tmpl, int(i))
				if _, err := m.Create(ctx, s); err != nil {
					errs <- err
					return
				}
				if i == 0 {
					handle.Store(s.Handle)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return "", err
	}
	return handle.Load().(string), nil
}

func newBenchSession(tmpl sessionTemplate, i int) *session.Session {
	now := time.Now()
	sub := fmt.Sprintf("user-%07d", i)
	claims := maps.Clone(tmpl.Claims)
	claims["sub"] = sub
	return &session.Session{
		Subject: sub, Issuer: tmpl.Issuer, ProviderSID: randomToken(26),
		UserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
		IP:        "203.0.113.7", Claims: claims, IDToken: randomToken(tmpl.IDToken),
		Token: session.Token{AccessToken: randomToken(tmpl.AccessToken), TokenType: "Bearer", Expiry: now.Add(5 * time.Minute),
			Issued: now, RefreshToken: randomToken(tmpl.RefreshToken), RefreshExpiry: now.Add(24 * time.Hour),
			Scope: "openid profile email offline_access"},
	}
}

// decodedCost is the heap each loaded session adds in the Manager's decoded-record cache.
func decodedCost(ctx context.Context, keys *session.KeyRing, tmpl sessionTemplate, n int) (float64, error) {
	st := memstore.New(memstore.Options{})
	defer st.Close()
	m := newManager(st, keys)
	cookies := make([]string, n)
	for i := range cookies {
		c, err := m.Create(ctx, newBenchSession(tmpl, i))
		if err != nil {
			return 0, err
		}
		cookies[i] = c
	}
	heap0, _ := memNow()
	for _, c := range cookies {
		if _, err := m.Load(ctx, c); err != nil {
			return 0, err
		}
	}
	heap1, _ := memNow()
	runtime.KeepAlive(m)
	return float64(heap1-heap0) / float64(n), nil
}

// memNow is the live heap after a full collection, and the process's RSS, in bytes.
func memNow() (heap, rss int64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc), rssKB(os.Getpid()) << 10
}

func redisUsedMemory(addr string) int64 {
	info := redisCmd(addr, "INFO", "memory")
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			var n int64
			fmt.Sscanf(v, "%d", &n)
			return n
		}
	}
	return 0
}

// boltLiveBytes is the size of a bolt file's pages in use (not free or pending).
func boltLiveBytes(path string) (int64, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var size int64
	err = db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	st := db.Stats()
	return size - int64(st.FreePageN+st.PendingPageN)*int64(db.Info().PageSize), err
}

// memoryPerSession runs `bench memsession` for each store in a fresh process (and, for
// Redis, a fresh server), with a template taken from a real login.
func (e *env) memoryPerSession() ([]memResult, error) {
	n := e.o.sessions
	step("memory per session: %d sessions per store", n)
	tok := e.idp.lastIssued()
	if tok.AccessToken == "" {
		return nil, errors.New("no login to take a session template from")
	}
	tmpl := sessionTemplate{Issuer: e.idp.issuer, AccessToken: len(tok.AccessToken), RefreshToken: len(tok.RefreshToken),
		IDToken: len(tok.IDToken), Claims: idTokenClaims(tok.IDToken)}
	tp := filepath.Join(e.dir, "template.json")
	b, _ := json.Marshal(tmpl)
	if err := os.WriteFile(tp, b, 0o600); err != nil {
		return nil, err
	}
	var out []memResult
	for _, s := range stores {
		args := []string{"memsession", "-store", s, "-n", fmt.Sprint(n), "-template", tp, "-dir", e.dir}
		var rp *proc
		if s == "redis" {
			port, err := freePort()
			if err != nil {
				return nil, err
			}
			if rp, err = startRedis(e.dir, "redis-memory", e.o.loadCPUs, port); err != nil {
				return nil, err
			}
			args = append(args, "-redis", fmt.Sprintf("127.0.0.1:%d", port))
		}
		cmd := exec.Command(e.self, args...)
		cmd.Stderr = os.Stderr
		outb, err := cmd.Output()
		if rp != nil {
			rp.stop()
		}
		if err != nil {
			return nil, fmt.Errorf("memsession %s: %w", s, err)
		}
		var r memResult
		if err := json.Unmarshal(outb, &r); err != nil {
			return nil, fmt.Errorf("memsession %s: %w: %s", s, err, outb)
		}
		fmt.Fprintf(os.Stderr, "  %-7s %d sessions in %.1f s: heap %.0f B, RSS %.0f B, store %.0f B per session (tokens %d B, record %d B)\n",
			s, n, r.Seconds, r.Heap, r.RSS, r.StoreBytes, r.TokenBytes, r.RecordSize)
		out = append(out, r)
	}
	return out, nil
}

// idTokenClaims are the claims a login keeps in the session: the ID token's, without
// the protocol claims.
func idTokenClaims(idt string) map[string]any {
	claims := map[string]any{}
	parts := strings.Split(idt, ".")
	if len(parts) == 3 {
		if b, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
			json.Unmarshal(b, &claims)
		}
	}
	for _, c := range []string{"iss", "aud", "exp", "iat", "nbf", "nonce", "at_hash", "c_hash", "auth_time", "sid", "azp", "jti"} {
		delete(claims, c)
	}
	return claims
}
