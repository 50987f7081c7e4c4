package devidp

import (
	"bytes"
	"html/template"
	"net/http"
	"strings"
	"time"
)

// devNotice is on every page.
const devNotice = "Development identity provider — not for production"

// pageData is what every page template gets; Data is the page's own part.
type pageData struct {
	Title, Issuer, Base, Notice string
	Insecure                    bool
	Data                        any
}

type loginUser struct{ Name, Display string }

type loginPage struct {
	RequestID, ClientID, Scopes, Problem, ShortTTL string
	Users                                          []loginUser
}

type errorPage struct{ Title, Detail string }

type signedOutPage struct {
	Ended   int
	Problem string
}

type sessionsPage struct {
	Sessions []sessionRow
	Result   *logoutResult
}

type sessionRow struct {
	SID, Subject, AuthTime, Expires, Clients string
	ShortLived, Current                      bool
	authTime                                 time.Time
}

type logoutResult struct {
	SID, Subject string
	Deliveries   []delivery
}

type homePage struct {
	Clients []Client
	Users   []string
}

// home is a small index of the provider.
func (s *Server) home(w http.ResponseWriter, _ *http.Request) error {
	s.render(w, http.StatusOK, "home", "devidp", homePage{Clients: s.cfg.Clients, Users: sortedKeys(s.cfg.Users)})
	return nil
}

// render writes an HTML page. Pages load nothing from elsewhere, and the
// headers keep them from being framed or leaking the URL (which may hold a
// code) in a Referer.
func (s *Server) render(w http.ResponseWriter, status int, name, title string, data any) {
	if pe, ok := data.(*pageError); ok {
		data = errorPage{Title: pe.title, Detail: pe.detail}
	}
	var buf bytes.Buffer
	err := pages.ExecuteTemplate(&buf, name, pageData{
		Title: title, Issuer: s.cfg.Issuer, Base: s.basePath, Notice: devNotice,
		Insecure: s.cfg.InsecureAllowAnyAddress, Data: data,
	})
	if err != nil {
		s.log.Error("devidp: rendering page", "page", name, "err", err)
		http.Error(w, "devidp: internal error rendering the page. "+devNotice, http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

var pages = template.Must(template.New("pages").Funcs(template.FuncMap{"join": strings.Join}).Parse(`
{{define "top"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · devidp</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#f6f6f4;color:#222}
main{max-width:46rem;margin:2rem auto;padding:0 1rem}
.dev{background:#ffe9a8;border-bottom:1px solid #d9b64a;padding:.5rem 1rem;font-weight:600}
.insecure{background:#b00020;color:#fff;padding:.75rem 1rem;font-weight:700}
.problem{background:#fde2e2;border:1px solid #d88;padding:.5rem .75rem}
form.login{display:grid;gap:.75rem;max-width:28rem}
input[name=login]{font-size:1rem;padding:.4rem}
button{font-size:1rem;padding:.4rem .9rem;margin:.15rem .3rem .15rem 0;cursor:pointer}
button.secondary{background:none;border:1px solid #999}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.35rem;text-align:left;vertical-align:top}
code{background:#eee;padding:0 .2rem}
footer{max-width:46rem;margin:2rem auto;padding:0 1rem;color:#666;font-size:.85rem}
</style></head><body>
{{if .Insecure}}<div class="insecure" role="alert">INSECURE: this provider accepts connections from other machines and signs anyone in as any user without a password. Never use it with real data.</div>{{end}}
<div class="dev">{{.Notice}}</div>
<main>
{{end}}

{{define "bottom"}}</main>
<footer>devidp · issuer <code>{{.Issuer}}</code> · <a href="{{.Base}}/">home</a> · <a href="{{.Base}}/sessions">sessions</a> · {{.Notice}}</footer>
</body></html>
{{end}}

{{define "login"}}{{template "top" .}}{{with .Data}}
<h1>Sign in</h1>
<p>Client <code>{{.ClientID}}</code>{{if .Scopes}} asks for <code>{{.Scopes}}</code>{{end}}. There are no passwords: type any user name.</p>
{{if .Problem}}<p class="problem">{{.Problem}}</p>{{end}}
<form class="login" method="post" action="{{$.Base}}/login">
<input type="hidden" name="request" value="{{.RequestID}}">
<label>User name <input name="login" autocomplete="username" autofocus required></label>
<div><button type="submit">Sign in</button></div>
<label><input type="checkbox" name="short_lived" value="on"> Short-lived tokens: access tokens of this login live {{.ShortTTL}}, so refresh can be watched</label>
{{if .Users}}<div>Or sign in as:<br>{{range .Users}}<button type="submit" name="user" value="{{.Name}}" formnovalidate>{{.Name}}{{if .Display}} ({{.Display}}){{end}}</button>{{end}}</div>{{end}}
<div><button type="submit" name="cancel" value="1" formnovalidate class="secondary">Cancel (access_denied)</button></div>
</form>
{{end}}{{template "bottom" .}}{{end}}

{{define "error"}}{{template "top" .}}{{with .Data}}
<h1>{{.Title}}</h1>
<p class="problem">{{.Detail}}</p>
{{end}}{{template "bottom" .}}{{end}}

{{define "signedout"}}{{template "top" .}}{{with .Data}}
<h1>You are signed out</h1>
<p>{{if .Ended}}The provider session has ended.{{else}}There was no provider session to end.{{end}} You can close this window.</p>
{{if .Problem}}<p class="problem">{{.Problem}}</p>{{end}}
{{end}}{{template "bottom" .}}{{end}}

{{define "sessions"}}{{template "top" .}}{{with .Data}}
<h1>Provider sessions</h1>
{{with .Result}}<div class="problem"><p>Ended session <code>{{.SID}}</code> of <b>{{.Subject}}</b>.</p>
{{if .Deliveries}}<ul>{{range .Deliveries}}<li>back-channel logout to <code>{{.ClientID}}</code> at <code>{{.URI}}</code>: {{if .Status}}HTTP {{.Status}}{{else}}failed: {{.Err}}{{end}}</li>{{end}}</ul>
{{else}}<p>No client of that session has a back-channel logout URI.</p>{{end}}</div>{{end}}
{{if .Sessions}}<table><tr><th>user</th><th>sid</th><th>signed in</th><th>expires</th><th>clients</th><th></th></tr>
{{range .Sessions}}<tr><td>{{.Subject}}{{if .Current}} (this browser){{end}}{{if .ShortLived}}<br><small>short-lived tokens</small>{{end}}</td>
<td><code>{{.SID}}</code></td><td>{{.AuthTime}}</td><td>{{.Expires}}</td><td>{{.Clients}}</td>
<td><form method="post" action="{{$.Base}}/sessions/logout"><input type="hidden" name="sid" value="{{.SID}}"><button type="submit">back-channel logout</button></form></td></tr>
{{end}}</table>
{{else}}<p>No active provider sessions.</p>{{end}}
{{end}}{{template "bottom" .}}{{end}}

{{define "home"}}{{template "top" .}}{{with .Data}}
<h1>devidp</h1>
<p>A development-only OpenID Connect provider. Discovery: <a href="{{$.Base}}/.well-known/openid-configuration"><code>{{$.Base}}/.well-known/openid-configuration</code></a>.</p>
<h2>Clients</h2><ul>{{range .Clients}}<li><code>{{.ID}}</code>: redirect URIs <code>{{join .RedirectURIs " "}}</code>{{if .BackchannelLogoutURI}}; back-channel logout <code>{{.BackchannelLogoutURI}}</code>{{end}}</li>{{end}}</ul>
{{if .Users}}<h2>Known users</h2><p>{{join .Users ", "}} (any other name works too)</p>{{end}}
{{end}}{{template "bottom" .}}{{end}}
`))
