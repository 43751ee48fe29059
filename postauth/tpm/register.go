package tpm

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/reattest/reattest/posture"
)

// PCRRegister is a [posture.Register] over a TPM PCR of the SHA-256 bank,
// so that a TPM quote covers the agent's posture log. Extend is
// TPM2_PCR_Extend of the SHA-256 bank only (PCR = SHA-256(PCR || digest)).
//
// Nothing else may extend or reset this PCR while a [posture.Tracker] uses
// it: the Tracker's log must account for every extend, or the PCR no longer
// matches the log, the Attester refuses to quote it and the Verifier
// rejects it (posture_invalid). Resettable PCRs are not protected by the
// TPM against other software on the same machine; the quote proves what the
// PCR held, and the log says how it got there.
//
// A PCRRegister is safe for concurrent use.
type PCRRegister struct {
	tpm *SharedTPM
	pcr int
}

var _ posture.Register = (*PCRRegister)(nil)

// NewPCRRegister resets the PCR (TPM2_PCR_Reset), reads it back and checks
// that it holds zeros, so that a [posture.Tracker] can start from the
// initial state. It fails if the PCR cannot be reset. t may be a *SharedTPM
// shared with an [Attester] (see [Share]); otherwise it is wrapped in one.
//
// Options: [WithPCR] (default DefaultPosturePCR, 23).
func NewPCRRegister(ctx context.Context, t transport.TPM, opts ...RegisterOption) (*PCRRegister, error) {
	if t == nil {
		return nil, errors.New("tpm: nil transport")
	}
	var cfg registerConfig
	for _, o := range opts {
		if o != nil {
			o.applyRegister(&cfg)
		}
	}
	pcr := cfg.pcr
	if pcr == 0 {
		pcr = DefaultPosturePCR
	}
	if pcr < 0 || pcr >= NumPCRs {
		return nil, fmt.Errorf("tpm: PCR index %d out of range", pcr)
	}
	r := &PCRRegister{tpm: Share(t), pcr: pcr}
	err := r.tpm.do(ctx, func(t transport.TPM) error {
		if _, err := (tpm2.PCRReset{PCRHandle: r.handle()}).Execute(t); err != nil {
			return fmt.Errorf("tpm: resetting PCR %d: %w", pcr, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	v, err := r.Read(ctx)
	if err != nil {
		return nil, err
	}
	if slices.ContainsFunc(v, func(b byte) bool { return b != 0 }) {
		return nil, fmt.Errorf("tpm: PCR %d is not zero after reset", pcr)
	}
	return r, nil
}

func (r *PCRRegister) handle() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: tpm2.TPMHandle(r.pcr), Auth: tpm2.PasswordAuth(nil)}
}

// PCR is the register's PCR index.
func (r *PCRRegister) PCR() int { return r.pcr }

// Hash is SHA-256: the register is the PCR's SHA-256 bank.
func (r *PCRRegister) Hash() crypto.Hash { return crypto.SHA256 }

// Extend extends the PCR's SHA-256 bank with digest (32 bytes).
func (r *PCRRegister) Extend(ctx context.Context, digest []byte) error {
	if len(digest) != PCRSize {
		return fmt.Errorf("tpm: extend with %d bytes, want %d", len(digest), PCRSize)
	}
	return r.tpm.do(ctx, func(t transport.TPM) error {
		_, err := tpm2.PCRExtend{
			PCRHandle: r.handle(),
			Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: slices.Clone(digest)}}},
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("tpm: extending PCR %d: %w", r.pcr, err)
		}
		return nil
	})
}

// Read returns the PCR's SHA-256 value.
func (r *PCRRegister) Read(ctx context.Context) ([]byte, error) {
	var v map[int][]byte
	err := r.tpm.do(ctx, func(t transport.TPM) error {
		var err error
		v, err = readPCRs(t, []int{r.pcr})
		return err
	})
	if err != nil {
		return nil, err
	}
	return v[r.pcr], nil
}

// readPCRs reads the SHA-256 values of pcrs. TPM2_PCR_Read returns at most
// eight values per call and says which ones in its output selection; this
// asks again for the rest until it has them all.
func readPCRs(t transport.TPM, pcrs []int) (map[int][]byte, error) {
	out := make(map[int][]byte, len(pcrs))
	rest := slices.Clone(pcrs)
	for len(rest) > 0 {
		sel := make([]uint, len(rest))
		for i, p := range rest {
			sel[i] = uint(p)
		}
		rsp, err := tpm2.PCRRead{PCRSelectionIn: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{
			{Hash: tpm2.TPMAlgSHA256, PCRSelect: tpm2.PCClientCompatible.PCRs(sel...)},
		}}}.Execute(t)
		if err != nil {
			return nil, fmt.Errorf("tpm: reading PCRs: %w", err)
		}
		var got []int
		for _, s := range rsp.PCRSelectionOut.PCRSelections {
			if s.Hash != tpm2.TPMAlgSHA256 {
				return nil, errors.New("tpm: PCR_Read returned another bank")
			}
			for byteIdx, b := range s.PCRSelect {
				for bit := range 8 {
					if b&(1<<bit) != 0 {
						got = append(got, byteIdx*8+bit)
					}
				}
			}
		}
		if len(got) == 0 || len(got) != len(rsp.PCRValues.Digests) {
			return nil, errors.New("tpm: PCR_Read returned no values or an inconsistent selection")
		}
		for i, p := range got {
			if !slices.Contains(rest, p) || len(rsp.PCRValues.Digests[i].Buffer) != PCRSize {
				return nil, errors.New("tpm: PCR_Read returned an unexpected value")
			}
			out[p] = slices.Clone(rsp.PCRValues.Digests[i].Buffer)
		}
		rest = slices.DeleteFunc(rest, func(p int) bool { _, ok := out[p]; return ok })
	}
	return out, nil
}
