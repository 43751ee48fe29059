package tdxtest_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/abi"
	"github.com/google/go-tdx-guest/pcs"
	"github.com/google/go-tdx-guest/verify"

	"github.com/reattest/reattest/postauth/tdx"
	"github.com/reattest/reattest/postauth/tdx/tdxtest"
)

// TestMintedQuoteVerifies: go-tdx-guest itself accepts a minted quote
// against the test root and refuses it against Intel's root; the PCK
// certificate has Intel's shape (names, six extensions, the SGX extension
// go-tdx-guest parses).
func TestMintedQuoteVerifies(t *testing.T) {
	ca := tdxtest.NewCA(t)
	for _, version := range []int{4, 5} {
		p := ca.NewPlatform(t, &tdxtest.PlatformConfig{Version: version, FMSPC: []byte{0x90, 0xc0, 0x6f, 0, 0, 0}})
		var rd [64]byte
		rd[0] = 42
		raw, err := p.Quote(context.Background(), rd)
		if err != nil {
			t.Fatal(err)
		}
		q, err := abi.QuoteToProto(raw)
		if err != nil {
			t.Fatal(err)
		}
		now := &verify.TimeSet{PckCertChain: time.Now()}
		test := x509.NewCertPool()
		test.AddCert(ca.Root)
		if err := verify.TdxQuote(q, &verify.Options{TrustedRoots: test, Now: now}); err != nil {
			t.Fatalf("v%d against the test root: %v", version, err)
		}
		intel := x509.NewCertPool()
		intel.AddCert(tdx.IntelRoot())
		if err := verify.TdxQuote(q, &verify.Options{TrustedRoots: intel, Now: now}); err == nil {
			t.Fatalf("v%d: Intel's root accepted a test quote", version)
		}
		pck := p.PCK()
		if pck.Subject.CommonName != "Intel SGX PCK Certificate" || pck.Issuer.CommonName != "Intel SGX PCK Platform CA" || len(pck.Extensions) != 6 {
			t.Fatalf("PCK %v issued by %v with %d extensions", pck.Subject, pck.Issuer, len(pck.Extensions))
		}
		ext, err := pcs.PckCertificateExtensions(pck)
		if err != nil || ext.FMSPC != "90c06f000000" || ext.TCB.PCESvn != 11 {
			t.Fatalf("SGX extension %+v: %v", ext, err)
		}
		pq, err := tdx.ParseQuote(raw)
		if err != nil || pq.Version != version || pq.ReportData[0] != 42 {
			t.Fatalf("parsed v%d: %+v %v", version, pq, err)
		}
	}
}

// TestRTMR: the simulated RTMR extends like the TDX module and refuses
// digests that are not 48 bytes.
func TestRTMR(t *testing.T) {
	p := tdxtest.NewCA(t).NewPlatform(t, nil)
	r := p.RTMR(3)
	if err := r.Extend(context.Background(), make([]byte, 32)); err == nil {
		t.Fatal("32-byte extend accepted")
	}
	v, _ := r.Read(context.Background())
	if len(v) != 48 {
		t.Fatalf("RTMR of %d bytes", len(v))
	}
	defer func() {
		if recover() == nil {
			t.Fatal("RTMR(4) did not panic")
		}
	}()
	p.RTMR(4)
}

// TestSameSignerEveryQuote: like a real quoting enclave, whose QE report
// is signed once when its attestation key is certified, every quote of a
// platform carries the same attestation key and certification data (QE
// report, its signature, PCK chain): only header, body and the quote
// signature differ.
func TestSameSignerEveryQuote(t *testing.T) {
	p := tdxtest.NewCA(t).NewPlatform(t, nil)
	var certified [][]byte
	for i := range 2 {
		var rd [64]byte
		rd[0] = byte(i)
		raw, err := p.Quote(context.Background(), rd)
		if err != nil {
			t.Fatal(err)
		}
		const msgLen = 48 + 584
		certified = append(certified, raw[msgLen+4+64:])
	}
	if !bytes.Equal(certified[0], certified[1]) {
		t.Fatal("two quotes of one platform carry different certification data")
	}
}
