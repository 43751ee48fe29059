package tdxtest

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/reattest/reattest/postauth/tdx"
)

// FakePCS is a local fake of Intel's Provisioning Certification Service
// (api.trustedservices.intel.com, a remote third-party service that tests
// cannot reach), served by net/http/httptest on loopback. It answers the
// PCS API v4 requests package tdx's PCS client makes, in the PCS's
// format (JSON bodies, URL-encoded issuer chain headers, DER CRLs), from
// the collateral it was given, plus the root CA CRL at /IntelSGXRootCA.der.
// It can be switched to fail (HTTP 503) to test outages. It is closed
// when the test ends.
type FakePCS struct {
	*httptest.Server

	mu       sync.Mutex
	byFMSPC  map[string]tdx.RawCollateral
	last     tdx.RawCollateral
	down     atomic.Bool
	requests atomic.Int64
}

// NewFakePCS starts a fake PCS serving raws.
func NewFakePCS(tb TB, raws ...tdx.RawCollateral) *FakePCS {
	tb.Helper()
	f := &FakePCS{byFMSPC: map[string]tdx.RawCollateral{}}
	for _, r := range raws {
		if err := f.Set(r); err != nil {
			tb.Fatal(err)
		}
	}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	tb.Cleanup(f.Close)
	return f
}

// Set serves raw from now on (for its FMSPC; the QE identity and CRLs of
// the last collateral set are served for every platform).
func (f *FakePCS) Set(raw tdx.RawCollateral) error {
	c, err := tdx.ParseCollateral(raw)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byFMSPC[c.FMSPC()] = raw
	f.last = raw
	return nil
}

// SetDown makes every request fail with 503 (true) or be served (false).
func (f *FakePCS) SetDown(down bool) { f.down.Store(down) }

// Requests is the number of requests served so far.
func (f *FakePCS) Requests() int64 { return f.requests.Load() }

// Options returns the tdx.NewPCS options that point a PCS client at the
// fake, without retry delays.
func (f *FakePCS) Options() []tdx.PCSOption {
	return []tdx.PCSOption{tdx.WithBaseURL(f.URL), tdx.WithRootCRLURL(f.URL + "/IntelSGXRootCA.der"), tdx.WithRetries(1, 0)}
}

// escapeChain URL-encodes a PEM chain the way the PCS does (spaces as
// %20).
func escapeChain(pem []byte) string {
	return strings.ReplaceAll(url.QueryEscape(string(pem)), "+", "%20")
}

func (f *FakePCS) serve(w http.ResponseWriter, r *http.Request) {
	f.requests.Add(1)
	if f.down.Load() {
		http.Error(w, "fake PCS down", http.StatusServiceUnavailable)
		return
	}
	if r.Method != http.MethodGet {
		http.Error(w, "method", http.StatusMethodNotAllowed)
		return
	}
	f.mu.Lock()
	last := f.last
	raw, ok := f.byFMSPC[r.URL.Query().Get("fmspc")]
	f.mu.Unlock()
	switch r.URL.Path {
	case "/tdx/certification/v4/tcb":
		if !ok {
			http.Error(w, "unknown fmspc", http.StatusNotFound)
			return
		}
		w.Header().Set("TCB-Info-Issuer-Chain", escapeChain(raw.TCBInfoIssuerChain))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(raw.TCBInfo)
	case "/tdx/certification/v4/qe/identity":
		w.Header().Set("SGX-Enclave-Identity-Issuer-Chain", escapeChain(last.QEIdentityIssuerChain))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(last.QEIdentity)
	case "/sgx/certification/v4/pckcrl":
		if r.URL.Query().Get("ca") != last.CA || r.URL.Query().Get("encoding") != "der" {
			http.Error(w, "bad query", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		_, _ = w.Write(last.PCKCRL)
	case "/IntelSGXRootCA.der":
		w.Header().Set("Content-Type", "application/pkix-crl")
		_, _ = w.Write(last.RootCACRL)
	default:
		http.NotFound(w, r)
	}
}
