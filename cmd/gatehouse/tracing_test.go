package main

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/internal/otlptest"
)

func envOf(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// What turns tracing on and off, and which of the file and the environment wins.
func TestTracingSettings(t *testing.T) {
	on, off := true, false
	ratio := 0.25
	for _, tc := range []struct {
		name         string
		file         fileTracing
		env          map[string]string
		wantOn       bool
		wantEndpoint string
		wantSampler  string
		wantProblem  string // a substring of the only problem; "" for none
		wantWarning  bool
	}{
		{name: "off by default", wantOn: false},
		{name: "an OTLP endpoint variable turns it on", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318"},
			wantOn: true, wantEndpoint: "https://collector:4318/v1/traces", wantSampler: "parentbased_always_on"},
		{name: "the traces endpoint is used as it is and wins over the base",
			env:    map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://b:4318/custom"},
			wantOn: true, wantEndpoint: "https://b:4318/custom"},
		{name: "OTEL_TRACES_EXPORTER=otlp alone: the local default", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"},
			wantOn: true, wantEndpoint: "http://localhost:4318/v1/traces"},
		{name: "the file's endpoint wins over the variables", file: fileTracing{Endpoint: "https://file:4318/"},
			env:    map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://env:4318/v1/traces"},
			wantOn: true, wantEndpoint: "https://file:4318/v1/traces"},
		{name: "enabled: false wins over an endpoint variable", file: fileTracing{Enabled: &off},
			env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318"}, wantOn: false},
		{name: "OTEL_SDK_DISABLED wins over enabled: true", file: fileTracing{Enabled: &on},
			env: map[string]string{"OTEL_SDK_DISABLED": "true"}, wantOn: false},
		{name: "OTEL_TRACES_EXPORTER=none wins over enabled: true", file: fileTracing{Enabled: &on},
			env: map[string]string{"OTEL_TRACES_EXPORTER": "none"}, wantOn: false},
		{name: "sampler from the environment", file: fileTracing{Enabled: &on},
			env:    map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
			wantOn: true, wantSampler: "parentbased_traceidratio:0.1"},
		{name: "sampler_ratio wins over the environment", file: fileTracing{Enabled: &on, SamplerRatio: &ratio},
			env:    map[string]string{"OTEL_TRACES_SAMPLER": "always_off"},
			wantOn: true, wantSampler: "parentbased_traceidratio:0.25"},
		{name: "a bad sampler is an error, not a silent default", file: fileTracing{Enabled: &on},
			env: map[string]string{"OTEL_TRACES_SAMPLER": "sometimes"}, wantOn: true, wantProblem: `OTEL_TRACES_SAMPLER: "sometimes" is not`},
		{name: "a bad sampler ratio", file: fileTracing{Enabled: &on},
			env: map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, wantOn: true, wantProblem: "OTEL_TRACES_SAMPLER_ARG"},
		{name: "gRPC is not linked", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			wantOn: true, wantProblem: "OTEL_EXPORTER_OTLP_PROTOCOL: \"grpc\" is not supported"},
		{name: "an unknown exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, wantProblem: `OTEL_TRACES_EXPORTER: "zipkin" is not supported`},
		{name: "plain http to another host is refused", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
			wantOn: true, wantProblem: "OTEL_EXPORTER_OTLP_ENDPOINT: http to a non-loopback host"},
		{name: "plain http to another host with insecure_allow_http warns", file: fileTracing{Endpoint: "http://collector:4318", InsecureAllowHTTP: true},
			wantOn: true, wantEndpoint: "http://collector:4318/v1/traces", wantWarning: true},
		{name: "plain http to another host with OTEL_EXPORTER_OTLP_INSECURE warns",
			env:    map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_EXPORTER_OTLP_INSECURE": "true"},
			wantOn: true, wantWarning: true},
		{name: "plain http on loopback is fine", file: fileTracing{Endpoint: "http://127.0.0.1:4318"}, wantOn: true, wantEndpoint: "http://127.0.0.1:4318/v1/traces"},
		{name: "credentials in the URL are refused", file: fileTracing{Endpoint: "https://user:pw@collector:4318"}, wantOn: true, wantProblem: "must not hold credentials"},
		{name: "a bad sampler_ratio is reported even when off", file: fileTracing{Enabled: &off, SamplerRatio: ptr(1.5)}, wantProblem: "tracing.sampler_ratio: 1.5 is not between 0 and 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var probs problems
			var warnings []string
			p := tracingFrom(tc.file, envOf(tc.env), func(s string) string { return s }, &probs, &warnings)
			if p.enabled != tc.wantOn {
				t.Errorf("enabled = %v, want %v", p.enabled, tc.wantOn)
			}
			if tc.wantEndpoint != "" && p.endpoint != tc.wantEndpoint {
				t.Errorf("endpoint = %q, want %q", p.endpoint, tc.wantEndpoint)
			}
			if tc.wantSampler != "" && p.samplerName != tc.wantSampler {
				t.Errorf("sampler = %q, want %q", p.samplerName, tc.wantSampler)
			}
			switch {
			case tc.wantProblem == "" && len(probs) > 0:
				t.Errorf("problems %q, want none", probs)
			case tc.wantProblem != "" && (len(probs) != 1 || !strings.Contains(probs[0], tc.wantProblem)):
				t.Errorf("problems %q, want one with %q", probs, tc.wantProblem)
			}
			if got := slices.Contains(warnings, "tracing.insecure_allow_http"); got != tc.wantWarning {
				t.Errorf("warnings %q, want the insecure warning: %v", warnings, tc.wantWarning)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// A tracing: block's problems are listed with the rest of the file's, and the headers
// file is read without its content appearing in a message.
func TestTracingBlockProblems(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "otlp-headers", "Authorization: Bearer otlp-secret-token\nnot a header line with otlp-secret-2\n")
	base := "public_url: http://127.0.0.1:9080\nprovider: {issuer: \"http://127.0.0.1:9000\", client_id: bff, client_secret: s}\n"
	_, err := loadConfig(writeFile(t, dir, "bad.yaml", base+
		"tracing: {endpoint: \"ftp://collector\", sampler_ratio: -1, headers_file: otlp-headers}\n"))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"tracing.endpoint: is not an absolute http(s) URL", "tracing.sampler_ratio: -1 is not between 0 and 1",
		"tracing.headers_file: line 2 of"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %v\nwant %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "otlp-secret") {
		t.Errorf("the error quotes the headers file: %v", err)
	}
	_, err = loadConfig(writeFile(t, dir, "missing.yaml", base+"tracing: {enabled: true, headers_file: nowhere}\n"))
	if err == nil || !strings.Contains(err.Error(), "tracing.headers_file: cannot read") {
		t.Errorf("a missing headers file: %v", err)
	}
}

// startTracing exports over OTLP/HTTP with the file's headers and service name, through
// the batch processor, and stopTracing flushes what is queued.
func TestStartTracingExports(t *testing.T) {
	rc := otlptest.New(t)
	dir := t.TempDir()
	writeFile(t, dir, "h", "# auth for the collector\nAuthorization: Bearer otlp-token\nX-Tenant: gatehouse\n")
	t.Setenv("OTEL_SERVICE_NAME", "from-env")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "600000") // only the flush at stop exports
	var probs problems
	var warnings []string
	p := tracingFrom(fileTracing{Endpoint: rc.URL, ServiceName: "from-file", HeadersFile: "h"}, func(string) string { return "" },
		func(s string) string { return dir + "/" + s }, &probs, &warnings)
	if len(probs) > 0 || !p.enabled {
		t.Fatalf("plan %+v, problems %q", p, probs)
	}
	tp, err := startTracing(context.Background(), p, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	_, span := tp.Tracer("test").Start(context.Background(), "one")
	span.End()
	time.Sleep(50 * time.Millisecond)
	if n := len(rc.Spans()); n != 0 {
		t.Fatalf("%d spans exported before the flush", n)
	}
	stopTracing(tp, slog.New(slog.DiscardHandler))
	spans := rc.Spans()
	if len(spans) != 1 || spans[0].Name != "one" {
		t.Fatalf("received %v", otlptest.Dump(spans))
	}
	res := spans[0].Resource
	if res["service.name"] != "from-file" || res["deployment.environment.name"] != "test" || res["service.version"] == "" {
		t.Errorf("resource %v: want service.name from the file, the environment's attributes and a version", res)
	}
	h := rc.Headers()
	if len(h) != 1 || h[0].Get("Authorization") != "Bearer otlp-token" || h[0].Get("X-Tenant") != "gatehouse" {
		t.Errorf("export headers %v, want those of headers_file", h)
	}
}
