package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// stormResult is one refresh storm: many concurrent calls on a session whose access
// token has just expired.
type stormResult struct {
	store        string
	calls        int
	ok           int // 2xx answers
	refreshCalls int // refresh_token grants the provider answered
	sawNewToken  int // upstream requests that carried the refreshed token
	elapsed      time.Duration
	p50, p99     time.Duration
}

func (s stormResult) passed() bool {
	return s.refreshCalls == 1 && s.ok == s.calls && s.sawNewToken == s.calls
}

// refreshStorms logs in at every gatehouse with 10-second access tokens, waits until
// they have expired, and then fires the storm at each in turn.
func (e *env) refreshStorms() ([]stormResult, error) {
	n := e.o.storm
	step("refresh storm: %d concurrent calls per store on a session whose token just expired", n)
	type target struct {
		g      *gateway
		cookie string
		exp    time.Time
	}
	var targets []target
	for _, s := range stores {
		g := e.gateways[s]
		cookie, tok, err := login(e.idp, g.url, true)
		if err != nil {
			return nil, fmt.Errorf("storm login at %s: %w", s, err)
		}
		targets = append(targets, target{g, cookie, jwtExpiry(tok.AccessToken)})
	}
	var out []stormResult
	for _, t := range targets {
		// Open the connections first, so that the storm measures the refresh and not
		// 1,000 TCP handshakes; then wait for the token to expire.
		client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxIdleConns: n}}
		if err := warmConnections(client, t.g.url+"/bench-warm", n); err != nil {
			return nil, err
		}
		if wait := time.Until(t.exp.Add(200 * time.Millisecond)); wait > 0 {
			time.Sleep(wait)
		}
		if err := e.expect(""); err != nil { // the upstream counts tokens by value
			return nil, err
		}
		before := e.idp.grantCount("refresh_token")
		r := stormResult{store: t.g.store, calls: n}
		durs := make([]time.Duration, n)
		codes := make([]int, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest("GET", t.g.url+"/api/orders", nil)
				req.Header.Set("X-CSRF", "1")
				req.Header.Set("Sec-Fetch-Site", "same-origin")
				req.Header.Set("Cookie", "__Host-gatehouse="+t.cookie)
				<-start
				t0 := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					codes[i] = resp.StatusCode
				}
				durs[i] = time.Since(t0)
			}()
		}
		time.Sleep(100 * time.Millisecond) // every goroutine is at the barrier
		t0 := time.Now()
		close(start)
		wg.Wait()
		r.elapsed = time.Since(t0)
		client.CloseIdleConnections()
		r.refreshCalls = e.idp.grantCount("refresh_token") - before
		for _, c := range codes {
			if c >= 200 && c < 300 {
				r.ok++
			}
		}
		slices.Sort(durs)
		r.p50, r.p99 = durs[n/2], durs[n*99/100]
		st, err := e.upstreamStats()
		if err != nil {
			return nil, err
		}
		r.sawNewToken = int(st.ByValue["Bearer "+e.idp.lastIssued().AccessToken])
		fmt.Fprintf(os.Stderr, "  %-7s %d calls: %d × 2xx, %d provider refresh call(s), upstream saw the new token %d times, all done in %.0f ms (p50 %.0f ms)\n",
			r.store, n, r.ok, r.refreshCalls, r.sawNewToken, ms(r.elapsed), ms(r.p50))
		if !r.passed() {
			return nil, fmt.Errorf("FAILED: refresh storm on the %s store: %d calls, %d 2xx, %d refresh calls (want 1), %d with the new token",
				r.store, n, r.ok, r.refreshCalls, r.sawNewToken)
		}
		out = append(out, r)
	}
	return out, nil
}

// warmConnections opens n keep-alive connections to url (any answer will do).
func warmConnections(c *http.Client, url string, n int) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := c.Get(url)
			if err != nil {
				errs <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	return <-errs
}

// jwtExpiry reads a JWT's exp claim without verifying it (the runner only needs to know
// when the provider says the token ends).
func jwtExpiry(tok string) time.Time {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Now().Add(11 * time.Second)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct {
		Exp int64 `json:"exp"`
	}
	if err != nil || json.Unmarshal(b, &c) != nil || c.Exp == 0 {
		return time.Now().Add(11 * time.Second)
	}
	return time.Unix(c.Exp, 0)
}
