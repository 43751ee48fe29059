package tpm

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// EnrollmentRequest is what an Attester sends an enrollment CA to get an
// AK certificate: its EK certificate (read from the TPM's NV memory), the
// EK's public area and the AK's public area.
type EnrollmentRequest struct {
	// EKCertificate is the EK certificate (DER).
	EKCertificate []byte `json:"ek_certificate"`
	// EKPublic is the EK's public area (TPMT_PUBLIC): the CA encrypts the
	// credential to it.
	EKPublic []byte `json:"ek_public"`
	// AKPublic is the AK's public area (TPMT_PUBLIC): the CA binds the
	// credential to its TPM name.
	AKPublic []byte `json:"ak_public"`
}

// EnrollmentChallenge is the enrollment CA's credential challenge
// (TPM2_MakeCredential): a secret that only the TPM holding both the EK
// and the AK named in the request can recover (TPM2_ActivateCredential).
type EnrollmentChallenge struct {
	// Credential is the TPM2B_ID_OBJECT's contents (the encrypted and
	// integrity-protected secret, bound to the AK's name).
	Credential []byte `json:"credential"`
	// Secret is the TPM2B_ENCRYPTED_SECRET's contents (the seed,
	// encrypted to the EK).
	Secret []byte `json:"secret"`
	// State is the CA's own state, returned as is in the proof.
	State []byte `json:"state"`
}

// EnrollmentProof is the Attester's answer to a challenge: the request
// again, the CA's state and the secret the TPM recovered.
type EnrollmentProof struct {
	Request EnrollmentRequest `json:"request"`
	State   []byte            `json:"state"`
	// Activated is the secret TPM2_ActivateCredential recovered.
	Activated []byte `json:"activated"`
}

// Enroller is an enrollment CA, in process (package enroll's CA) or
// remote (enroll.NewClient).
type Enroller interface {
	// Challenge checks the request (the EK certificate against the
	// manufacturer roots, the EK public area against the certificate, the
	// AK's attributes) and returns a credential challenge.
	Challenge(ctx context.Context, req *EnrollmentRequest) (*EnrollmentChallenge, error)
	// Issue checks the proof and returns the AK certificate chain (the AK
	// certificate first).
	Issue(ctx context.Context, proof *EnrollmentProof) ([][]byte, error)
}

// Bounds of enrollment messages.
const (
	maxCredentialLen = 1024
	maxSecretLen     = 1024
	maxStateLen      = 256
)

// Check checks the sizes of a request's fields.
func (r *EnrollmentRequest) Check() error {
	switch {
	case r == nil:
		return errors.New("tpm: no enrollment request")
	case len(r.EKCertificate) == 0 || len(r.EKCertificate) > MaxCertLen:
		return errors.New("tpm: EK certificate size out of range")
	case len(r.EKPublic) == 0 || len(r.EKPublic) > MaxAKLen:
		return errors.New("tpm: EK public area size out of range")
	case len(r.AKPublic) == 0 || len(r.AKPublic) > MaxAKLen:
		return errors.New("tpm: AK public area size out of range")
	}
	return nil
}

// Enroll gets an AK certificate for the Attester's AK from the enrollment
// CA e by credential activation, and puts it (with the EK certificate if
// [IncludeEKCertificate] is set) into every later Evidence:
//
//  1. it reads the EK certificate from NV and the EK ([ReadEK]);
//  2. it sends the EK certificate, the EK and the AK public areas to the
//     CA, which checks them and encrypts a secret to the EK, bound to the
//     AK's name (TPM2_MakeCredential);
//  3. the TPM recovers the secret (TPM2_ActivateCredential), which it does
//     only if it holds the EK's private key and a loaded object with the
//     AK's name, so the AK is on the TPM the EK certificate describes;
//  4. the CA checks the secret and issues the AK certificate, which
//     Enroll checks against the AK and the EK before using it.
//
// The TPM is not locked while the CA answers. Options: [WithEKCertIndex],
// [WithEKEndorsementAuth].
func (a *Attester) Enroll(ctx context.Context, e Enroller, opts ...EKOption) error {
	if e == nil {
		return errors.New("tpm: nil enroller")
	}
	cfg := newEKConfig(opts)
	var req *EnrollmentRequest
	err := a.tpm.do(ctx, func(t transport.TPM) error {
		if a.closed.Load() {
			return ErrClosed
		}
		l, err := loadEK(t, cfg)
		if err != nil {
			return err
		}
		l.flush(t)
		req = &EnrollmentRequest{EKCertificate: l.ek.Certificate, EKPublic: l.ek.Public, AKPublic: slices.Clone(a.akPub)}
		return nil
	})
	if err != nil {
		return err
	}
	ekCert, err := x509.ParseCertificate(req.EKCertificate)
	if err != nil {
		return fmt.Errorf("tpm: EK certificate: %w", err)
	}
	machineID, err := MachineID(ekCert.PublicKey)
	if err != nil {
		return err
	}
	ch, err := e.Challenge(ctx, req)
	if err != nil {
		return fmt.Errorf("tpm: enrollment challenge: %w", err)
	}
	if ch == nil || len(ch.Credential) == 0 || len(ch.Credential) > maxCredentialLen ||
		len(ch.Secret) == 0 || len(ch.Secret) > maxSecretLen || len(ch.State) > maxStateLen {
		return errors.New("tpm: malformed enrollment challenge")
	}
	var activated []byte
	err = a.tpm.do(ctx, func(t transport.TPM) error {
		if a.closed.Load() {
			return ErrClosed
		}
		l, err := loadEK(t, cfg)
		if err != nil {
			return err
		}
		defer l.flush(t)
		if !bytes.Equal(l.ek.Public, req.EKPublic) {
			return errors.New("tpm: the EK changed during enrollment")
		}
		auth, err := l.auth(cfg.endorsementAuth)
		if err != nil {
			return err
		}
		rsp, err := tpm2.ActivateCredential{
			ActivateHandle: tpm2.AuthHandle{Handle: a.ak, Name: a.akName, Auth: tpm2.PasswordAuth(nil)},
			KeyHandle:      tpm2.AuthHandle{Handle: l.handle, Name: l.name, Auth: auth},
			CredentialBlob: tpm2.TPM2BIDObject{Buffer: ch.Credential},
			Secret:         tpm2.TPM2BEncryptedSecret{Buffer: ch.Secret},
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("tpm: credential activation: %w", err)
		}
		activated = slices.Clone(rsp.CertInfo.Buffer)
		return nil
	})
	if err != nil {
		return err
	}
	chain, err := e.Issue(ctx, &EnrollmentProof{Request: *req, State: ch.State, Activated: activated})
	if err != nil {
		return fmt.Errorf("tpm: enrollment: %w", err)
	}
	return a.setChains(chain, req.EKCertificate, machineID)
}

// SetAKCertificate makes the Evidence carry the AK certificate chain
// chain (the AK certificate first), for example one that [Attester.Enroll]
// obtained earlier and the agent stored ([Attester.AKCertificate]). It
// checks that the certificate is for this Attester's AK (key and TPM
// name) and, with [IncludeEKCertificate], that it names the machine of the
// EK certificate NewAttester read; it does not verify the chain (the
// relying party does).
func (a *Attester) SetAKCertificate(chain [][]byte) error {
	var machineID []byte
	if a.includeEK {
		cert, err := x509.ParseCertificate(a.ekCert)
		if err != nil {
			return fmt.Errorf("tpm: EK certificate: %w", err)
		}
		if machineID, err = MachineID(cert.PublicKey); err != nil {
			return err
		}
	}
	return a.setChains(chain, a.ekCert, machineID)
}

// setChains checks and stores the AK chain, with the EK certificate if
// [IncludeEKCertificate] is set.
func (a *Attester) setChains(chain [][]byte, ekCert, machineID []byte) error {
	if len(chain) == 0 || len(chain) > MaxChainLen {
		return errors.New("tpm: AK certificate chain length out of range")
	}
	c := &chains{}
	for _, der := range chain {
		if len(der) == 0 || len(der) > MaxCertLen {
			return errors.New("tpm: AK certificate size out of range")
		}
		c.ak = append(c.ak, slices.Clone(der))
	}
	leaf, err := x509.ParseCertificate(c.ak[0])
	if err != nil {
		return fmt.Errorf("tpm: AK certificate: %w", err)
	}
	key, name, err := parseAK(a.akPub)
	if err != nil {
		return err
	}
	if !key.Equal(leaf.PublicKey) || !bytes.Equal(leaf.SubjectKeyId, name) {
		return errors.New("tpm: the AK certificate is not for this Attester's AK")
	}
	id, err := machineIDOf(leaf)
	if err != nil {
		return err
	}
	if machineID != nil && !bytes.Equal(id, machineID) {
		return errors.New("tpm: the AK certificate names another machine than this TPM's EK")
	}
	c.machineID = id
	if a.includeEK {
		c.ek = [][]byte{slices.Clone(ekCert)}
	}
	a.chains.Store(c)
	return nil
}

// AKCertificate returns the AK certificate chain the Evidence carries, or
// nil before enrollment.
func (a *Attester) AKCertificate() [][]byte {
	c := a.chains.Load()
	if c == nil {
		return nil
	}
	out := make([][]byte, len(c.ak))
	for i, der := range c.ak {
		out[i] = slices.Clone(der)
	}
	return out
}

// MachineID returns the machine identifier the AK certificate names (the
// MachineID a relying party's Appraisal reports), or nil before
// enrollment.
func (a *Attester) MachineID() []byte {
	if c := a.chains.Load(); c != nil {
		return slices.Clone(c.machineID)
	}
	return nil
}
