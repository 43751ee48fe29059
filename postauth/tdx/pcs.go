package tdx

import (
	"context"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// PCS fetches collateral from Intel's Provisioning Certification Service
// (API v4) or a service with the same API (a PCCS, a local fake in
// tests). Each request has a timeout, failed requests are retried with
// exponential backoff (network errors, 429 and 5xx only), and response
// bodies and headers are size-limited. It does not cache: wrap it in a
// [Cache]. A PCS is safe for concurrent use.
//
// The requests, relative to the base URL:
//
//	GET /tdx/certification/v4/tcb?fmspc=<fmspc>        TCB info, header TCB-Info-Issuer-Chain
//	GET /tdx/certification/v4/qe/identity              TD QE identity, header SGX-Enclave-Identity-Issuer-Chain
//	GET /sgx/certification/v4/pckcrl?ca=<ca>&encoding=der   PCK CRL (DER)
//
// and the root CA CRL from its own URL ([DefaultRootCRLURL]).
type PCS struct {
	cfg *pcsConfig
}

var _ CollateralSource = (*PCS)(nil)

// PCS response headers carrying the signers' certificate chains.
const (
	headerTCBInfoChain    = "TCB-Info-Issuer-Chain"
	headerQEIdentityChain = "SGX-Enclave-Identity-Issuer-Chain"
)

// NewPCS returns a PCS client; see the PCSOptions for the defaults.
func NewPCS(opts ...PCSOption) (*PCS, error) {
	c, err := newPCSConfig(opts)
	if err != nil {
		return nil, err
	}
	c.baseURL = strings.TrimSuffix(c.baseURL, "/")
	return &PCS{cfg: c}, nil
}

// Collateral fetches and parses the collateral for fmspc and ca. It does
// not verify it (the Verifier does).
func (p *PCS) Collateral(ctx context.Context, fmspc, ca string) (*Collateral, error) {
	if b, err := hex.DecodeString(fmspc); err != nil || len(b) != 6 || strings.ToLower(fmspc) != fmspc {
		return nil, fmt.Errorf("tdx: PCS: bad FMSPC %q", fmspc)
	}
	if ca != CAPlatform && ca != CAProcessor {
		return nil, fmt.Errorf("tdx: PCS: unknown PCK CA %q", ca)
	}
	raw := RawCollateral{CA: ca}
	var err error
	if raw.TCBInfo, raw.TCBInfoIssuerChain, err = p.get(ctx, p.cfg.baseURL+"/tdx/certification/v4/tcb?fmspc="+fmspc, headerTCBInfoChain); err != nil {
		return nil, fmt.Errorf("tdx: PCS TCB info: %w", err)
	}
	if raw.QEIdentity, raw.QEIdentityIssuerChain, err = p.get(ctx, p.cfg.baseURL+"/tdx/certification/v4/qe/identity", headerQEIdentityChain); err != nil {
		return nil, fmt.Errorf("tdx: PCS QE identity: %w", err)
	}
	if raw.PCKCRL, _, err = p.get(ctx, p.cfg.baseURL+"/sgx/certification/v4/pckcrl?ca="+ca+"&encoding=der", ""); err != nil {
		return nil, fmt.Errorf("tdx: PCS PCK CRL: %w", err)
	}
	if raw.RootCACRL, _, err = p.get(ctx, p.cfg.rootCRLURL, ""); err != nil {
		return nil, fmt.Errorf("tdx: root CA CRL: %w", err)
	}
	raw.PCKCRL, raw.RootCACRL = derCRL(raw.PCKCRL), derCRL(raw.RootCACRL)
	c, err := ParseCollateral(raw)
	if err != nil {
		return nil, fmt.Errorf("tdx: PCS: %w", err)
	}
	return c, nil
}

// derCRL returns the DER of a PEM CRL (some caching services serve PEM);
// anything else is returned as is.
func derCRL(b []byte) []byte {
	if blk, _ := pem.Decode(b); blk != nil && blk.Type == "X509 CRL" {
		return blk.Bytes
	}
	return b
}

// errPermanent marks a failure that a retry will not fix.
type errPermanent struct{ error }

// get fetches u, retrying as configured, and returns the body and the
// URL-decoded value of header (if header is not empty; it is required).
func (p *PCS) get(ctx context.Context, u, header string) ([]byte, []byte, error) {
	var last error
	delay := p.cfg.retryDelay
	for attempt := 0; attempt <= p.cfg.retries; attempt++ {
		if attempt > 0 {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, nil, ctx.Err()
			case <-t.C:
			}
			delay *= 2
		}
		body, hdr, err := p.getOnce(ctx, u, header)
		if err == nil {
			return body, hdr, nil
		}
		last = err
		var perm errPermanent
		if errors.As(err, &perm) || ctx.Err() != nil {
			break
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	return nil, nil, last
}

func (p *PCS) getOnce(ctx context.Context, u, header string) ([]byte, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, errPermanent{err}
	}
	resp, err := p.cfg.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, p.cfg.maxResponse+1))
	if err != nil {
		return nil, nil, err
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return nil, nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return nil, nil, errPermanent{fmt.Errorf("HTTP %d", resp.StatusCode)}
	case int64(len(body)) > p.cfg.maxResponse:
		return nil, nil, errPermanent{fmt.Errorf("response larger than %d bytes", p.cfg.maxResponse)}
	case len(body) == 0:
		return nil, nil, errPermanent{errors.New("empty response")}
	}
	if header == "" {
		return body, nil, nil
	}
	vals := resp.Header.Values(header)
	if len(vals) != 1 || len(vals[0]) == 0 || len(vals[0]) > MaxCollateralLen {
		return nil, nil, errPermanent{fmt.Errorf("want one %s header", header)}
	}
	chain, err := url.QueryUnescape(vals[0])
	if err != nil {
		return nil, nil, errPermanent{fmt.Errorf("%s header: %w", header, err)}
	}
	return body, []byte(chain), nil
}
