package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	gatehouse "github.com/gatehouse-bff/gatehouse"
)

// fileTracing is the tracing: block. Every key is optional: the standard OTEL_*
// variables fill what the block leaves unset (docs/operations.md, "Tracing").
type fileTracing struct {
	// Enabled turns tracing on or off. Unset: on when an OTLP endpoint is configured
	// (endpoint, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) or
	// OTEL_TRACES_EXPORTER=otlp.
	Enabled *bool `yaml:"enabled"`
	// Endpoint is the collector's OTLP/HTTP base URL; /v1/traces is appended.
	Endpoint string `yaml:"endpoint"`
	// SamplerRatio samples this share of new traces (parentbased_traceidratio).
	SamplerRatio *float64 `yaml:"sampler_ratio"`
	ServiceName  string   `yaml:"service_name"`
	// HeadersFile holds the export request's headers, "Name: value" a line (auth).
	HeadersFile string `yaml:"headers_file"`
	// InsecureAllowHTTP permits a plain http endpoint on a non-loopback host.
	InsecureAllowHTTP bool `yaml:"insecure_allow_http"`
}

// tracingPlan is tracing as the file and the environment configure it, checked; serve
// starts it with startTracing.
type tracingPlan struct {
	enabled     bool
	endpoint    string            // the traces URL
	headers     map[string]string // from headers_file; nil: the exporter reads OTEL_EXPORTER_OTLP_*HEADERS
	sampler     sdktrace.Sampler
	samplerName string
	serviceName string // from the file; "" leaves OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES or "gatehouse"
}

// defaultTracesEndpoint is the OTLP/HTTP default: a collector on this host.
const defaultTracesEndpoint = "http://localhost:4318/v1/traces"

// tracingFrom reads the tracing: block and the OTEL_* variables (getenv). A key of the
// block wins over its variable; OTEL_SDK_DISABLED=true and OTEL_TRACES_EXPORTER=none turn
// tracing off whatever the block says, as the operator's switch. Problems go to probs,
// weaker options to warnings.
func tracingFrom(ft fileTracing, getenv func(string) string, resolve func(string) string, probs *problems, warnings *[]string) tracingPlan {
	var p tracingPlan
	isTrue := func(name string) bool { return strings.EqualFold(strings.TrimSpace(getenv(name)), "true") }

	exporterOTLP, exporterNone := false, false
	if v := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); v != "" {
		for _, e := range strings.Split(v, ",") {
			switch e = strings.TrimSpace(e); e {
			case "otlp":
				exporterOTLP = true
			case "none":
				exporterNone = true
			default:
				probs.add("OTEL_TRACES_EXPORTER", "%q is not supported: Gatehouse exports traces with otlp (or none)", e)
			}
		}
	}
	envEndpoint := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
	switch {
	case isTrue("OTEL_SDK_DISABLED") || exporterNone:
		p.enabled = false
	case ft.Enabled != nil:
		p.enabled = *ft.Enabled
	default:
		p.enabled = ft.Endpoint != "" || envEndpoint || exporterOTLP
	}

	// The block's own values are checked whether or not tracing is on: a mistake in the
	// file is one, and should not wait until someone turns tracing on.
	field, endpoint := "", ""
	switch {
	case ft.Endpoint != "":
		field, endpoint = "tracing.endpoint", withTracesPath(ft.Endpoint)
	case getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "":
		field, endpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	case getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "":
		field, endpoint = "OTEL_EXPORTER_OTLP_ENDPOINT", withTracesPath(getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	default:
		field, endpoint = "tracing.endpoint", defaultTracesEndpoint
	}
	if p.enabled || ft.Endpoint != "" {
		u, err := url.Parse(endpoint)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			probs.add(field, "is not an absolute http(s) URL")
		case u.User != nil || u.RawQuery != "":
			probs.add(field, "must not hold credentials or a query: put auth headers in tracing.headers_file")
		case u.Scheme == "http" && !isLoopback(u.Hostname()):
			allowed := ft.InsecureAllowHTTP || isTrue("OTEL_EXPORTER_OTLP_TRACES_INSECURE") || isTrue("OTEL_EXPORTER_OTLP_INSECURE")
			if !allowed {
				probs.add(field, "http to a non-loopback host sends spans (and any auth header) in clear text: use https, or set tracing.insecure_allow_http (or OTEL_EXPORTER_OTLP_INSECURE=true)")
			} else if p.enabled {
				*warnings = append(*warnings, "tracing.insecure_allow_http")
			}
		}
		p.endpoint = endpoint
	}

	if ft.SamplerRatio != nil {
		r := *ft.SamplerRatio
		if r < 0 || r > 1 {
			probs.add("tracing.sampler_ratio", "%v is not between 0 and 1", r)
		}
		p.sampler = sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r))
		p.samplerName = "parentbased_traceidratio:" + strconv.FormatFloat(r, 'g', -1, 64)
	} else if p.enabled {
		p.sampler, p.samplerName = samplerFromEnv(getenv, probs)
	}

	if ft.HeadersFile != "" {
		p.headers = readHeadersFile(resolve(ft.HeadersFile), probs)
	}
	p.serviceName = strings.TrimSpace(ft.ServiceName)

	if p.enabled {
		for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
			if v := getenv(name); v != "" {
				if v != "http/protobuf" {
					probs.add(name, "%q is not supported: Gatehouse exports OTLP over HTTP with protobuf (http/protobuf) and does not link gRPC", v)
				}
				break
			}
		}
	}
	return p
}

// withTracesPath is an OTLP/HTTP base URL with the traces path appended, as the
// specification says of OTEL_EXPORTER_OTLP_ENDPOINT.
func withTracesPath(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
	return u.String()
}

// samplerFromEnv is OTEL_TRACES_SAMPLER with OTEL_TRACES_SAMPLER_ARG; the SDK would fall
// back silently on a mistake, Gatehouse reports it.
func samplerFromEnv(getenv func(string) string, probs *problems) (sdktrace.Sampler, string) {
	name := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER"))
	if name == "" {
		name = "parentbased_always_on"
	}
	ratio := func() float64 {
		arg := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG"))
		if arg == "" {
			return 1
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			probs.add("OTEL_TRACES_SAMPLER_ARG", "%q is not a ratio between 0 and 1", arg)
			return 1
		}
		return r
	}
	switch name {
	case "always_on":
		return sdktrace.AlwaysSample(), name
	case "always_off":
		return sdktrace.NeverSample(), name
	case "traceidratio":
		r := ratio()
		return sdktrace.TraceIDRatioBased(r), name + ":" + strconv.FormatFloat(r, 'g', -1, 64)
	case "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), name
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), name
	case "parentbased_traceidratio":
		r := ratio()
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), name + ":" + strconv.FormatFloat(r, 'g', -1, 64)
	}
	probs.add("OTEL_TRACES_SAMPLER", "%q is not always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio", name)
	return sdktrace.ParentBased(sdktrace.AlwaysSample()), "parentbased_always_on"
}

// readHeadersFile reads "Name: value" lines (blank lines and # comments skipped). A
// problem names the line, never quotes it: it may hold a credential.
func readHeadersFile(path string, probs *problems) map[string]string {
	b, err := os.ReadFile(path)
	if err != nil {
		probs.add("tracing.headers_file", "cannot read %s: %v", path, errors.Unwrap(err))
		return nil
	}
	h := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || name == "" || strings.ContainsAny(name, " \t") || value == "" {
			probs.add("tracing.headers_file", "line %d of %s is not \"Name: value\"", n, path)
			continue
		}
		h[name] = value
	}
	return h
}

// startTracing makes the tracer provider: the OTLP/HTTP exporter behind a batch span
// processor. Its Shutdown flushes what is queued; serve calls it last.
func startTracing(ctx context.Context, p tracingPlan, log *slog.Logger) (*sdktrace.TracerProvider, error) {
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(p.endpoint)}
	if p.headers != nil {
		opts = append(opts, otlptracehttp.WithHeaders(p.headers))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	detectors := []resource.Option{
		resource.WithAttributes(attribute.String("service.name", "gatehouse"), attribute.String("service.version", gatehouse.Version)),
		resource.WithFromEnv(), // OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME
		resource.WithTelemetrySDK(),
	}
	if p.serviceName != "" {
		detectors = append(detectors, resource.WithAttributes(attribute.String("service.name", p.serviceName)))
	}
	res, err := resource.New(ctx, detectors...)
	if errors.Is(err, resource.ErrPartialResource) {
		log.Warn("tracing: OTEL_RESOURCE_ATTRIBUTES is partly malformed; the rest is used", "error", err)
	} else if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	// Export failures are the SDK's to report: through our log, not the standard logger.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing: export failed", "error", err) }))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res), sdktrace.WithSampler(p.sampler))
	name := p.serviceName
	if name == "" {
		for _, kv := range res.Attributes() {
			if kv.Key == "service.name" {
				name = kv.Value.AsString()
			}
		}
	}
	log.Info("tracing on: OTLP/HTTP", "endpoint", p.endpoint, "sampler", p.samplerName, "service", name)
	return tp, nil
}

// stopTracing flushes the spans still queued and stops the exporter.
func stopTracing(tp *sdktrace.TracerProvider, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tp.Shutdown(ctx); err != nil {
		log.Warn("tracing: flushing the last spans failed", "error", err)
	}
}
