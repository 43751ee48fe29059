// Package tdxguest is the hardware side of package tdx: inside an Intel
// TDX trust domain (TD), it gets quotes from the TDX quoting path and
// extends RTMR3, through go-tdx-guest's client and rtmr packages.
//
//	qp, err := tdxguest.NewQuoteProvider()
//	reg, err := tdxguest.NewRTMRRegister(qp)  // RTMR3; must still be zero
//	tracker, err := posture.NewTracker(posture.WithRegister(reg))
//	att, err := tdx.NewAttester(qp, tdx.WithPosture(tracker))
//
// It is kept apart from package tdx so that a relying party that only
// verifies quotes does not link the guest client, which registers the
// command-line flag -tdx_guest_device_path on the default flag set and
// initialises a global logger when imported.
//
// This package is compile-tested only: the project's CI has no TDX
// hardware. On a machine that is not a TD, NewQuoteProvider fails.
//
// # Limits
//
//   - RTMR3 cannot be reset: it is zero when the TD boots and only grows.
//     A posture Tracker replays its log from zero, so it must be the
//     first and only extender of RTMR3 since boot; after an agent restart
//     the TD must reboot (or use another register) before a new Tracker
//     can start (NewTracker refuses a non-zero register).
//   - Anything in the TD that can write the RTMR sysfs or configfs files
//     can extend RTMR3. The quote proves RTMR3's value; the posture log
//     says how the agent claims it got there (as with a TPM PCR).
package tdxguest

import (
	"context"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/google/go-tdx-guest/client"
	"github.com/google/go-tdx-guest/rtmr"

	"github.com/reattest/reattest/postauth/tdx"
	"github.com/reattest/reattest/posture"
)

// QuoteProvider gets quotes from the TD's quoting path: the configfs-tsm
// report interface (/sys/kernel/config/tsm/report) when the kernel offers
// it for TDX, otherwise the TDX guest device (/dev/tdx_guest). It
// implements tdx.QuoteProvider. Requests are serialized (the kernel
// interfaces take one report at a time per handle).
type QuoteProvider struct {
	mu       sync.Mutex
	provider any // a client.QuoteProvider (configfs) or a client.Device
}

var _ tdx.QuoteProvider = (*QuoteProvider)(nil)

// NewQuoteProvider returns a QuoteProvider, or an error if neither
// configfs-tsm with the tdx_guest provider nor the TDX guest device is
// available (the machine is not a TD, or the kernel lacks support).
func NewQuoteProvider() (*QuoteProvider, error) {
	cfs, err := client.GetQuoteProvider()
	if err == nil && cfs.IsSupported() == nil {
		return &QuoteProvider{provider: cfs}, nil
	}
	dev, derr := client.OpenDevice()
	if derr != nil {
		return nil, fmt.Errorf("tdxguest: no TDX quoting interface (configfs-tsm: %v; device: %v)", errOr(err, cfs), derr)
	}
	return &QuoteProvider{provider: dev}, nil
}

func errOr(err error, cfs interface{ IsSupported() error }) error {
	if err != nil {
		return err
	}
	return cfs.IsSupported()
}

// Quote returns a quote with REPORTDATA reportData. The kernel call
// cannot be interrupted: ctx is checked before it starts.
func (p *QuoteProvider) Quote(ctx context.Context, reportData [tdx.ReportDataSize]byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	q, err := client.GetRawQuote(p.provider, reportData)
	if err != nil {
		return nil, fmt.Errorf("tdxguest: quote: %w", err)
	}
	return q, nil
}

// Close releases the TDX guest device, if that is what the provider uses.
func (p *QuoteProvider) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d, ok := p.provider.(client.Device); ok {
		return d.Close()
	}
	return nil
}

// rtmrSysfs is the kernel's (6.16 and later) read/extend interface of
// RTMR3; writing a 48-byte digest extends it.
const rtmrSysfs = "/sys/class/misc/tdx_guest/measurements/rtmr3:sha384"

// RTMRRegister is a posture.Register over the TD's RTMR3: Extend is the
// TDX module's RTMR extend, RTMR3 = SHA-384(RTMR3 || digest), through
// go-tdx-guest's rtmr package (the configfs-tsm RTMR interface, or the
// sysfs one of newer kernels). Read uses the sysfs file when present and
// otherwise takes a quote and reads RTMR3 from it. Safe for concurrent
// use; extends are serialized.
type RTMRRegister struct {
	mu sync.Mutex
	qp tdx.QuoteProvider
}

var _ posture.Register = (*RTMRRegister)(nil)

// NewRTMRRegister returns the register over RTMR3. qp is used to read
// RTMR3 on kernels without the sysfs interface (nil: that read fails).
func NewRTMRRegister(qp tdx.QuoteProvider) (*RTMRRegister, error) {
	return &RTMRRegister{qp: qp}, nil
}

// Hash is SHA-384, the RTMR hash.
func (r *RTMRRegister) Hash() crypto.Hash { return crypto.SHA384 }

// Extend extends RTMR3 with a 48-byte digest.
func (r *RTMRRegister) Extend(ctx context.Context, digest []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(digest) != crypto.SHA384.Size() {
		return fmt.Errorf("tdxguest: extend with %d bytes, want 48", len(digest))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := rtmr.ExtendDigest(tdx.PostureRTMR, digest); err != nil {
		return fmt.Errorf("tdxguest: extending RTMR3: %w", err)
	}
	return nil
}

// Read returns RTMR3.
func (r *RTMRRegister) Read(ctx context.Context) ([]byte, error) {
	if b, err := os.ReadFile(rtmrSysfs); err == nil {
		return parseRTMR(b)
	}
	if r.qp == nil {
		return nil, errors.New("tdxguest: no RTMR sysfs interface and no quote provider to read RTMR3")
	}
	raw, err := r.qp.Quote(ctx, [tdx.ReportDataSize]byte{})
	if err != nil {
		return nil, err
	}
	q, err := tdx.ParseQuote(raw)
	if err != nil {
		return nil, err
	}
	return q.RTMRs[tdx.PostureRTMR], nil
}

// parseRTMR accepts the sysfs value as 48 raw bytes or 96 hex digits.
func parseRTMR(b []byte) ([]byte, error) {
	if len(b) == tdx.RTMRSize {
		return b, nil
	}
	if h, err := hex.DecodeString(strings.TrimSpace(string(b))); err == nil && len(h) == tdx.RTMRSize {
		return h, nil
	}
	return nil, fmt.Errorf("tdxguest: RTMR3 sysfs value of %d bytes", len(b))
}
