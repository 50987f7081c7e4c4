package main

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// outcome is one answer (or the lack of one) the chaos run's simulated users got from
// the gateways, through the balancer.
type outcome struct {
	At         time.Time     // when the request started
	Dur        time.Duration // until the answer's headers (or the error)
	Op         string        // api, burst, user, ws, logout, login, callback, admin
	Status     int           // 0: no answer (timeout, connection error)
	Err        string        // the transport error when Status is 0
	JSON       bool          // Content-Type application/json
	Code       string        // the JSON body's "error"
	Reason     string        // the JSON body's "reason"
	RetryAfter bool          // a Retry-After header
	Balancer   bool          // answered by the balancer (no replica could), not a gateway
	Nav        bool          // a browser navigation (error pages are HTML there)
	Ended      bool          // the session had been ended on purpose before the request
	Replica    int           // which replica answered, -1 when none
}

// window is a stretch of the run during which a fault was injected.
type window struct {
	Name  string
	Kind  []string // redis, provider, provider429, replica, upstream
	Start time.Time
	End   time.Time
}

func (w window) has(kind string) bool { return slices.Contains(w.Kind, kind) }

// covers reports whether the fault of w may have met the request of o: the request was
// under way at some moment from the window's start to grace after its end. A request
// sent just before a fault began is met by it as much as one sent just after (a
// callback started 50 ms before Redis was blackholed waits for its save, and fails).
func (w window) covers(o outcome, grace time.Duration) bool {
	return !o.At.Add(o.Dur).Before(w.Start) && !o.At.After(w.End.Add(grace))
}

// Classes of outcome.
const (
	classOK          = "ok"          // 2xx (3xx for navigations)
	classEnded       = "ended"       // 401 for a session ended on purpose: wanted
	classExplained   = "explained"   // inside a fault window (or its grace), a documented answer
	classBad         = "bad"         // inside a fault window, an answer no fault excuses
	classUnexplained = "unexplained" // outside every fault window, not a success
)

// classify sorts an outcome. Inside a window (from its start to grace after its end) a
// fault may explain: a JSON 502/503/504 with error bad_gateway, unavailable or
// gateway_timeout (an HTML page for navigations), with Retry-After on a 503 while the
// provider answers 429; the balancer's own 502 while a replica is down or stopped. Never
// a 500, never no answer at all, never a 401 for a session that was not ended (a logout,
// which sends the user round a login loop).
func classify(o outcome, windows []window, grace time.Duration) (class, why string) {
	switch {
	case o.Status >= 200 && o.Status < 300, o.Nav && o.Status >= 300 && o.Status < 400:
		return classOK, ""
	case o.Status == 401 && o.Ended:
		return classEnded, ""
	}
	why = describe(o)
	var active []window
	for _, w := range windows {
		if w.covers(o, grace) {
			active = append(active, w)
		}
	}
	if len(active) == 0 {
		return classUnexplained, why
	}
	any := func(kind string) bool {
		return slices.ContainsFunc(active, func(w window) bool { return w.has(kind) })
	}
	if o.Balancer {
		if any("replica") {
			return classExplained, why
		}
		return classBad, why + " (balancer: no replica answered, and no replica was down)"
	}
	switch o.Status {
	case 502, 503, 504:
	case 0:
		if o.Op == "ws-echo" && (any("upstream") || any("replica")) {
			// A WebSocket whose tunnel the upstream or a dying replica cut right after
			// the handshake: the user sees it close, and opens another.
			return classExplained, why
		}
		return classBad, why + " (no answer)"
	case 401:
		return classBad, why + " (a live session was refused: a logout)"
	default:
		return classBad, why
	}
	if !o.Nav {
		if !o.JSON {
			return classBad, why + " (not JSON)"
		}
		if !slices.Contains([]string{"bad_gateway", "unavailable", "gateway_timeout"}, o.Code) {
			return classBad, why + " (undocumented error code)"
		}
		if o.Status == 503 && o.Reason == "provider_unavailable" && any("provider429") && !o.RetryAfter {
			return classBad, why + " (no Retry-After while the provider asked to wait)"
		}
		switch o.Reason {
		case "provider_unavailable":
			if !any("provider") {
				return classBad, why + " (the provider was not faulted)"
			}
		case "store_unavailable":
			// Redis failing, or a wait for a session's refresh lease that ran out: the lease
			// is held by a replica waiting on a slow provider, or stopped. A lease wait is
			// no Redis fault and is listed apart.
			switch {
			case any("redis"):
			case any("provider"), any("replica"):
				return classExplained, why + " (lease wait)"
			default:
				return classBad, why + " (neither Redis nor a lease holder was faulted)"
			}
		}
	}
	return classExplained, why
}

func describe(o outcome) string {
	if o.Status == 0 {
		return fmt.Sprintf("%s: %s", o.Op, o.Err)
	}
	s := fmt.Sprintf("%s: %d", o.Op, o.Status)
	if o.Code != "" {
		s += " " + o.Code
		if o.Reason != "" {
			s += "/" + o.Reason
		}
	}
	if o.Balancer {
		s += " (balancer)"
	}
	return s
}

// tally counts classified outcomes by class and, for errors, by description and window.
type tally struct {
	byClass map[string]int
	// errors[class][description] counts.
	errors map[string]map[string]int
	// inWindow[window name][description] counts the explained and bad errors.
	inWindow map[string]map[string]int
}

func newTally() *tally {
	return &tally{byClass: map[string]int{}, errors: map[string]map[string]int{}, inWindow: map[string]map[string]int{}}
}

func (t *tally) add(o outcome, windows []window, grace time.Duration) string {
	class, why := classify(o, windows, grace)
	t.byClass[class]++
	if why == "" {
		return class
	}
	if t.errors[class] == nil {
		t.errors[class] = map[string]int{}
	}
	t.errors[class][why]++
	for _, w := range windows {
		if w.covers(o, grace) {
			if t.inWindow[w.Name] == nil {
				t.inWindow[w.Name] = map[string]int{}
			}
			t.inWindow[w.Name][why]++
		}
	}
	return class
}

// top lists counts as "n× what", most frequent first.
func top(m map[string]int, n int) string {
	type kv struct {
		k string
		v int
	}
	var l []kv
	for k, v := range m {
		l = append(l, kv{k, v})
	}
	sort.Slice(l, func(i, j int) bool { return l[i].v > l[j].v || l[i].v == l[j].v && l[i].k < l[j].k })
	var parts []string
	for i, e := range l {
		if i == n {
			parts = append(parts, fmt.Sprintf("… %d more kinds", len(l)-n))
			break
		}
		parts = append(parts, fmt.Sprintf("%d× %s", e.v, e.k))
	}
	return strings.Join(parts, "; ")
}

// percentile of sorted durations (p in 0..100).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}

// refreshUse is one refresh grant the provider saw (from /__test/stats refresh_uses).
type refreshUse struct {
	RT     string `json:"rt"` // a hash of the refresh token presented
	Grant  string `json:"grant"`
	Sub    string `json:"sub"`
	Status int    `json:"status"`
	At     int64  `json:"at"` // Unix milliseconds
}

// refreshCheck finds refresh tokens presented more than once and grants refreshed twice
// within minGap (two successful refreshes of one session for one expiry).
func refreshCheck(uses []refreshUse, minGap time.Duration) (reused, doubles int, detail []string) {
	seen := map[string]int{}
	for _, u := range uses {
		seen[u.RT]++
	}
	for rt, n := range seen {
		if n > 1 {
			reused++
			detail = append(detail, fmt.Sprintf("refresh token %s… presented %d times", rt[:8], n))
		}
	}
	last := map[string]int64{}
	ok := slices.Clone(uses)
	sort.Slice(ok, func(i, j int) bool { return ok[i].At < ok[j].At })
	for _, u := range ok {
		if u.Status != 200 || u.Grant == "" {
			continue
		}
		if prev, found := last[u.Grant]; found && time.Duration(u.At-prev)*time.Millisecond < minGap {
			doubles++
			detail = append(detail, fmt.Sprintf("grant of %s refreshed twice %d ms apart", u.Sub, u.At-prev))
		}
		last[u.Grant] = u.At
	}
	sort.Strings(detail)
	return reused, doubles, detail
}
