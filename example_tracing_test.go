package gatehouse_test

import (
	"context"
	"log"
	"net/http"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/trace"

	gatehouse "github.com/gatehouse-bff/gatehouse"
)

// A program that embeds the gateway traces it with the OpenTelemetry SDK and exporter of
// its choice; the gatehouse package itself links only the OpenTelemetry API.
func ExampleConfig_tracerProvider() {
	ctx := context.Background()
	exp, err := otlptracehttp.New(ctx) // OTEL_EXPORTER_OTLP_ENDPOINT, …
	if err != nil {
		log.Fatal(err)
	}
	tp := trace.NewTracerProvider(trace.WithBatcher(exp),
		trace.WithSampler(trace.ParentBased(trace.TraceIDRatioBased(0.1))))
	defer tp.Shutdown(ctx) // flushes the last spans

	gw, err := gatehouse.New(gatehouse.Config{
		PublicURL:      "https://app.example.com",
		Provider:       gatehouse.ProviderConfig{Issuer: "https://id.example.com", ClientID: "spa-bff", ClientSecret: "…"},
		Routes:         []gatehouse.Route{{Path: "/api/", Upstream: "http://127.0.0.1:9000"}},
		TracerProvider: tp, // nil, the default: no tracing and nothing wrapped
	})
	if err != nil {
		log.Fatal(err)
	}
	defer gw.Close()
	log.Fatal(http.ListenAndServe(":8080", gw))
}
