package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// balancer spreads requests round-robin over the replicas that pass its health check
// (GET /readyz on the admin listener every 500 ms), as a load balancer would; with none
// healthy it tries them all. A connection refused is tried on the next replica (nothing
// was sent); any other failure to get an answer is its own JSON 502, marked with
// X-Chaos-Balancer so that the run tells it from a gateway's. Every answer names the
// replica in X-Chaos-Replica.
type balancer struct {
	url string
	ln  net.Listener
	srv *http.Server

	mu       sync.Mutex
	replicas []*replica
	healthy  []bool
	next     atomic.Uint64
	tr       *http.Transport
	stop     chan struct{}
	stopOnce sync.Once
}

type replicaKey struct{}

func newBalancer() (*balancer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	lb := &balancer{url: "http://" + ln.Addr().String(), ln: ln, stop: make(chan struct{})}
	lb.tr = &http.Transport{
		DialContext:           (&net.Dialer{Timeout: time.Second}).DialContext,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 20 * time.Second,
	}
	return lb, nil
}

func (lb *balancer) setBackends(rs []*replica) {
	lb.mu.Lock()
	lb.replicas = rs
	lb.healthy = make([]bool, len(rs))
	for i := range lb.healthy {
		lb.healthy[i] = true
	}
	lb.mu.Unlock()
	go lb.healthLoop()
	proxy := &httputil.ReverseProxy{
		Transport: lb,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.Host = pr.In.Host // the replicas see the public host
			pr.SetXForwarded()
		},
		ModifyResponse: func(resp *http.Response) error {
			if i, ok := resp.Request.Context().Value(replicaKey{}).(*int); ok && *i >= 0 {
				resp.Header.Set("X-Chaos-Replica", strconv.Itoa(*i))
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Chaos-Balancer", "1")
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprintf(w, `{"error":"balancer","reason":%q}`, shortErr(err))
		},
	}
	lb.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := -1
		proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), replicaKey{}, &i)))
	}), ReadHeaderTimeout: 10 * time.Second}
	go lb.srv.Serve(lb.ln)
}

// RoundTrip picks a replica; a refused connection moves on to the next one.
func (lb *balancer) RoundTrip(req *http.Request) (*http.Response, error) {
	lb.mu.Lock()
	n := len(lb.replicas)
	var order []int
	start := int(lb.next.Add(1))
	for k := range n {
		if i := (start + k) % n; lb.healthy[i] {
			order = append(order, i)
		}
	}
	if len(order) == 0 {
		for k := range n {
			order = append(order, (start+k)%n)
		}
	}
	rs := lb.replicas
	lb.mu.Unlock()
	var lastErr error
	for _, i := range order {
		out := req.Clone(req.Context())
		out.URL.Host = strings.TrimPrefix(rs[i].url, "http://")
		resp, err := lb.tr.RoundTrip(out)
		if err == nil {
			if p, ok := req.Context().Value(replicaKey{}).(*int); ok {
				*p = i
			}
			return resp, nil
		}
		lastErr = err
		if !errors.Is(err, syscall.ECONNREFUSED) {
			break
		}
	}
	return nil, lastErr
}

func (lb *balancer) healthLoop() {
	c := &http.Client{Timeout: 400 * time.Millisecond}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-lb.stop:
			return
		case <-t.C:
		}
		lb.mu.Lock()
		rs := lb.replicas
		lb.mu.Unlock()
		h := make([]bool, len(rs))
		var wg sync.WaitGroup
		for i, r := range rs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := c.Get(r.admin + "/readyz")
				if err == nil {
					resp.Body.Close()
					h[i] = resp.StatusCode == http.StatusOK
				}
			}()
		}
		wg.Wait()
		lb.mu.Lock()
		lb.healthy = h
		lb.mu.Unlock()
	}
}

func (lb *balancer) close() {
	lb.stopOnce.Do(func() {
		close(lb.stop)
		if lb.srv != nil {
			lb.srv.Close()
		}
		lb.ln.Close()
	})
}

func shortErr(err error) string {
	s := err.Error()
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

// chaosUpstream is the API behind the gateways: JSON for /api/, a byte echo after a
// WebSocket handshake for /ws/. It records every bearer token it receives (how many
// requests carried each), to compare with what the provider issued.
type chaosUpstream struct {
	addr string
	mu   sync.Mutex
	seen map[string]int
	none atomic.Int64 // requests without a bearer
}

func startChaosUpstream() (*chaosUpstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &chaosUpstream{addr: ln.Addr().String(), seen: map[string]int{}}
	srv := &http.Server{Handler: u, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return u, nil
}

func (u *chaosUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		u.mu.Lock()
		u.seen[tok]++
		u.mu.Unlock()
	} else {
		u.none.Add(1)
	}
	if strings.HasPrefix(r.URL.Path, "/ws/") && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"orders":[{"id":"A-1001","status":"shipped"}]}`)
}

func (u *chaosUpstream) bearers() map[string]int {
	u.mu.Lock()
	defer u.mu.Unlock()
	m := make(map[string]int, len(u.seen))
	for k, v := range u.seen {
		m[k] = v
	}
	return m
}

// openWebSocket opens /ws/echo through base with the session cookie and proves the
// tunnel echoes. The connection is returned open.
func openWebSocket(base, cookie string) (net.Conn, int, int, error) {
	u, _ := url.Parse(base)
	c, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
	if err != nil {
		return nil, 0, -1, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /ws/echo HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: %s\r\nX-CSRF: 1\r\nCookie: __Host-gatehouse=%s\r\n\r\n", u.Host, base, cookie)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, 0, -1, err
	}
	replica := -1
	if r, err := strconv.Atoi(resp.Header.Get("X-Chaos-Replica")); err == nil {
		replica = r
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body.Close()
		c.Close()
		return nil, resp.StatusCode, replica, fmt.Errorf("websocket handshake: %d", resp.StatusCode)
	}
	io.WriteString(c, "ping\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "ping\n" {
		c.Close()
		return nil, 101, replica, fmt.Errorf("websocket echo: %q, %v", line, err)
	}
	c.SetDeadline(time.Time{})
	return c, 101, replica, nil
}
