//go:build cgo

package main

import "github.com/google/go-tpm/tpm2/transport/simulator"

// The in-process TPM simulator (go-tpm-tools' Microsoft reference code)
// needs cgo; without it the TPM mode needs -tpm-addr.
func init() { openSimulator = simulator.OpenSimulator }
