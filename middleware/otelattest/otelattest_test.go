package otelattest_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/middleware/otelattest"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/transports"
)

func TestObserver(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	obs, err := otelattest.Observer(tp, mp)
	if err != nil {
		t.Fatal(err)
	}

	pki := postauthtest.New(t)
	att, ver := postauthtest.Software(t)
	guard, err := middleware.New(ver, middleware.WithObserver(obs),
		middleware.WithRoute("PUT /config", middleware.Route{}))
	if err != nil {
		t.Fatal(err)
	}
	// A request span around the guard, as otelhttp would start.
	protected := guard.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, span := tp.Tracer("test").Start(r.Context(), "request")
		defer span.End()
		protected.ServeHTTP(w, r.WithContext(ctx))
	}))
	srv.TLS = pki.ServerConfig(pki.Issue(t, "localhost", postauthtest.ServerAuth()))
	middleware.ConfigureServer(srv.Config)
	srv.StartTLS()
	defer srv.Close()
	agent := pki.Issue(t, "agent")
	id, _ := postauth.IdentityFromTLS(&agent)
	tr, _ := transports.NewTransport(&http.Transport{TLSClientConfig: pki.ClientConfig(&agent)},
		transports.WithAttester(id, att), transports.WithAttestTo("127.0.0.1"))
	defer tr.Close()
	for range 2 { // challenged + verified, then a cache hit
		req, _ := http.NewRequest("PUT", srv.URL+"/config", strings.NewReader("x"))
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	var hist *metricdata.HistogramDataPoint[float64]
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != otelattest.ScopeName {
			t.Fatalf("scope %q", sm.Scope.Name)
		}
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if m.Name != otelattest.MetricDecisions {
					t.Fatalf("unexpected counter %s", m.Name)
				}
				for _, p := range d.DataPoints {
					v, _ := p.Attributes.Value(otelattest.KeyOutcome)
					counts[v.AsString()] += p.Value
					if r, _ := p.Attributes.Value("http.route"); r.AsString() != "/config" {
						t.Fatalf("http.route %q", r.AsString())
					}
				}
			case metricdata.Histogram[float64]:
				if m.Name == otelattest.MetricVerifyDuration && len(d.DataPoints) == 1 {
					hist = &d.DataPoints[0]
				}
			}
		}
	}
	if counts["challenged"] != 1 || counts["verified"] != 1 || counts["cache_hit"] != 1 {
		t.Fatalf("decision counts %v", counts)
	}
	if hist == nil {
		t.Fatal("no verification time recorded")
	}
	if !slices.Equal(hist.Bounds, otelattest.DurationBuckets) || hist.Bounds[0] != 0.0001 || hist.Bounds[len(hist.Bounds)-1] != 10 {
		t.Fatalf("bucket boundaries %v", hist.Bounds)
	}
	var verify, request sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		switch s.Name() {
		case otelattest.SpanVerify:
			verify = s
		case "request":
			request = s // the last request: the cache hit
		}
	}
	if verify == nil || verify.EndTime().Before(verify.StartTime()) || verify.SpanKind() != trace.SpanKindInternal {
		t.Fatalf("spans %v", spans.Ended())
	}
	got := attrMap(verify.Attributes())
	for k, v := range map[string]string{
		"http.route": "/config", "reattest.route": "PUT /config", "reattest.mode": "connection",
		"reattest.outcome": "verified", "reattest.evidence.format": "software-eat",
	} {
		if got[k] != v {
			t.Errorf("span attribute %s = %q, want %q (%v)", k, got[k], v, got)
		}
	}
	if _, ok := got["error.type"]; ok {
		t.Error("error.type on a verified span")
	}
	// The challenge (first request) and the cache hit (second) are events
	// on their request spans.
	events := map[string]map[string]string{}
	for _, s := range spans.Ended() {
		for _, ev := range s.Events() {
			events[ev.Name] = attrMap(ev.Attributes)
		}
	}
	if request == nil || events["reattest.cache_hit"] == nil || events["reattest.challenged"] == nil {
		t.Fatalf("events %v", events)
	}
	if c := events["reattest.challenged"]; c["http.response.status_code"] != "401" || c["reattest.reason"] == "" || c["error.type"] != "" {
		t.Errorf("challenge event %v", c)
	}
}

// TestObserverAttributes calls the observer with decisions of every kind
// and checks the metrics, the failure counter and the attribute names.
func TestObserverAttributes(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	obs, err := otelattest.Observer(tp, mp)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Unix(1_800_000_000, 0)
	for _, d := range []middleware.Decision{
		{Route: "PUT /config", Outcome: middleware.OutcomeVerified, Format: "tpm", VerifyStart: start, VerifyDuration: 2 * time.Millisecond},
		{Route: "PUT /config", Outcome: middleware.OutcomeUnavailable, Status: 503, Reason: postauth.ReasonVerifierFailed, VerifyStart: start, VerifyDuration: 400 * time.Microsecond},
		{Route: "PUT /config", Outcome: middleware.OutcomeUnavailable, Status: 503, Reason: postauth.ReasonVerifierTimeout, VerifyStart: start, VerifyDuration: 2 * time.Second},
		{Route: "payments", Mode: middleware.ModeOperation, Outcome: middleware.OutcomeInvalid, Status: 401, Reason: postauth.ReasonBinderMismatch, VerifyStart: start, VerifyDuration: 40 * time.Millisecond},
	} {
		obs(context.Background(), d)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	failures := map[string]int64{}
	var bucketCounts []uint64
	for _, m := range rm.ScopeMetrics[0].Metrics {
		switch d := m.Data.(type) {
		case metricdata.Sum[int64]:
			if m.Name != otelattest.MetricVerifierFailures {
				continue
			}
			if m.Unit != "{failure}" || !d.IsMonotonic {
				t.Errorf("%s: unit %q, monotonic %v", m.Name, m.Unit, d.IsMonotonic)
			}
			for _, p := range d.DataPoints {
				et, _ := p.Attributes.Value("error.type")
				failures[et.AsString()] += p.Value
			}
		case metricdata.Histogram[float64]:
			if m.Unit != "s" {
				t.Errorf("%s: unit %q", m.Name, m.Unit)
			}
			bucketCounts = make([]uint64, len(otelattest.DurationBuckets)+1)
			for _, p := range d.DataPoints {
				for i, c := range p.BucketCounts {
					bucketCounts[i] += c
				}
			}
		}
	}
	if len(failures) != 2 || failures["verifier_failed"] != 1 || failures["verifier_timeout"] != 1 {
		t.Fatalf("verifier failures %v", failures)
	}
	// 0.4 ms, 2 ms, 40 ms and 2 s fall into four different buckets:
	// (0.25 ms, 0.5 ms], (1 ms, 2.5 ms], (25 ms, 50 ms], (1 s, 2.5 s].
	want := make([]uint64, len(otelattest.DurationBuckets)+1)
	for _, le := range []float64{0.0005, 0.0025, 0.05, 2.5} {
		want[slices.Index(otelattest.DurationBuckets, le)]++
	}
	if !slices.Equal(bucketCounts, want) {
		t.Fatalf("bucket counts %v, want %v", bucketCounts, want)
	}
	byOutcome := map[string]map[string]string{}
	for _, s := range spans.Ended() {
		a := attrMap(s.Attributes())
		byOutcome[a["reattest.outcome"]+"/"+a["reattest.reason"]] = a
		if (a["reattest.outcome"] == "verified") != (s.Status().Code != codes.Error) {
			t.Errorf("span %v: status %v", a, s.Status())
		}
	}
	if a := byOutcome["invalid/binder_mismatch"]; a["error.type"] != "binder_mismatch" || a["http.response.status_code"] != "401" ||
		a["reattest.mode"] != "operation" || a["reattest.route"] != "payments" || a["http.route"] != "" {
		t.Errorf("invalid span %v", a)
	}
	if a := byOutcome["verified/"]; a["reattest.evidence.format"] != "tpm" || a["http.route"] != "/config" || a["http.response.status_code"] != "" {
		t.Errorf("verified span %v", a)
	}
}

func TestHTTPRoute(t *testing.T) {
	for in, want := range map[string]string{
		"PUT /config":             "/config",
		"/v1/config/{id}":         "/v1/config/{id}",
		"POST api.example/v1/pay": "/v1/pay",
		"localhost/x":             "/x",
		"example.com:8443/x":      "/x",
		"payments":                "",
		"api/payments":            "",
		"payments route":          "",
		"":                        "",
		"put /config":             "",
		"PUT  /config":            "/config",
		"GET /a b":                "",
	} {
		if got := otelattest.HTTPRoute(in); got != want {
			t.Errorf("httpRoute(%q) = %q, want %q", in, got, want)
		}
	}
}

// attrMap renders attributes as strings by key.
func attrMap(kvs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

func TestObserverNeedsAProvider(t *testing.T) {
	if _, err := otelattest.Observer(nil, nil); err == nil {
		t.Fatal("observer without providers")
	}
}
