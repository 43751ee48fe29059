// Package otelattest reports the reattest middleware's decisions to
// OpenTelemetry: a counter of decisions per route and outcome, a histogram
// of verification times, and a span per verification (a child of the
// request's span). It lives in its own package so that users of package
// middleware do not link OpenTelemetry.
//
//	obs, err := otelattest.Observer(otel.GetTracerProvider(), otel.GetMeterProvider())
//	guard, err := middleware.New(verifier, middleware.WithObserver(obs), ...)
//
// Attributes name the route, mode, outcome, reason and Evidence format;
// never Evidence, keys or internal errors.
package otelattest

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/reattest/reattest/middleware"
)

// ScopeName is the instrumentation scope of the tracer and the meter.
const ScopeName = "github.com/reattest/reattest/middleware"

// Metric names.
const (
	MetricDecisions      = "reattest.server.decisions"
	MetricVerifyDuration = "reattest.server.verify.duration"
)

// Attribute keys.
const (
	KeyRoute   = attribute.Key("reattest.route")
	KeyMode    = attribute.Key("reattest.mode")
	KeyOutcome = attribute.Key("reattest.outcome")
	KeyReason  = attribute.Key("reattest.reason")
	KeyFormat  = attribute.Key("reattest.evidence.format")
	KeyStatus  = attribute.Key("http.response.status_code")
)

// Observer returns a middleware observer that records to tp and mp. Either
// may be nil (no traces, or no metrics).
func Observer(tp trace.TracerProvider, mp metric.MeterProvider) (func(context.Context, middleware.Decision), error) {
	var tracer trace.Tracer
	if tp != nil {
		tracer = tp.Tracer(ScopeName)
	}
	var decisions metric.Int64Counter
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
			metric.WithUnit("s"))
		if err != nil {
			return nil, err
		}
	}
	if tracer == nil && decisions == nil {
		return nil, errors.New("otelattest: neither a tracer provider nor a meter provider")
	}
	return func(ctx context.Context, e middleware.Decision) {
		attrs := []attribute.KeyValue{
			KeyRoute.String(e.Route), KeyMode.String(e.Mode.String()), KeyOutcome.String(string(e.Outcome)),
		}
		if e.Reason != "" {
			attrs = append(attrs, KeyReason.String(string(e.Reason)))
		}
		if e.Format != "" {
			attrs = append(attrs, KeyFormat.String(e.Format))
		}
		if decisions != nil {
			decisions.Add(ctx, 1, metric.WithAttributes(attrs...))
			if !e.VerifyStart.IsZero() {
				verify.Record(ctx, e.VerifyDuration.Seconds(), metric.WithAttributes(attrs...))
			}
		}
		if tracer == nil {
			return
		}
		if e.Status != 0 {
			attrs = append(attrs, KeyStatus.Int(e.Status))
		}
		if !e.VerifyStart.IsZero() {
			_, span := tracer.Start(ctx, "reattest.verify", trace.WithTimestamp(e.VerifyStart), trace.WithAttributes(attrs...))
			if e.Outcome != middleware.OutcomeVerified {
				span.SetStatus(codes.Error, string(e.Outcome))
			}
			span.End(trace.WithTimestamp(e.VerifyStart.Add(e.VerifyDuration)))
			return
		}
		trace.SpanFromContext(ctx).AddEvent("reattest."+string(e.Outcome), trace.WithAttributes(attrs...))
	}, nil
}
