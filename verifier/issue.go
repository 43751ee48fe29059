package verifier

import (
	"context"
	"crypto"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/lestrrat-go/jwx/v3/jwa"
	vear "github.com/veraison/ear"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/ear"
	"github.com/reattest/reattest/posture"
)

// hashForNonce is the hash a session nonce implies: a binder is the
// suite hash's size (SHA-384: 48 bytes, SHA-512: 64); anything else is
// taken as SHA-256.
func hashForNonce(n int) crypto.Hash {
	switch n {
	case 48:
		return crypto.SHA384
	case 64:
		return crypto.SHA512
	}
	return crypto.SHA256
}

// hashBySize names the hash of a digest of n bytes.
func hashBySize(n int) crypto.Hash {
	switch n {
	case 32:
		return crypto.SHA256
	case 48:
		return crypto.SHA384
	case 64:
		return crypto.SHA512
	}
	return 0
}

// appraise appraises ev for a session with nonce and returns the signed
// EAR and an outcome for the log (a status, or a wire-safe reason). An
// error means no verdict (500): the Verifier could not decide, or signing
// failed.
//
// The Challenge given to the format Verifier is {Binder: nonce, Hash: by
// the nonce's size, KeyHash: Hash(spki) if the caller sent the
// authenticator key, else the Evidence's own key hash read by the format's
// binding reader, else none}.
//
// The service calls the format Verifier directly, not through a
// postauth.RelyingParty, so it makes the relying party's own checks of the
// appraisal itself ([checkAppraisal]) before it signs anything.
func (s *Service) appraise(ctx context.Context, f *format, nonce []byte, ev postauth.Evidence, spki []byte) (string, string, error) {
	h := hashForNonce(len(nonce))
	ch := postauth.Challenge{Binder: nonce, Hash: h}
	if spki != nil {
		d := h.New()
		d.Write(spki)
		ch.KeyHash = d.Sum(nil)
	} else if f.binding != nil {
		if _, kh, err := f.binding(ch, ev); err == nil {
			ch.KeyHash = kh
		}
	}
	app, verr := f.verifier.Verify(ctx, ch, ev)
	if verr == nil && app == nil {
		verr = errors.New("verifier: the format verifier returned no appraisal")
	}
	if verr == nil {
		verr = checkAppraisal(app, nonce)
	}
	code := postauth.CodeOf(verr)
	if verr != nil && (code == postauth.CodeUnavailable || code == postauth.CodeCanceled || ctx.Err() != nil) {
		return "", "no_verdict", verr
	}
	ar := vear.NewAttestationResult(f.name, s.cfg.build, s.cfg.developer)
	iat := s.cfg.now().Unix()
	ar.IssuedAt = &iat
	n := ear.EncodeNonce(nonce) // mutation: service eat_nonce
	ar.Nonce = &n
	sub := ar.Submods[f.name]
	policyID := "policy:reattest/" + f.name
	sub.AppraisalPolicyID = &policyID
	outcome := ""
	if verr == nil {
		outcome = "affirming"
		status := vear.TrustTierAffirming
		sub.Status = &status
		sub.TrustVector.InstanceIdentity = vear.TrustworthyInstanceClaim
		if app.HardwareBacked {
			sub.TrustVector.Hardware = vear.GenuineHardwareClaim
		}
		ann := annotate(f, h, app)
		sub.VeraisonAnnotatedEvidence = &ann
		if spki != nil && len(app.KeyHash) > 0 && subtle.ConstantTimeCompare(app.KeyHash, ch.KeyHash) == 1 { // mutation: service key attestation
			pub, err := canonicalSPKI(spki)
			if err != nil {
				return "", "bad_key", err
			}
			if err := sub.SetKeyAttestation(pub); err != nil {
				return "", "bad_key", err
			}
		}
	} else {
		reason := postauth.ReasonEvidenceInvalid
		if r := postauth.ReasonOf(verr); r != "" {
			reason = r
		}
		outcome = string(reason)
		status := vear.TrustTierContraindicated
		sub.Status = &status
		if code == postauth.CodePolicyDenied {
			sub.TrustVector.InstanceIdentity = vear.TrustworthyInstanceClaim
			sub.TrustVector.Executables = vear.ContraindicatedRuntimeClaim
		} else {
			sub.TrustVector.SetAll(vear.CryptoValidationFailedClaim)
		}
		claims := map[string]interface{}{"problem": string(reason)}
		sub.VeraisonPolicyClaims = &claims
	}
	token, err := ar.Sign(jwa.ES256(), s.key)
	if err != nil {
		return "", "sign_failed", fmt.Errorf("verifier: signing the EAR: %w", err)
	}
	if len(token) > ear.MaxTokenLen {
		return "", "result_too_large", fmt.Errorf("verifier: EAR of %d bytes exceeds %d", len(token), ear.MaxTokenLen)
	}
	return string(token), outcome, nil
}

// checkAppraisal makes the checks a relying party makes on a format
// Verifier's appraisal (postauth.RelyingParty.Verify), which the service,
// calling the Verifier directly, must make itself: the freshness value the
// signed Evidence carries is the session nonce (so that a careless
// Verifier cannot have the EAR vouch for Evidence bound to another nonce),
// and the posture log, if any, replays to the attested register value
// (format Verifiers report both without replaying: the EAR must not carry
// a posture that was never replayed).
func checkAppraisal(app *postauth.Appraisal, nonce []byte) error {
	if subtle.ConstantTimeCompare(app.Nonce, nonce) != 1 { // mutation: service binder compare
		return postauth.ErrorFor(postauth.ReasonBinderMismatch, postauth.ErrBinderMismatch)
	}
	switch {
	case len(app.PostureHead) == 0 && len(app.PostureLog) == 0:
	case len(app.PostureHead) == 0 || len(app.PostureLog) == 0:
		return postauth.ErrorFor(postauth.ReasonPostureInvalid, errors.New("verifier: a posture log without a register value, or the reverse"))
	default:
		if _, err := posture.Verify(app.PostureLog, app.PostureHead); err != nil { // mutation: service posture replay
			return postauth.ErrorFor(postauth.ReasonPostureInvalid, err)
		}
	}
	return nil
}

// annotate lists what the Evidence verified as reattest annotations.
func annotate(f *format, h crypto.Hash, app *postauth.Appraisal) map[string]interface{} {
	ann := map[string]interface{}{
		ear.AnnotationFormat:    app.Format,
		ear.AnnotationMediaType: f.mediaType,
	}
	if app.Format == "" {
		ann[ear.AnnotationFormat] = f.name
	}
	if !app.AttestedAt.IsZero() {
		ann[ear.AnnotationAttestedAt] = app.AttestedAt.Unix()
	}
	if len(app.KeyHash) > 0 {
		kh := h
		if kh.Size() != len(app.KeyHash) {
			kh = hashBySize(len(app.KeyHash))
		}
		if id := posture.AlgID(kh); id != 0 {
			ann[ear.AnnotationKeyHash] = posture.Digest{Alg: id, Value: app.KeyHash}.String()
		}
	}
	if len(app.MachineID) > 0 {
		ann[ear.AnnotationMachineID] = base64.RawURLEncoding.EncodeToString(app.MachineID)
	}
	if len(app.AttestationKeyID) > 0 {
		ann[ear.AnnotationAttestationKeyID] = base64.RawURLEncoding.EncodeToString(app.AttestationKeyID)
	}
	if len(app.PostureHead) > 0 && len(app.PostureLog) > 0 {
		if id := posture.AlgID(hashBySize(len(app.PostureHead))); id != 0 {
			ann[ear.AnnotationPostureHead] = posture.Digest{Alg: id, Value: app.PostureHead}.String()
			ann[ear.AnnotationPostureLog] = base64.RawURLEncoding.EncodeToString(app.PostureLog)
		}
	}
	return ann
}
