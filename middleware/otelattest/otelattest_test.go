package otelattest_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

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
	srv := httptest.NewUnstartedServer(guard.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
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
	sawHistogram := false
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					v, _ := p.Attributes.Value(otelattest.KeyOutcome)
					counts[v.AsString()] += p.Value
				}
			case metricdata.Histogram[float64]:
				sawHistogram = m.Name == otelattest.MetricVerifyDuration && len(d.DataPoints) == 1
			}
		}
	}
	if counts["challenged"] != 1 || counts["verified"] != 1 || counts["cache_hit"] != 1 {
		t.Fatalf("decision counts %v", counts)
	}
	if !sawHistogram {
		t.Fatal("no verification time recorded")
	}
	ended := spans.Ended()
	if len(ended) != 1 || ended[0].Name() != "reattest.verify" || ended[0].EndTime().Before(ended[0].StartTime()) {
		t.Fatalf("spans %v", ended)
	}
	for _, a := range ended[0].Attributes() {
		if a.Key == otelattest.KeyFormat && a.Value.AsString() != "software-eat" {
			t.Fatalf("format %v", a.Value)
		}
	}
}

func TestObserverNeedsAProvider(t *testing.T) {
	if _, err := otelattest.Observer(nil, nil); err == nil {
		t.Fatal("observer without providers")
	}
}
