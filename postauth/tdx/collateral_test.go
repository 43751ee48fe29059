package tdx_test

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/tdx"
	"github.com/reattest/reattest/postauth/tdx/tdxtest"
)

// setClock moves clk forward to t.
func setClock(clk *postauthtest.Clock, t time.Time) { clk.Advance(t.Sub(clk.Now())) }

func fmspcOf(p *tdxtest.Platform) string { return hex.EncodeToString(p.Config().FMSPC) }

// TestPCSFetch: the PCS client gets the collateral from the fake PCS in
// the PCS's format (URL-encoded issuer chains, JSON bodies, DER CRLs), and
// a Verifier using it through a Cache accepts the platform's quote.
func TestPCSFetch(t *testing.T) {
	env := tdxtest.NewEnv(t, nil)
	fake := tdxtest.NewFakePCS(t, env.Collateral)
	p, err := tdx.NewPCS(fake.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	col, err := p.Collateral(context.Background(), fmspcOf(env.Platform), tdx.CAPlatform)
	if err != nil {
		t.Fatal(err)
	}
	raw := col.Raw()
	for name, pair := range map[string][2][]byte{
		"tcb info": {raw.TCBInfo, env.Collateral.TCBInfo}, "tcb chain": {raw.TCBInfoIssuerChain, env.Collateral.TCBInfoIssuerChain},
		"qe identity": {raw.QEIdentity, env.Collateral.QEIdentity}, "qe chain": {raw.QEIdentityIssuerChain, env.Collateral.QEIdentityIssuerChain},
		"pck crl": {raw.PCKCRL, env.Collateral.PCKCRL}, "root crl": {raw.RootCACRL, env.Collateral.RootCACRL},
	} {
		if !bytes.Equal(pair[0], pair[1]) {
			t.Errorf("%s differs after the round trip through the fake PCS", name)
		}
	}
	if col.FMSPC() != fmspcOf(env.Platform) || col.CA() != tdx.CAPlatform || col.TCBEvaluationDataNumber() != 17 {
		t.Fatalf("collateral %s %s %d", col.FMSPC(), col.CA(), col.TCBEvaluationDataNumber())
	}
	cache, err := tdx.NewCache(p)
	if err != nil {
		t.Fatal(err)
	}
	v, err := tdx.NewVerifier(cache, tdx.WithTrustedRoots(env.CA.Roots()...))
	if err != nil {
		t.Fatal(err)
	}
	ch := challenge(crypto.SHA256)
	if _, err := v.Verify(context.Background(), ch, attest(t, env.Attester, ch)); err != nil {
		t.Fatal(err)
	}
}

// TestPCSFailures: retries on 5xx only, permanent failures at once,
// bounded responses, required headers, timeouts, and input checks.
func TestPCSFailures(t *testing.T) {
	env := tdxtest.NewEnv(t, nil)
	fmspc := fmspcOf(env.Platform)
	ctx := context.Background()
	t.Run("down-retried", func(t *testing.T) {
		fake := tdxtest.NewFakePCS(t, env.Collateral)
		fake.SetDown(true)
		p, _ := tdx.NewPCS(append(fake.Options(), tdx.WithRetries(2, time.Millisecond))...)
		if _, err := p.Collateral(ctx, fmspc, tdx.CAPlatform); err == nil {
			t.Fatal("no error with the PCS down")
		}
		if n := fake.Requests(); n != 3 {
			t.Fatalf("%d requests, want 3 (one and two retries)", n)
		}
	})
	t.Run("unknown-fmspc-not-retried", func(t *testing.T) {
		fake := tdxtest.NewFakePCS(t, env.Collateral)
		p, _ := tdx.NewPCS(append(fake.Options(), tdx.WithRetries(3, time.Millisecond))...)
		if _, err := p.Collateral(ctx, "0102030405ff", tdx.CAPlatform); err == nil {
			t.Fatal("unknown FMSPC served")
		}
		if n := fake.Requests(); n != 1 {
			t.Fatalf("%d requests, want 1", n)
		}
	})
	t.Run("response-too-large", func(t *testing.T) {
		fake := tdxtest.NewFakePCS(t, env.Collateral)
		p, _ := tdx.NewPCS(append(fake.Options(), tdx.WithMaxResponseSize(100))...)
		if _, err := p.Collateral(ctx, fmspc, tdx.CAPlatform); err == nil {
			t.Fatal("oversized response accepted")
		}
	})
	t.Run("no-issuer-chain", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(env.Collateral.TCBInfo) }))
		defer srv.Close()
		p, _ := tdx.NewPCS(tdx.WithBaseURL(srv.URL), tdx.WithRootCRLURL(srv.URL+"/crl"))
		if _, err := p.Collateral(ctx, fmspc, tdx.CAPlatform); err == nil {
			t.Fatal("response without issuer chain accepted")
		}
	})
	t.Run("timeout", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		defer srv.Close()
		defer close(release)
		p, _ := tdx.NewPCS(tdx.WithBaseURL(srv.URL), tdx.WithRootCRLURL(srv.URL+"/crl"), tdx.WithRequestTimeout(50*time.Millisecond), tdx.WithRetries(0, 0))
		start := time.Now()
		if _, err := p.Collateral(ctx, fmspc, tdx.CAPlatform); err == nil {
			t.Fatal("hanging PCS answered")
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("took %v", d)
		}
	})
	t.Run("inputs", func(t *testing.T) {
		p, _ := tdx.NewPCS()
		for _, f := range []string{"", "50806F000000", "50806f00", "zz806f000000"} {
			if _, err := p.Collateral(ctx, f, tdx.CAPlatform); err == nil {
				t.Errorf("FMSPC %q accepted", f)
			}
		}
		if _, err := p.Collateral(ctx, fmspc, "other"); err == nil {
			t.Error("unknown CA accepted")
		}
		for _, o := range []tdx.PCSOption{tdx.WithBaseURL("ftp://x"), tdx.WithBaseURL("::"), tdx.WithRequestTimeout(0), tdx.WithRetries(11, 0), tdx.WithMaxResponseSize(0)} {
			if _, err := tdx.NewPCS(o); err == nil {
				t.Error("bad option accepted")
			}
		}
	})
}

// countingSource counts fetches and can fail or block.
type countingSource struct {
	inner   tdx.CollateralSource
	n       atomic.Int64
	fail    atomic.Bool
	release chan struct{} // if set, fetches wait for it
}

func (s *countingSource) Collateral(ctx context.Context, fmspc, ca string) (*tdx.Collateral, error) {
	s.n.Add(1)
	if s.release != nil {
		<-s.release
	}
	if s.fail.Load() {
		return nil, context.DeadlineExceeded
	}
	return s.inner.Collateral(ctx, fmspc, ca)
}

// TestCacheExpiry: the Cache serves an entry until its nextUpdate, then
// fetches again; when the fetch fails it serves the expired entry, which
// the Verifier refuses (collateral_expired) unless its grace covers it;
// after a failure it waits for the backoff before asking again; with no
// entry at all, the failure is collateral_unavailable.
func TestCacheExpiry(t *testing.T) {
	env := tdxtest.NewEnv(t, nil)
	src := &countingSource{inner: env.Source}
	clk := postauthtest.NewClock(time.Now())
	cache, err := tdx.NewCache(src, tdx.WithClock(clk.Now), tdx.WithFailureBackoff(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	v, _ := tdx.NewVerifier(cache, tdx.WithTrustedRoots(env.CA.Roots()...), tdx.WithClock(clk.Now))
	vGrace, _ := tdx.NewVerifier(cache, tdx.WithTrustedRoots(env.CA.Roots()...), tdx.WithClock(clk.Now), tdx.WithCollateralGrace(24*time.Hour))
	ctx := context.Background()
	verify := func(v *tdx.Verifier) error {
		ch := challenge(crypto.SHA256)
		_, err := v.Verify(ctx, ch, attest(t, env.Attester, ch))
		return err
	}
	for range 3 {
		if err := verify(v); err != nil {
			t.Fatal(err)
		}
	}
	if n := src.n.Load(); n != 1 {
		t.Fatalf("%d fetches for 3 verifications, want 1", n)
	}
	col, _ := env.Source.Collateral(ctx, fmspcOf(env.Platform), tdx.CAPlatform)
	// Past nextUpdate, with the source working: fetched again (the test
	// source serves the same collateral, still expired, so the Verifier
	// refuses it; the point is the fetch).
	setClock(clk, col.NextUpdate().Add(time.Hour))
	postauthtest.WantError(t, verify(v), postauth.CodeUnavailable, postauth.ReasonCollateralExpired)
	if n := src.n.Load(); n != 2 {
		t.Fatalf("%d fetches after expiry, want 2", n)
	}
	// The source fails: the expired entry is served; only a grace lets
	// it pass; no new fetch within the backoff.
	src.fail.Store(true)
	setClock(clk, col.NextUpdate().Add(2*time.Hour))
	postauthtest.WantError(t, verify(v), postauth.CodeUnavailable, postauth.ReasonCollateralExpired)
	if err := verify(vGrace); err != nil {
		t.Fatalf("within grace: %v", err)
	}
	if n := src.n.Load(); n != 3 {
		t.Fatalf("%d fetches, want 3 (one failed, then the backoff)", n)
	}
	// Past the grace too: refused.
	setClock(clk, col.NextUpdate().Add(25*time.Hour))
	postauthtest.WantError(t, verify(vGrace), postauth.CodeUnavailable, postauth.ReasonCollateralExpired)

	// A cache with nothing and a failing source: unavailable.
	empty, _ := tdx.NewCache(src, tdx.WithClock(clk.Now))
	v2, _ := tdx.NewVerifier(empty, tdx.WithTrustedRoots(env.CA.Roots()...))
	postauthtest.WantError(t, verify(v2), postauth.CodeUnavailable, postauth.ReasonCollateralUnavailable)
}

// TestCacheSharesFetches: concurrent requests for one platform share one
// fetch; Put preloads; the size bound holds.
func TestCacheSharesFetches(t *testing.T) {
	env := tdxtest.NewEnv(t, nil)
	src := &countingSource{inner: env.Source, release: make(chan struct{})}
	cache, _ := tdx.NewCache(src)
	fmspc := fmspcOf(env.Platform)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := cache.Collateral(context.Background(), fmspc, tdx.CAPlatform)
			errs <- err
		})
	}
	for src.n.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the others queue behind the fetch
	close(src.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := src.n.Load(); n != 1 {
		t.Fatalf("%d fetches for 8 concurrent requests, want 1", n)
	}

	// Size bound and Put.
	other := env.CA.NewPlatform(t, &tdxtest.PlatformConfig{FMSPC: []byte{1, 2, 3, 4, 5, 6}})
	otherCol, err := tdx.ParseCollateral(env.CA.Collateral(t, other, nil))
	if err != nil {
		t.Fatal(err)
	}
	small, _ := tdx.NewCache(&countingSource{inner: env.Source}, tdx.WithMaxEntries(1))
	if _, err := small.Collateral(context.Background(), fmspc, tdx.CAPlatform); err != nil {
		t.Fatal(err)
	}
	small.Put(otherCol)
	if small.Len() != 1 {
		t.Fatalf("cache holds %d entries, bound 1", small.Len())
	}
	got, err := small.Collateral(context.Background(), fmspcOf(other), tdx.CAPlatform)
	if err != nil || got != otherCol {
		t.Fatalf("Put entry not served: %v", err)
	}
	if _, err := tdx.NewCache(nil); err == nil {
		t.Fatal("nil source accepted")
	}
	if _, err := tdx.NewCache(env.Source, tdx.WithMaxEntries(0)); err == nil {
		t.Fatal("zero size accepted")
	}
}

// TestCacheRefusesWrongPlatform: a source answering with another
// platform's collateral is an error, not an entry.
func TestCacheRefusesWrongPlatform(t *testing.T) {
	env := tdxtest.NewEnv(t, nil)
	other := env.CA.NewPlatform(t, &tdxtest.PlatformConfig{FMSPC: []byte{1, 2, 3, 4, 5, 6}})
	wrong := tdxtest.NewSource(t, env.CA.Collateral(t, other, nil))
	cache, _ := tdx.NewCache(sourceFunc(func(ctx context.Context, _, ca string) (*tdx.Collateral, error) {
		return wrong.Collateral(ctx, fmspcOf(other), ca)
	}))
	if _, err := cache.Collateral(context.Background(), fmspcOf(env.Platform), tdx.CAPlatform); err == nil {
		t.Fatal("wrong platform's collateral served")
	}
}

type sourceFunc func(ctx context.Context, fmspc, ca string) (*tdx.Collateral, error)

func (f sourceFunc) Collateral(ctx context.Context, fmspc, ca string) (*tdx.Collateral, error) {
	return f(ctx, fmspc, ca)
}

// TestParseCollateralRejects: malformed collateral is refused when parsed.
func TestParseCollateralRejects(t *testing.T) {
	env := tdxtest.NewEnv(t, nil)
	good := env.Collateral
	cases := map[string]func(r *tdx.RawCollateral){
		"no-ca":        func(r *tdx.RawCollateral) { r.CA = "" },
		"empty-tcb":    func(r *tdx.RawCollateral) { r.TCBInfo = nil },
		"tcb-not-json": func(r *tdx.RawCollateral) { r.TCBInfo = []byte("{") },
		"tcb-no-sig": func(r *tdx.RawCollateral) {
			r.TCBInfo = bytes.Replace(r.TCBInfo, []byte(`"signature"`), []byte(`"sig"`), 1)
		},
		"tcb-wrong-id": func(r *tdx.RawCollateral) {
			r.TCBInfo = bytes.Replace(r.TCBInfo, []byte(`"id":"TDX"`), []byte(`"id":"SGX"`), 1)
		},
		"qe-wrong-id": func(r *tdx.RawCollateral) {
			r.QEIdentity = bytes.Replace(r.QEIdentity, []byte(`"TD_QE"`), []byte(`"QE"`), 1)
		},
		"bad-status": func(r *tdx.RawCollateral) {
			r.TCBInfo = bytes.Replace(r.TCBInfo, []byte(`"UpToDate"`), []byte(`"Fine"`), 1)
		},
		"chain-not-pem": func(r *tdx.RawCollateral) { r.TCBInfoIssuerChain = []byte("x") },
		"crl-not-der":   func(r *tdx.RawCollateral) { r.PCKCRL = []byte("x") },
		"too-large":     func(r *tdx.RawCollateral) { r.RootCACRL = make([]byte, tdx.MaxCollateralLen+1) },
	}
	for name, mut := range cases {
		r := good
		mut(&r)
		if _, err := tdx.ParseCollateral(r); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := tdx.ParseCollateral(good); err != nil {
		t.Fatal(err)
	}
}
