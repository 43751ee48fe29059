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
 ("tdx quote verification", "postauth/tdx/verifier.go", "if err := verify.TdxQuoteContext(ctx, q.proto, opts); err != nil {", "if err := verify.TdxQuoteContext(ctx, q.proto, opts); false && err != nil {", "./postauth/tdx", "TestVerifierRejects|TestIntelSample"),
 ("tdx quote signature (known signer)", "postauth/tdx/verifier.go", "if !verifySig(k.ak, q.signed, q.sig) {", "if false {", "./postauth/tdx", "TestKnownSignerStillChecked"),
 ("tdx qe vendor", "postauth/tdx/verifier.go", "if !isIntelQE(q.QEVendorID) {", "if false {", "./postauth/tdx", "TestVerifierRejects"),
 ("tdx binder compare", "postauth/tdx/verifier.go", "if nonce == nil || subtle.ConstantTimeCompare(nonce, ch.Binder) != 1 {", "if false && subtle.ConstantTimeCompare(nonce, ch.Binder) != 1 {", "./postauth/tdx", "TestVerifierRejects|TestBinderLayout"),
 ("tdx pck revocation", "postauth/tdx/verifier.go", "if isRevoked(col.revoked, chain.PCKCertificate.SerialNumber) {", "if false {", "./postauth/tdx", "TestVerifierRejects"),
 ("tdx pck ca revocation", "postauth/tdx/verifier.go", "if isRevoked(col.rootRevd, chain.IntermediateCertificate.SerialNumber) {", "if false {", "./postauth/tdx", "TestVerifierRejects"),
 ("tdx collateral platform", "postauth/tdx/verifier.go", "if col.FMSPC() != fmspc || col.CA() != ca {", "if false {", "./postauth/tdx", "TestVerifierRejects"),
 ("tdx posture replay", "postauth/tdx/verifier.go", "if _, err := posture.VerifyRegister(crypto.SHA384, e.Posture.Log, q.RTMRs[PostureRTMR]); err != nil {", "if _, err := posture.VerifyRegister(crypto.SHA384, e.Posture.Log, q.RTMRs[PostureRTMR]); false && err != nil {", "./postauth/tdx", "TestVerifierRejects"),
 ("tdx tcb status policy", "postauth/tdx/verifier.go", "if len(viol) > 0 { // mutation: tcb status policy", "if false {", "./postauth/tdx", "TestVerifierRejects"),
 ("tdx measurement policy", "postauth/tdx/verifier.go", "if viol := v.policy.measurementViolations(q); len(viol) > 0 {", "if viol := v.policy.measurementViolations(q); false && len(viol) > 0 {", "./postauth/tdx", "TestVerifierRejects"),
 ("tdx hardware-backed only for Intel", "postauth/tdx/verifier.go", "if bytes.Equal(root.Raw, v.intel) {", "if true {", "./postauth/tdx", "TestExchange|TestFormatOf|TestTestRootRefusedByIntelRoot"),
 ("tdx collateral expiry", "postauth/tdx/collateral.go", "if now.After(next.Add(grace)) {", "if false {", "./postauth/tdx", "TestVerifierRejects|TestCacheExpiry|TestIntelSample"),
 ("tdx collateral signer chain", "postauth/tdx/collateral.go", "if err := d.signer.CheckSignatureFrom(root); err != nil {", "if err := d.signer.CheckSignatureFrom(root); false && err != nil {", "./postauth/tdx", "TestVerifierRejects"),
 ("tdx collateral signature", "postauth/tdx/collateral.go", "if !verifyP256(d.signer, d.body, d.sig) {", "if false {", "./postauth/tdx", "TestVerifierRejects"),
 ("tdx pck crl signature", "postauth/tdx/collateral.go", "if !bytes.Equal(c.pckCRL.RawIssuer, pca.RawSubject) || c.pckCRL.CheckSignatureFrom(pca) != nil {", "if false {", "./postauth/tdx", "TestVerifierRejects"),
 ("tdx tcb info platform", "postauth/tdx/tcb.go", "if !strings.EqualFold(ti.Fmspc, ext.FMSPC) || !strings.EqualFold(ti.PceID, ext.PCEID) {", "if false {", "./postauth/tdx", "TestVerifierRejects"),
 ("tdx module identity", "postauth/tdx/tcb.go", "if !moduleMatches(ti.TdxModule.Mrsigner.Bytes, ti.TdxModule.Attributes.Bytes, ti.TdxModule.AttributesMask.Bytes, q) {", "if false {", "./postauth/tdx", "TestVerifierRejects"),
 ("tdx tcb level match", "postauth/tdx/tcb.go", "if componentsReach(ext.TCB.CPUSvnComponents, l.Tcb.SgxTcbcomponents, 0) &&", "if true || componentsReach(ext.TCB.CPUSvnComponents, l.Tcb.SgxTcbcomponents, 0) &&", "./postauth/tdx", "TestVerifierRejects|TestIntelSample"),
 ("tdx qe identity", "postauth/tdx/tcb.go", "if !qeMatches(&c.qe, qe) {", "if false {", "./postauth/tdx", "TestVerifierRejects"),
 ("tdx debug TD", "postauth/tdx/policy.go", "if q.Debug() && !c.allowDebug {", "if false {", "./postauth/tdx", "TestVerifierRejects"),
 ("tdx mrtd policy", "postauth/tdx/policy.go", "check(\"mrtd\", c.mrtd, q.MRTD)", "_ = c.mrtd", "./postauth/tdx", "TestVerifierRejects"),
 ("tdx rtmr policy", "postauth/tdx/policy.go", "check(fmt.Sprintf(\"rtmr:%d\", i), c.rtmr[i], q.RTMRs[i])", "_ = i", "./postauth/tdx", "TestVerifierRejects"),
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
