#!/usr/bin/env python3
# Mutation check: removes each security check in turn and runs the tests
# that must catch it; every mutation must be KILLED (tests fail). Run from
# the repository root: python3 tools/mutation-check.py (about 2 minutes).
import subprocess, sys
muts = [
 ("finished check", "postauth/authenticator.go", "if !hmac.Equal(finishedMAC(keys, c.hash, t.add(a.rawCertificateVerify)), a.Finished) {", "if false && !hmac.Equal(finishedMAC(keys, c.hash, t.add(a.rawCertificateVerify)), a.Finished) {", "./postauth", "TestAttackTamper|TestAttackRelay"),
 ("signature check", "postauth/authenticator.go", "if err := verifySignature(leaf.PublicKey, a.Scheme, signatureInput(certHash), a.Signature); err != nil {", "if err := verifySignature(leaf.PublicKey, a.Scheme, signatureInput(certHash), a.Signature); false && err != nil {", "./postauth", "TestAttackForgedSignature"),
 ("postauth binder compare", "postauth/attest.go", "if subtle.ConstantTimeCompare(app.Nonce, binder) != 1 {", "if false {", "./postauth", "TestCarelessVerifierCannotPass"),
 ("postauth keyhash compare", "postauth/attest.go", "if subtle.ConstantTimeCompare(app.KeyHash, keyHash) != 1 {", "if false {", "./postauth", "TestCarelessVerifierCannotPass"),
 ("softeat binder compare", "postauth/softeat/softeat.go", "if !bytes.Equal(nonce, ch.Binder) {", "if false {", "./postauth/softeat", "TestVerifierRejects"),
 ("softeat keyhash compare", "postauth/softeat/softeat.go", "if posture.AlgHash(c.KeyHash.Alg) != ch.Hash || !bytes.Equal(c.KeyHash.Value, ch.KeyHash) {", "if false {", "./postauth/softeat", "TestVerifierRejects"),
 ("single use", "postauth/requester.go", "r.pending = slices.Delete(r.pending, i, i+1)", "_ = i", "./postauth ./middleware", "TestAttackReplay"),
 ("context expiry", "postauth/requester.go", "if !r.now().Before(pr.expires) {", "if false {", "./postauth", "TestContextExpires"),
 ("operation binding", "postauth/requester.go", "if !bytes.Equal(want[NonceLen:], binding) {\n\t\t\treturn nil, invalid(\"operation_mismatch\", ErrOperationMismatch)", "if false {\n\t\t\treturn nil, invalid(\"operation_mismatch\", ErrOperationMismatch)", "./postauth ./middleware", "TestAttackOperationSwap"),
 ("offered extensions", "postauth/authenticator.go", "if _, ok := req.Extension(x.Type); !ok {\n\t\t\t\treturn nil, invalid(\"unsupported_extension\"", "if false {\n\t\t\t\treturn nil, invalid(\"unsupported_extension\"", "./postauth", "TestAttestationNotOffered"),
 ("attestation offered in request", "postauth/attest.go", "if offer, ok := req.Extension(extType); !ok || len(offer) != 0 {\n\t\treturn nil, invalid(", "if false {\n\t\treturn nil, invalid(", "./postauth", "TestAttestationNotOffered"),
 ("cmw only in end entity", "postauth/attest.go", "if i != 0 {", "if false {", "./postauth", "TestAttestationOnlyInEndEntity"),
 ("same peer key", "postauth/authenticator.go", "if !bytes.Equal(c.peer.RawSubjectPublicKeyInfo, v.Leaf.RawSubjectPublicKeyInfo) {", "if false {", "./postauth", "TestKeyTrust"),
 ("verified peer only", "postauth/channel.go", "if len(cs.PeerCertificates) > 0 && len(cs.VerifiedChains) > 0 {", "if len(cs.PeerCertificates) > 0 {", "./postauth", "TestUnverifiedPeerCertificateIsNoIdentity"),
 ("role labels", "postauth/channel.go", "if role == RoleServer {\n\t\thcLabel, fkLabel = labelServerHandshakeContext, labelServerFinishedKey", "if false {\n\t\thcLabel, fkLabel = labelServerHandshakeContext, labelServerFinishedKey", "./postauth", "TestRoleLabelsBind"),
 ("role check", "postauth/authenticator.go", "if responder != role {", "if false {", "./postauth", "TestAttackReflection"),
 ("posture hint", "middleware/guard.go", "case !hintMatches(r.Header.Get(wire.HeaderPosture), c):", "case false:", "./middleware", "TestPostureHintChangeRechallenges"),
 ("max age", "middleware/guard.go", "case !c.res.ValidAt(g.cfg.now(), rt.MaxAge):", "case false:", "./middleware", "TestMaxAgeExpiry"),
 ("too early", "middleware/guard.go", "if r.TLS != nil && !r.TLS.HandshakeComplete {\n\t\t// TLS early", "if false {\n\t\t// TLS early", "./middleware", "TestTooEarly"),
 ("policy appraise", "middleware/guard.go", "if err == nil && rt.Appraise != nil {", "if false {", "./middleware", "TestPolicyDenial|TestForbiddenTool|TestLying"),
 ("posture log replay", "posture/log.go", "if len(head) != len(got) || string(got) != string(head) {", "if false {", "./posture ./postauth/softeat ./postauth/tpm", "TestEvidence|TestVerifierRejects|TestVerify|Posture"),
 ("fail closed on unavailable", "middleware/guard.go", "\tres, err := reqr.Verify(ctx, raw, \"\", binding, rt.policy)\n", "\tres, err := reqr.Verify(ctx, raw, \"\", binding, rt.policy)\n\tif postauth.CodeOf(err) == postauth.CodeUnavailable { next.ServeHTTP(w, r); return }\n", "./middleware", "TestVerifierDownOrSlow"),
 ("decoded path match", "middleware/guard.go", "if r.URL.RawPath != \"\" {", "if false {", "./middleware/...", "TestPatternMatching|TestGin"),
 ("same-peer subject", "postauth/attest.go", "if v.KeyTrust == KeyTrustSamePeer && ch.peer != nil {", "if false {", "./postauth", "TestSamePeerSubjectFromTLS"),
 ("attest allow-list", "transports/transport.go", "mayAttest := t.att != nil && t.attestFor(req)", "mayAttest := t.att != nil", "./transports", "TestEvidenceOnlyToAllowedServers"),
 ("server attest global limit", "middleware/respond.go", "ok = g.serverBudget.take(now, g.cfg.serverRate, g.cfg.serverBurst)", "ok = true", "./middleware", "TestServerAttestationLimited"),
 ("clear-text critical", "transports/transport.go", "if t.requireServer != nil && req.URL != nil && t.requireServer(req) {", "if false {", "./transports", "TestCriticalRequestNotSentInClear"),
("ear jws alg", "postauth/ear/jws.go", "if alg != \"ES256\" { // mutation: jws alg", "if false { // mutation: jws alg", "./postauth/ear", "TestPassportVerifierRejects"),
 ("ear signature", "postauth/ear/jws.go", "if ecdsa.Verify(k, digest[:], r, s) { // mutation: ear signature", "if true { // mutation: ear signature", "./postauth/ear", "TestPassportVerifierRejects|TestPassportAttacks"),
 ("ear profile", "postauth/ear/appraise.go", "if c.profile != Profile { // mutation: ear profile", "if false { // mutation: ear profile", "./postauth/ear", "TestPassportVerifierRejects"),
 ("ear max age", "postauth/ear/appraise.go", "case now.Sub(c.issuedAt) > a.policy.maxAge: // mutation: ear max age", "case false: // mutation: ear max age", "./postauth/ear", "TestPassportVerifierRejects|TestPassportAttacks"),
 ("ear exp", "postauth/ear/appraise.go", "case !c.expiry.IsZero() && !now.Before(c.expiry): // mutation: ear exp", "case false: // mutation: ear exp", "./postauth/ear", "TestPassportVerifierRejects"),
 ("ear posture replay", "postauth/ear/appraise.go", "ann.postureHead.Value); err != nil { // mutation: ear posture replay", "ann.postureHead.Value); err != nil && false { // mutation: ear posture replay", "./postauth/ear", "TestPassportVerifierRejects"),
 ("ear hardware backed", "postauth/ear/appraise.go", "if !ok || TierOf(v) != StatusAffirming { // mutation: hardware backed", "if !ok || TierOf(v) == StatusContraindicated { // mutation: hardware backed", "./postauth/ear", "TestPassportHardwareBacked"),
 ("ear min status", "postauth/ear/policy.go", "if !s.status.atLeast(c.minStatus) { // mutation: ear min status", "if false { // mutation: ear min status", "./postauth/ear", "TestPassportVerifierRejects|TestBackgroundCheckVerdicts"),
 ("ear trust vector", "postauth/ear/policy.go", "case !tier.atLeast(c.minClaim[claim]): // mutation: ear trust vector", "case false: // mutation: ear trust vector", "./postauth/ear", "TestPassportVerifierRejects|TestPassportPolicyViolations"),
 ("passport binder", "postauth/ear/verifier.go", "if !equal(c.nonce, ch.Binder) { // mutation: passport binder", "if false { // mutation: passport binder", "./postauth/ear", "TestPassportVerifierRejects"),
 ("passport key attestation required", "postauth/ear/verifier.go", "if ak == nil { // mutation: passport key attestation required", "if false { // mutation: passport key attestation required", "./postauth/ear", "TestPassportVerifierRejects"),
 ("passport key attestation", "postauth/ear/verifier.go", "if !equal(keyHash, ch.KeyHash) { // mutation: passport key attestation", "if false { // mutation: passport key attestation", "./postauth/ear", "TestPassportVerifierRejects"),
 ("background local binding", "postauth/ear/remote.go", "if !equal(n, ch.Binder) { // mutation: local binding", "if false { // mutation: local binding", "./postauth/ear", "TestBackgroundCheckBrokenVerifierAffirmsWrongNonce|TestBackgroundCheckLocalChecksBeforeSending"),
 ("background local key hash", "postauth/ear/remote.go", "if kh != nil && !equal(kh, ch.KeyHash) { // mutation: local key hash", "if false { // mutation: local key hash", "./postauth/ear", "TestBackgroundCheckLocalChecksBeforeSending"),
 ("background eat_nonce", "postauth/ear/remote.go", "if !equal(c.nonce, ch.Binder) { // mutation: remote eat_nonce", "if false { // mutation: remote eat_nonce", "./postauth/ear", "TestBackgroundCheckVerifierFailures"),
 ("background late answer", "postauth/ear/client.go", "if err == nil && tctx.Err() != nil { // mutation: late answer", "if false { // mutation: late answer", "./postauth/ear", "TestBackgroundCheckVerifierFailures"),
 ("background session same origin", "postauth/ear/client.go", "if u.Scheme != c.base.Scheme ||", "if false && u.Scheme != c.base.Scheme ||", "./postauth/ear", "TestSessionURL|TestBackgroundCheckVerifierFailures"),
 ("background session nonce echo", "postauth/ear/client.go", "if err != nil || !equal(got, nonce) { // mutation: session nonce echo", "if err != nil { // mutation: session nonce echo", "./postauth/ear", "TestBackgroundCheckVerifierFailures"),
 ("background circuit breaker", "postauth/ear/breaker.go", "if now.Before(b.openUntil) { // mutation: circuit breaker", "if false { // mutation: circuit breaker", "./postauth/ear", "TestCircuitBreaker|TestBreaker"),
 ("service max sessions", "verifier/sessions.go", "if len(s.m) >= s.max { // mutation: max sessions", "if false { // mutation: max sessions", "./verifier", "TestSessionLifetime"),
 ("service session expiry", "verifier/sessions.go", "if !s.now().Before(ss.expiry) { // mutation: session expiry", "if false { // mutation: session expiry", "./verifier", "TestSessionLifetime|TestSessionExpiredBeforeEvidence"),
 ("service one Evidence per session", "verifier/sessions.go", "if ss.state != ear.StateWaiting { // mutation: one Evidence per session", "if false { // mutation: one Evidence per session", "./verifier", "TestSubmitEvidence"),
 ("service nonce size", "verifier/service.go", "if len(nonce) < minNonce || len(nonce) > maxNonce { // mutation: nonce size", "if false { // mutation: nonce size", "./verifier", "TestNewSession"),
 ("service eat_nonce", "verifier/issue.go", "n := ear.EncodeNonce(nonce) // mutation: service eat_nonce", "n := ear.EncodeNonce(make([]byte, 32)) // mutation: service eat_nonce", "./verifier", "TestSubmitEvidence"),
 ("service key attestation", "verifier/issue.go", "if spki != nil && len(app.KeyHash) > 0 && subtle.ConstantTimeCompare(app.KeyHash, ch.KeyHash) == 1 { // mutation: service key attestation", "if spki != nil && len(app.KeyHash) > 0 && subtle.ConstantTimeCompare(app.KeyHash, ch.KeyHash) >= 0 { // mutation: service key attestation", "./verifier", "TestServiceAttestsOnlyTheKeyTheEvidenceNames"),
]
fails = 0
for name, path, a, b, pkgs, run in muts:
    src = open(path).read()
    if a not in src:
        print("NOT FOUND:", name); fails += 1; continue
    open(path, "w").write(src.replace(a, b, 1))
    try:
        r = subprocess.run("go test -count=1 -run '%s' %s" % (run, pkgs), shell=True, capture_output=True, text=True, timeout=300)
        killed = r.returncode != 0
        print(("KILLED  " if killed else "SURVIVED"), name)
        if not killed: fails += 1
    finally:
        open(path, "w").write(src)
sys.exit(1 if fails else 0)
