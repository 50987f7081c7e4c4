package gatehouse_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

// A Go backend embeds Gatehouse: the gateway serves /bff/ and the SPA, and the
// backend's own handlers get the user's session and a fresh access token.
func Example() {
	provider := idptest.New(&testingT{}) // stands in for your provider
	gw, err := gatehouse.New(gatehouse.Config{
		PublicURL: "http://127.0.0.1:9080",
		Provider: gatehouse.ProviderConfig{
			Issuer:       provider.Issuer,
			ClientID:     provider.ClientID,
			ClientSecret: provider.ClientSecret,
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer gw.Close()

	mux := http.NewServeMux()
	mux.Handle("/", gw) // /bff/login, /bff/callback, /bff/user, /bff/logout, …
	mux.Handle("/internal/report", gw.RequireSession(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := gatehouse.SessionFrom(r.Context())
		token, err := s.AccessToken(r.Context()) // refreshed first if about to expire
		if err != nil {
			http.Error(w, "session ended", http.StatusUnauthorized)
			return
		}
		_ = token // call your APIs with it; never send it to the browser
		fmt.Fprintf(w, "report for %s\n", s.Subject())
	})))

	// Without a session, an API call gets 401 JSON.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/internal/report", nil)
	req.Header.Set("Accept", "application/json")
	mux.ServeHTTP(rec, req)
	fmt.Println(rec.Code, rec.Body.String())
	// Output:
	// 401 {"error":"unauthenticated","login_url":"/bff/login","reason":"no_session"}
}

// testingT lets the example start the fake provider outside a test.
type testingT struct{}

func (*testingT) Helper()           {}
func (*testingT) Fatal(args ...any) { panic(fmt.Sprint(args...)) }
func (*testingT) Cleanup(func())    {}
