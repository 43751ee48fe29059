//go:build cgo

package main

import (
	"context"
	"errors"
	"log"

	"github.com/google/go-tpm/tpm2/transport/simulator"

	"github.com/reattest/reattest/postauth/tpm"
)

// tpmFormat opens the TPM simulator (in process; go-tpm's
// tpm2/transport/simulator needs cgo) and returns the TPM quote format
// with a fresh AK. The simulator is a process-wide singleton: done closes
// it.
func tpmFormat() (evidenceFormat, func(), error) {
	raw, err := simulator.OpenSimulator()
	if err != nil {
		return evidenceFormat{}, nil, err
	}
	att, err := tpm.NewAttester(context.Background(), tpm.Share(raw))
	if err != nil {
		raw.Close()
		return evidenceFormat{}, nil, err
	}
	ver, err := tpm.NewVerifier(tpm.WithPinnedAKs(att.AKPublic()), tpm.AllowSoftwareKey())
	if err != nil {
		att.Close()
		raw.Close()
		return evidenceFormat{}, nil, err
	}
	done := func() {
		if err := errors.Join(att.Close(), raw.Close()); err != nil {
			log.Printf("TPM simulator: %v", err)
		}
	}
	return evidenceFormat{name: tpmFormatName, attester: att, verifier: ver, mediaTyp: tpm.MediaType}, done, nil
}
