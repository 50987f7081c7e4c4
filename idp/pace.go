package idp

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// maxRetryAfter caps the wait a provider may ask for with Retry-After: a wrong or
// hostile header cannot make the gateway stop asking for longer than this.
const maxRetryAfter = 5 * time.Minute

// pacer remembers, per provider endpoint, until when the provider asked not to be asked
// again (Retry-After on a 408, 429 or 503, or with temporarily_unavailable or
// slow_down). Until then the Client answers for it, without a request, with an error
// wrapping ErrUnavailable that RetryAfter reads. The endpoints are the few URLs of the
// provider's metadata, so the map stays small.
type pacer struct {
	mu        sync.Mutex
	notBefore map[string]time.Time
}

func endpointKey(u *url.URL) string { return u.Scheme + "://" + u.Host + u.Path }

// wait returns how long u must still be left alone.
func (p *pacer) wait(u *url.URL, now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := endpointKey(u)
	nb, ok := p.notBefore[k]
	if !ok {
		return 0
	}
	if !now.Before(nb) {
		delete(p.notBefore, k)
		return 0
	}
	return nb.Sub(now)
}

// answered records a busy answer's Retry-After, if it has one.
func (p *pacer) answered(resp *http.Response, busy bool, now time.Time) {
	if !busy || resp.Request == nil || resp.Request.URL == nil {
		return
	}
	d := retryAfter(resp.Header, now)
	if d <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.notBefore == nil {
		p.notBefore = map[string]time.Time{}
	}
	k := endpointKey(resp.Request.URL)
	if until := now.Add(d); until.After(p.notBefore[k]) {
		p.notBefore[k] = until
	}
}

// retryAfter reads a Retry-After header (RFC 9110 §10.2.3: delta-seconds or an
// HTTP-date), capped at maxRetryAfter; 0 when absent, unreadable or past.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// waitError: the provider asked to be left alone for a while, and that is not over, so
// it was not asked.
type waitError struct{ wait time.Duration }

func (e *waitError) Error() string {
	return fmt.Sprintf("idp: the provider asked to wait; %s left before asking again", e.wait.Round(time.Second))
}

func (e *waitError) Unwrap() error { return ErrUnavailable }

// pacedTransport is the Client's transport: it refuses requests the provider asked to
// wait for, and records busy answers' Retry-After.
type pacedTransport struct {
	base http.RoundTripper
	c    *Client
}

func (t *pacedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if w := t.c.pace.wait(req.URL, t.c.now()); w > 0 {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, &waitError{wait: w}
	}
	resp, err := t.base.RoundTrip(req)
	if err == nil {
		switch resp.StatusCode {
		case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusServiceUnavailable:
			t.c.pace.answered(resp, true, t.c.now())
		}
	}
	return resp, err
}

// pacedClient returns a copy of hc whose transport is paced by c.
func (c *Client) pacedClient(hc *http.Client) *http.Client {
	cp := *hc
	base := cp.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	cp.Transport = &pacedTransport{base: &dpopTransport{base: base, c: c}, c: c}
	return &cp
}
