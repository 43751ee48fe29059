// Package otelattest reports the reattest middleware's decisions to
// OpenTelemetry. It lives in its own package so that users of package
// middleware do not link OpenTelemetry.
//
//	obs, err := otelattest.Observer(otel.GetTracerProvider(), otel.GetMeterProvider())
//	guard, err := middleware.New(verifier, middleware.WithObserver(obs), ...)
//
// # Metrics
//
// Instrumentation scope [ScopeName]:
//
//   - reattest.server.decisions ([MetricDecisions]), an Int64Counter, unit
//     {decision}: one per decision on a high-impact route.
//   - reattest.server.verify.duration ([MetricVerifyDuration]), a
//     Float64Histogram, unit s: the time to verify a presented attestation
//     and appraise it. Its explicit bucket boundaries ([DurationBuckets])
//     run from 100 µs to 10 s, so that a software check (~0.4 ms), a TPM
//     quote (~2 ms), a remote verifier (~40 ms) and a slow one (~1 s) fall
//     into different buckets.
//   - reattest.server.verifier.failures ([MetricVerifierFailures]), an
//     Int64Counter, unit {failure}: decisions that reached no verdict
//     (outcome unavailable: the verifier or an appraisal hook failed or
//     panicked, verifier_failed; it timed out, verifier_timeout).
//
// # Attributes
//
// Every metric point, span and event carries:
//
//   - http.route (the HTTP semantic convention): the route's path
//     template, when the route is named by a ServeMux pattern
//     ("PUT /v1/config" and "PUT api.example/v1/config" give "/v1/config")
//     or by a router's template ("/v1/config"); absent for a route named
//     otherwise (a middleware.Route Name such as "payments");
//   - reattest.route ([KeyRoute]): the route's name as the middleware
//     reports it (pattern, Name or router template);
//   - reattest.mode ([KeyMode]): connection or operation;
//   - reattest.outcome ([KeyOutcome]): cache_hit, verified, challenged,
//     invalid, denied, unavailable, refused or misconfigured;
//   - reattest.reason ([KeyReason]), when there is one: the wire-safe
//     reason (docs/protocol.md section 7);
//   - error.type (the semantic convention), on failures (outcomes
//     invalid, denied, unavailable, refused, misconfigured): the reason,
//     or the outcome when there is no reason;
//   - reattest.evidence.format ([KeyFormat]), when a verdict was reached:
//     the Evidence format ("software-eat", "tpm");
//   - http.response.status_code (the semantic convention), when the
//     middleware answered itself (not when the handler ran).
//
// Never Evidence, keys, machine ids, posture or internal errors.
//
// # Spans
//
// A verification is a span named reattest.verify (kind internal), a child
// of the request's span, from the start to the end of the verification,
// with the attributes above; its status is Error with the outcome as
// description unless the outcome is verified. Decisions without a
// verification (cache_hit, challenged, refused before verifying) are an
// event named reattest.<outcome> on the request's span.
package otelattest

import (
	"context"
	"errors"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/reattest/reattest/middleware"
)

// ScopeName is the instrumentation scope of the tracer and the meter.
const ScopeName = "github.com/reattest/reattest/middleware"

// Metric names.
const (
	MetricDecisions        = "reattest.server.decisions"
	MetricVerifyDuration   = "reattest.server.verify.duration"
	MetricVerifierFailures = "reattest.server.verifier.failures"
)

// SpanVerify is the name of the span of a verification.
const SpanVerify = "reattest.verify"

// DurationBuckets are the explicit bucket boundaries, in seconds, of
// reattest.server.verify.duration: 100 µs to 10 s, about three per decade.
var DurationBuckets = []float64{
	0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005,
	0.01, 0.025, 0.05,
	0.1, 0.25, 0.5,
	1, 2.5, 5, 10,
}

// Attribute keys of reattest. The HTTP ones are the semantic conventions'
// (semconv.HTTPRouteKey, semconv.HTTPResponseStatusCodeKey,
// semconv.ErrorTypeKey).
const (
	KeyRoute   = attribute.Key("reattest.route")
	KeyMode    = attribute.Key("reattest.mode")
	KeyOutcome = attribute.Key("reattest.outcome")
	KeyReason  = attribute.Key("reattest.reason")
	KeyFormat  = attribute.Key("reattest.evidence.format")
	// KeyStatus is semconv.HTTPResponseStatusCodeKey.
	KeyStatus = semconv.HTTPResponseStatusCodeKey
	// KeyHTTPRoute is semconv.HTTPRouteKey.
	KeyHTTPRoute = semconv.HTTPRouteKey
	// KeyErrorType is semconv.ErrorTypeKey.
	KeyErrorType = semconv.ErrorTypeKey
)

// Observer returns a middleware observer that records to tp and mp. Either
// may be nil (no traces, or no metrics).
func Observer(tp trace.TracerProvider, mp metric.MeterProvider) (func(context.Context, middleware.Decision), error) {
	var tracer trace.Tracer
	if tp != nil {
		tracer = tp.Tracer(ScopeName)
	}
	var decisions, failures metric.Int64Counter
	var verify metric.Float64Histogram
	if mp != nil {
		m := mp.Meter(ScopeName)
		var err error
		decisions, err = m.Int64Counter(MetricDecisions,
			metric.WithDescription("Decisions of the reattest middleware on high-impact routes"),
			metric.WithUnit("{decision}"))
		if err != nil {
			return nil, err
		}
		verify, err = m.Float64Histogram(MetricVerifyDuration,
			metric.WithDescription("Time to verify an attestation and appraise it"),
			metric.WithUnit("s"),
			metric.WithExplicitBucketBoundaries(DurationBuckets...))
		if err != nil {
			return nil, err
		}
		failures, err = m.Int64Counter(MetricVerifierFailures,
			metric.WithDescription("Verifications that reached no verdict: the verifier or an appraisal hook failed, panicked or timed out"),
			metric.WithUnit("{failure}"))
		if err != nil {
			return nil, err
		}
	}
	if tracer == nil && decisions == nil {
		return nil, errors.New("otelattest: neither a tracer provider nor a meter provider")
	}
	return func(ctx context.Context, e middleware.Decision) {
		attrs := attributes(e)
		if decisions != nil {
			set := metric.WithAttributes(attrs...)
			decisions.Add(ctx, 1, set)
			if !e.VerifyStart.IsZero() {
				verify.Record(ctx, e.VerifyDuration.Seconds(), set)
			}
			if e.Outcome == middleware.OutcomeUnavailable {
				failures.Add(ctx, 1, set)
			}
		}
		if tracer == nil {
			return
		}
		if !e.VerifyStart.IsZero() {
			_, span := tracer.Start(ctx, SpanVerify, trace.WithTimestamp(e.VerifyStart),
				trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...))
			if e.Outcome != middleware.OutcomeVerified {
				span.SetStatus(codes.Error, string(e.Outcome))
			}
			span.End(trace.WithTimestamp(e.VerifyStart.Add(e.VerifyDuration)))
			return
		}
		trace.SpanFromContext(ctx).AddEvent("reattest."+string(e.Outcome), trace.WithAttributes(attrs...))
	}, nil
}

// attributes returns the attributes of a decision (see the package
// documentation).
func attributes(e middleware.Decision) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 8)
	if r := httpRoute(e.Route); r != "" {
		attrs = append(attrs, KeyHTTPRoute.String(r))
	}
	attrs = append(attrs, KeyRoute.String(e.Route), KeyMode.String(e.Mode.String()), KeyOutcome.String(string(e.Outcome)))
	if e.Reason != "" {
		attrs = append(attrs, KeyReason.String(string(e.Reason)))
	}
	if failed(e.Outcome) {
		et := string(e.Reason)
		if et == "" {
			et = string(e.Outcome)
		}
		attrs = append(attrs, KeyErrorType.String(et))
	}
	if e.Format != "" {
		attrs = append(attrs, KeyFormat.String(e.Format))
	}
	if e.Status != 0 {
		attrs = append(attrs, KeyStatus.Int(e.Status))
	}
	return attrs
}

// failed reports whether an outcome is a failure (error.type is set).
// A challenge is the normal start of an attestation, not a failure.
func failed(o middleware.Outcome) bool {
	switch o {
	case middleware.OutcomeInvalid, middleware.OutcomeDenied, middleware.OutcomeUnavailable,
		middleware.OutcomeRefused, middleware.OutcomeMisconfigured:
		return true
	}
	return false
}

// httpRoute returns the path template of a route name: the path of a
// ServeMux pattern ("[METHOD ][HOST]/path", a HOST being a name with a dot
// or a colon, or localhost), or "" for a name that is not a pattern.
func httpRoute(name string) string {
	if m, rest, ok := strings.Cut(name, " "); ok && isMethod(m) {
		name = strings.TrimLeft(rest, " ")
	}
	i := strings.IndexByte(name, '/')
	if i < 0 || strings.ContainsAny(name, " \t") {
		return ""
	}
	if host := name[:i]; host != "" && host != "localhost" && !strings.ContainsAny(host, ".:") {
		return ""
	}
	return name[i:]
}

// isMethod reports whether s looks like an HTTP method (upper-case letters).
func isMethod(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}
