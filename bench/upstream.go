package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// upstreamBody is the API's answer: a small JSON document, as an SPA's API call gets.
var upstreamBody = []byte(`{"orders":[{"id":"A-1001","status":"shipped","total":42.5},{"id":"A-1002","status":"open","total":17}],"next":null}`)

var (
	okHead = []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(upstreamBody)) + "\r\n\r\n")
	refusedResponse = []byte("HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 24\r\n\r\n" +
		`{"error":"unauthorized"}`)
	badRequest = []byte("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
)

// benchUpstream is the API behind the proxies. It is a deliberately small HTTP/1.1
// server (keep-alive, requests without bodies or with Content-Length ones), so that it
// costs a few microseconds per request and the proxy under test, not the load side, is
// what limits throughput. It checks the bearer token of every request against the one
// the runner expects (a byte compare, the same cost for every variant) and counts the
// answers; the runner reads the counts on a separate control listener to prove that
// every request wrk counted reached the upstream authorised.
type benchUpstream struct {
	expect     atomic.Pointer[[]byte] // "Bearer <token>"; nil: counting mode
	run        atomic.Pointer[[]byte] // X-Bench-Run of the requests to count; nil: all
	authorised atomic.Int64
	refused    atomic.Int64
	stale      atomic.Int64 // requests of an earlier run (a warm-up's stragglers)

	mu      sync.Mutex
	byValue map[string]int64 // Authorization values that did not match, bounded
	sampled atomic.Bool      // the first request after a reset was sampled
	sample  string           // its head, as received
}

// upstreamStats is what GET /__bench/stats answers.
type upstreamStats struct {
	Authorised int64            `json:"authorised"`
	Refused    int64            `json:"refused"`
	Stale      int64            `json:"stale"`
	ByValue    map[string]int64 `json:"by_value"`
	Sample     string           `json:"sample"` // the first request's head after the reset
}

const maxValues = 64

// serveConn answers the requests of one connection until it closes.
func (u *benchUpstream) serveConn(c net.Conn) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 16<<10)
	bw := bufio.NewWriterSize(c, 4<<10)
	var auth []byte
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		sampling := !u.sampled.Load() && u.sampled.CompareAndSwap(false, true)
		var head []byte
		if sampling {
			head = append(head, line...)
		}
		closing := bytes.HasSuffix(bytes.TrimRight(line, "\r\n"), []byte("HTTP/1.0"))
		nAuth, length := 0, int64(0)
		var runID []byte
		for {
			line, err = br.ReadSlice('\n')
			if err != nil {
				if err == bufio.ErrBufferFull {
					c.Write(badRequest)
				}
				return
			}
			if sampling {
				head = append(head, line...)
			}
			line = bytes.TrimRight(line, "\r\n")
			if len(line) == 0 {
				break
			}
			name, value, ok := bytes.Cut(line, []byte(":"))
			if !ok {
				c.Write(badRequest)
				return
			}
			value = bytes.TrimSpace(value)
			switch {
			case len(name) == 13 && strings.EqualFold(string(name), "Authorization"):
				nAuth++
				auth = append(auth[:0], value...)
			case len(name) == 11 && strings.EqualFold(string(name), "X-Bench-Run"):
				runID = append(runID[:0], value...)
			case len(name) == 10 && strings.EqualFold(string(name), "Connection"):
				if bytes.Contains(bytes.ToLower(value), []byte("close")) {
					closing = true
				} else if bytes.Contains(bytes.ToLower(value), []byte("keep-alive")) {
					closing = false
				}
			case len(name) == 14 && strings.EqualFold(string(name), "Content-Length"):
				if length, err = strconv.ParseInt(string(value), 10, 64); err != nil || length < 0 {
					c.Write(badRequest)
					return
				}
			case len(name) == 17 && strings.EqualFold(string(name), "Transfer-Encoding"):
				c.Write(badRequest) // no client of the benchmark sends a chunked body
				return
			}
		}
		if sampling {
			u.mu.Lock()
			u.sample = string(head)
			u.mu.Unlock()
		}
		if length > 0 {
			if _, err := io.CopyN(io.Discard, br, length); err != nil {
				return
			}
		}
		want := u.expect.Load()
		if run := u.run.Load(); run != nil && !bytes.Equal(runID, *run) {
			// A request of an earlier wrk run, still in flight when the counters were
			// reset: answered, not counted.
			u.stale.Add(1)
			bw.Write(okHead)
			bw.Write(upstreamBody)
			if bw.Flush() != nil || closing {
				return
			}
			continue
		}
		switch {
		case nAuth == 1 && want != nil && bytes.Equal(auth, *want):
			u.authorised.Add(1)
			bw.Write(okHead)
			bw.Write(upstreamBody)
		default:
			u.refused.Add(1)
			v := string(auth)
			if nAuth != 1 {
				v = fmt.Sprintf("(%d Authorization headers)", nAuth)
			}
			u.mu.Lock()
			if _, ok := u.byValue[v]; ok || len(u.byValue) < maxValues {
				u.byValue[v]++
			}
			u.mu.Unlock()
			if want == nil && nAuth == 1 && bytes.HasPrefix(auth, []byte("Bearer ")) {
				// Counting mode (refresh storm): any bearer token is answered, the
				// runner compares the values afterwards.
				bw.Write(okHead)
				bw.Write(upstreamBody)
			} else {
				bw.Write(refusedResponse)
			}
		}
		if br.Buffered() == 0 || closing {
			if bw.Flush() != nil {
				return
			}
		}
		if closing {
			return
		}
	}
}

// control: POST /__bench/expect (body: the token; empty for counting mode) resets the
// counters; GET /__bench/stats reads them.
func (u *benchUpstream) control(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/__bench/expect" && r.Method == http.MethodPost:
		b, _ := io.ReadAll(r.Body)
		if run := r.URL.Query().Get("run"); run != "" {
			v := []byte(run)
			u.run.Store(&v)
		} else {
			u.run.Store(nil)
		}
		if tok := strings.TrimSpace(string(b)); tok != "" {
			v := []byte("Bearer " + tok)
			u.expect.Store(&v)
		} else {
			u.expect.Store(nil)
		}
		u.mu.Lock()
		u.authorised.Store(0)
		u.refused.Store(0)
		u.stale.Store(0)
		u.byValue = map[string]int64{}
		u.sample = ""
		u.sampled.Store(false)
		u.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case r.URL.Path == "/__bench/stats" && r.Method == http.MethodGet:
		u.mu.Lock()
		s := upstreamStats{Authorised: u.authorised.Load(), Refused: u.refused.Load(), Stale: u.stale.Load(), ByValue: map[string]int64{}, Sample: u.sample}
		for k, v := range u.byValue {
			s.ByValue[k] = v
		}
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s)
	default:
		http.NotFound(w, r)
	}
}

// upstreamMain runs the upstream until killed. It prints "READY <api addr> <control
// addr>" when listening.
func upstreamMain(args []string) error {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "API listen address (loopback)")
	ctl := fs.String("control", "127.0.0.1:0", "control listen address (loopback)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := errorsJoin(requireLoopback(*listen), requireLoopback(*ctl)); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	cln, err := net.Listen("tcp", *ctl)
	if err != nil {
		return err
	}
	u := &benchUpstream{byValue: map[string]int64{}}
	go http.Serve(cln, http.HandlerFunc(u.control))
	fmt.Fprintf(os.Stdout, "READY %s %s\n", ln.Addr(), cln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go u.serveConn(c)
	}
}

// requireLoopback refuses to listen anywhere but on loopback.
func requireLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s: the benchmark listens on loopback addresses only", addr)
	}
	return nil
}
