package gatehouse

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-bff/gatehouse/session"
)

// Step-up authentication (RFC 9470): an API that needs a stronger or more recent login
// than the session's answers 401 with WWW-Authenticate: Bearer
// error="insufficient_user_authentication" and acr_values and/or max_age; a route's
// require rules can ask the same. Gatehouse answers the SPA 401 step_up_required with a
// login_url that asks the provider for that login, and the callback refuses a login
// that does not deliver it.

// stepUp is what a login must deliver: an "acr" among ACR (when not empty), and an
// authentication no older than MaxAge (when HasMaxAge).
type stepUp struct {
	ACR       []string
	MaxAge    time.Duration
	HasMaxAge bool
}

func (su stepUp) empty() bool { return len(su.ACR) == 0 && !su.HasMaxAge }

// Bounds on what a step-up request may carry: it becomes part of the authorization
// request and of the flow record.
const (
	maxACRValues    = 10
	maxACRValuesLen = 256
	maxStepUpAge    = 366 * 24 * time.Hour
)

// parseStepUp reads acr_values (space-separated) and max_age (seconds), as a login
// request or an upstream's challenge carries them. ok is false for values that are not
// well-formed; absent values leave su empty.
func parseStepUp(acrValues, maxAge string, hasMaxAge bool) (su stepUp, ok bool) {
	if acrValues != "" {
		if len(acrValues) > maxACRValuesLen {
			return su, false
		}
		for _, v := range strings.Split(acrValues, " ") {
			if v == "" {
				continue
			}
			if strings.ContainsFunc(v, func(r rune) bool { return r <= 0x20 || r >= 0x7f || r == '"' || r == '\\' }) {
				return su, false
			}
			if !slices.Contains(su.ACR, v) {
				su.ACR = append(su.ACR, v)
			}
		}
		if len(su.ACR) > maxACRValues {
			return stepUp{}, false
		}
	}
	if hasMaxAge {
		n, err := strconv.ParseUint(maxAge, 10, 32)
		if err != nil || time.Duration(n)*time.Second > maxStepUpAge {
			return stepUp{}, false
		}
		su.MaxAge, su.HasMaxAge = time.Duration(n)*time.Second, true
	}
	return su, true
}

// challenge is su as an RFC 9470 WWW-Authenticate value. Its values passed
// parseStepUp, so they need no escaping.
func (su stepUp) challenge() string {
	c := `Bearer error="insufficient_user_authentication"`
	if len(su.ACR) > 0 {
		c += `, acr_values="` + strings.Join(su.ACR, " ") + `"`
	}
	if su.HasMaxAge {
		c += ", max_age=" + strconv.FormatInt(int64(su.MaxAge/time.Second), 10)
	}
	return c
}

// params is su as authorization request parameters.
func (su stepUp) params(out url.Values) {
	if len(su.ACR) > 0 {
		out.Set("acr_values", strings.Join(su.ACR, " "))
	}
	if su.HasMaxAge {
		out.Set("max_age", strconv.FormatInt(int64(su.MaxAge/time.Second), 10))
	}
}

// unmet says what of su the claims do not deliver ("acr" or "max_age"), or "" when they
// deliver it all. The authentication (auth_time) must be no more than MaxAge before at;
// skew tolerates a provider clock behind ours.
func (su stepUp) unmet(claims map[string]any, at time.Time, skew time.Duration) string {
	if len(su.ACR) > 0 {
		acr, _ := claims["acr"].(string)
		if !slices.Contains(su.ACR, acr) {
			return "acr"
		}
	}
	if su.HasMaxAge {
		// auth_time is in whole seconds: so is the comparison.
		authAt, ok := authTime(claims)
		if !ok || at.Truncate(time.Second).Sub(authAt) > su.MaxAge+skew {
			return "max_age"
		}
	}
	return ""
}

// authTime reads the auth_time claim (seconds since the epoch).
func authTime(claims map[string]any) (time.Time, bool) {
	switch v := claims["auth_time"].(type) {
	case float64:
		return time.Unix(int64(v), 0), v > 0
	case json.Number:
		n, err := v.Int64()
		return time.Unix(n, 0), err == nil && n > 0
	}
	return time.Time{}, false
}

func authTimeUnix(claims map[string]any) int64 {
	if t, ok := authTime(claims); ok {
		return t.Unix()
	}
	return 0
}

// stepUpLoginURL is the /bff/login address that asks for su and comes back to
// returnURL (a local path, or "" for the default).
func stepUpLoginURL(su stepUp, returnURL string) string {
	q := url.Values{}
	su.params(q)
	if returnURL != "" {
		q.Set("returnUrl", returnURL)
	}
	return "/bff/login?" + q.Encode()
}

// errStepUpRequired is the SPA's answer when an action needs a stronger login.
func errStepUpRequired(su stepUp, r *http.Request, s *session.Session) *httpError {
	return &httpError{status: http.StatusUnauthorized, code: "step_up_required", reason: "insufficient_user_authentication",
		title: "A stronger sign-in is needed", message: "This action needs you to sign in again.",
		stepUp: &su, stepUpReturn: refererPath(r), sess: s, level: slog.LevelInfo}
}

// refererPath is the path of the page that made r, when it is a page of this origin:
// where a step-up login should come back to. Anything else gives "".
func refererPath(r *http.Request) string {
	ref, err := url.Parse(r.Header.Get("Referer"))
	if err != nil || ref.Host != r.Host || ref.Path == "" {
		return ""
	}
	p := ref.RequestURI()
	if local := localPath(p); local == p {
		return p
	}
	return ""
}

// stepUpBody renders a step-up error's JSON fields.
func (he *httpError) stepUpFields(body map[string]any) {
	su := he.stepUp
	if len(su.ACR) > 0 {
		body["acr_values"] = strings.Join(su.ACR, " ")
	}
	if su.HasMaxAge {
		body["max_age"] = int64(su.MaxAge / time.Second)
	}
	body["login_url"] = stepUpLoginURL(*su, he.stepUpReturn)
}

// stepUpChallenge turns an upstream's RFC 9470 challenge into the SPA's step-up answer
// (upstream.Config.OnUnauthorized). Any other 401 goes on as the upstream sent it.
func (g *Gateway) stepUpChallenge(in *http.Request, resp *http.Response) {
	params, ok := bearerChallenge(resp.Header.Values("WWW-Authenticate"))
	if !ok || params["error"] != "insufficient_user_authentication" {
		return
	}
	_, hasMaxAge := params["max_age"]
	su, ok := parseStepUp(params["acr_values"], params["max_age"], hasMaxAge)
	if !ok {
		g.log.Warn("an upstream's step-up challenge is malformed; passed on as it is", "path", in.URL.Path)
		return
	}
	he := errStepUpRequired(su, in, nil)
	body := map[string]any{"error": he.code, "reason": he.reason}
	if id := requestID(in); id != "" {
		body["request_id"] = id
	}
	he.stepUpFields(body)
	var buf bytes.Buffer
	json.NewEncoder(&buf).Encode(body)
	resp.Body.Close()
	resp.Body = io.NopCloser(&buf)
	resp.ContentLength = int64(buf.Len())
	h := resp.Header
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Del("Content-Encoding")
	h.Del("Transfer-Encoding")
	// The challenge stays (a 401 has one), rebuilt from what was read: the upstream's
	// error_description and anything else it wrote there do not reach the browser.
	h.Set("WWW-Authenticate", su.challenge())
	g.audit(in, evStepUpRequired, nil, slog.String("source", "upstream"))
}

// routeStepUp checks a route's acr and max_age rules against the session, and returns
// what a login must deliver when they do not hold (nil when they hold).
func (g *Gateway) routeStepUp(rules []Rule, s *session.Session) *stepUp {
	var need stepUp
	for _, rule := range rules {
		if len(rule.ACR) > 0 {
			need.ACR = append(need.ACR, rule.ACR...)
		}
		if rule.MaxAge > 0 && (!need.HasMaxAge || rule.MaxAge < need.MaxAge) {
			need.MaxAge, need.HasMaxAge = rule.MaxAge, true
		}
	}
	if need.empty() || s != nil && need.unmet(s.Claims, g.now(), g.config().Provider.ClockSkew) == "" {
		return nil
	}
	return &need
}

// bearerChallenge finds the Bearer challenge among WWW-Authenticate header values
// (RFC 9110 §11.6.1: challenges separated by commas, each a scheme followed by
// comma-separated auth-params, name=token or name="quoted string") and returns its
// parameters, names in lower case.
func bearerChallenge(values []string) (map[string]string, bool) {
	for _, v := range values {
		for _, c := range challenges(v) {
			if strings.EqualFold(c.scheme, "Bearer") {
				return c.params, true
			}
		}
	}
	return nil, false
}

type challenge struct {
	scheme string
	params map[string]string
}

// challenges parses one WWW-Authenticate value. It is lenient where senders are
// (spaces around '='), and stops at the first thing it cannot read.
func challenges(s string) []challenge {
	var out []challenge
	i := 0
	skip := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == ',') {
			i++
		}
	}
	token := func() string {
		start := i
		for i < len(s) && isTokenChar(s[i]) {
			i++
		}
		return s[start:i]
	}
	for {
		skip()
		scheme := token()
		if scheme == "" {
			return out
		}
		c := challenge{scheme: scheme, params: map[string]string{}}
		for {
			save := i
			skip()
			name := token()
			j := i
			for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
				j++
			}
			if name == "" || j >= len(s) || s[j] != '=' {
				i = save // the next challenge's scheme, or the end
				break
			}
			i = j + 1
			for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
				i++
			}
			var val string
			if i < len(s) && s[i] == '"' {
				var b strings.Builder
				i++
				for i < len(s) && s[i] != '"' {
					if s[i] == '\\' && i+1 < len(s) {
						i++
					}
					b.WriteByte(s[i])
					i++
				}
				if i >= len(s) {
					return append(out, c) // unterminated: keep what was read before it
				}
				i++
				val = b.String()
			} else {
				val = token()
			}
			c.params[strings.ToLower(name)] = val
		}
		out = append(out, c)
		if i >= len(s) {
			return out
		}
	}
}

// isTokenChar: RFC 9110 tchar, plus '/' (token68 characters that some senders use).
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~/", c) >= 0
}
