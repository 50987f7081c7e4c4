package gatehouse_test

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

// A program serving the gateway itself bounds what one client can hold: the gateway
// sets its request bodies' read deadlines, LimitListener caps connections per client
// network, and the http.Server bounds headers and idle connections.
func ExampleGateway_LimitListener() {
	provider := idptest.New(&testingT{}) // stands in for your provider
	gw, err := gatehouse.New(gatehouse.Config{
		PublicURL: "http://127.0.0.1:9080",
		Provider:  gatehouse.ProviderConfig{Issuer: provider.Issuer, ClientID: provider.ClientID, ClientSecret: provider.ClientSecret},
		Server:    gatehouse.ServerConfig{BodyTimeout: 10 * time.Second, MaxConnectionsPerClient: 256},
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer gw.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10}
	go srv.Serve(gw.LimitListener(ln)) // TLS, if any, goes on top: tls.NewListener(gw.LimitListener(ln), cfg)
	defer srv.Close()

	res, err := http.Get("http://" + ln.Addr().String() + "/bff/user")
	if err != nil {
		fmt.Println(err)
		return
	}
	res.Body.Close()
	fmt.Println(res.StatusCode)
	// Output: 401
}
