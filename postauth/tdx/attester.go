package tdx

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/posture"
)

// QuoteProvider produces TDX quotes: the TD's quoting path on hardware
// (package tdxguest: configfs-tsm or the TDX guest device), a simulated
// platform in tests (package tdxtest). Implementations must be safe for
// concurrent use.
type QuoteProvider interface {
	// Quote returns a raw TDX quote whose REPORTDATA is reportData.
	Quote(ctx context.Context, reportData [ReportDataSize]byte) ([]byte, error)
}

// PostureSource supplies the measured posture the Evidence covers: a
// [posture.Tracker] over the TD's RTMR3 (SHA-384).
type PostureSource interface {
	Snapshot() (*posture.Snapshot, error)
}

// maxAttempts bounds how often Attest quotes again when the posture
// changed between its snapshot and the quote.
const maxAttempts = 4

// ErrPostureMismatch means RTMR3 in the quote did not match the posture
// log in any attempt: something other than the Tracker extended RTMR3,
// or the posture keeps changing.
var ErrPostureMismatch = errors.New("tdx: RTMR3 does not match the posture log")

// Attester produces TDX quote Evidence: a quote whose REPORTDATA is the
// Challenge's binder (zero-padded to 64 bytes) and, if configured, the
// posture log whose head the quote's RTMR3 holds. It is safe for
// concurrent use.
type Attester struct {
	qp      QuoteProvider
	posture PostureSource
}

var _ postauth.Attester = (*Attester)(nil)

// NewAttester returns an Attester that quotes through qp.
func NewAttester(qp QuoteProvider, opts ...AttesterOption) (*Attester, error) {
	if qp == nil {
		return nil, errors.New("tdx: nil quote provider")
	}
	c, err := newAttesterConfig(opts)
	if err != nil {
		return nil, err
	}
	return &Attester{qp: qp, posture: c.posture}, nil
}

// Attest quotes with REPORTDATA = binder || zero padding (docs/tdx.md
// section 3) and returns the Evidence. It parses the quote it got and
// checks that it carries that REPORTDATA; with posture, that RTMR3 holds
// the posture log's head (taken before quoting, or again after it). If
// the posture changed in between, it quotes again, up to four times, then
// fails with ErrPostureMismatch. It never returns Evidence that its own
// checks would reject.
func (a *Attester) Attest(ctx context.Context, ch postauth.Challenge) (postauth.Evidence, error) {
	if err := ctx.Err(); err != nil {
		return postauth.Evidence{}, err
	}
	rd, err := ReportData(ch.Binder)
	if err != nil {
		return postauth.Evidence{}, err
	}
	for range maxAttempts {
		var before *posture.Snapshot
		if a.posture != nil {
			if before, err = a.snapshot(); err != nil {
				return postauth.Evidence{}, err
			}
		}
		raw, err := a.qp.Quote(ctx, rd)
		if err != nil {
			return postauth.Evidence{}, fmt.Errorf("tdx: quote: %w", err)
		}
		if len(raw) == 0 {
			// go-tdx-guest's fake provider answers an unknown REPORTDATA
			// with an empty quote and no error.
			return postauth.Evidence{}, errors.New("tdx: the quote provider returned an empty quote")
		}
		q, err := ParseQuote(raw)
		if err != nil {
			return postauth.Evidence{}, fmt.Errorf("tdx: the quote provider returned an unusable quote: %w", err)
		}
		if !bytes.Equal(q.ReportData, rd[:]) {
			return postauth.Evidence{}, errors.New("tdx: the quote carries other REPORTDATA than requested")
		}
		ev := &Evidence{Quote: raw}
		if a.posture != nil {
			snap := before
			if !bytes.Equal(q.RTMRs[PostureRTMR], snap.Head) {
				// The posture may have changed after the snapshot: the
				// quote may cover the newer log.
				if snap, err = a.snapshot(); err != nil {
					return postauth.Evidence{}, err
				}
				if !bytes.Equal(q.RTMRs[PostureRTMR], snap.Head) {
					continue
				}
			}
			ev.Posture = &PostureLog{RTMR: PostureRTMR, Log: snap.Log}
		}
		b, err := ev.Marshal()
		if err != nil {
			return postauth.Evidence{}, err
		}
		return postauth.Evidence{Type: MediaType, Value: b}, nil
	}
	return postauth.Evidence{}, ErrPostureMismatch
}

func (a *Attester) snapshot() (*posture.Snapshot, error) {
	s, err := a.posture.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("tdx: posture: %w", err)
	}
	if s.Alg != crypto.SHA384 {
		return nil, errors.New("tdx: the posture log must use SHA-384 (the RTMR hash)")
	}
	return s, nil
}
