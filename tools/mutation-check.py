#!/usr/bin/env python3
"""Mutation check: remove each security check in turn; a named test must fail.

Every security check in the code carries a marker comment on its line,

    if subtle.ConstantTimeCompare(app.Nonce, binder) != 1 { // mutation: postauth binder compare

and has an entry below: the packages to test and the tests that must catch
its removal. For each entry the tool disables the marked check (an `if` or
`case` condition becomes `false && (...)`; other lines take the entry's
explicit replacement), checks that the mutated module COMPILES (a build
failure is an error of this tool, never a kill), runs the named tests, and
requires at least one of them to FAIL. It then restores the file.

Exit status: 0 if every mutation was killed by a named test; 1 if one
survived; 2 if the tool itself failed (marker missing or duplicated, a
mutation that does not compile, a marker without an entry). Run it from the
repository root: python3 tools/mutation-check.py [name-substring ...];
--self-test checks that a mutation that does not compile is an error.
Mutations run side by side in copies of the module (MUTATION_JOBS workers,
default the number of CPUs up to 4); the working tree is never modified.
"""
import concurrent.futures
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile

# name: (packages, test regexp[, (old, new) replacement on the marked line])
MUTATIONS = {
    # layer 1: RFC 9261
    "finished check": ("./postauth", "TestAttackTamper|TestAttackRelay"),
    "signature check": ("./postauth", "TestAttackForgedSignature"),
    "offered extensions": ("./postauth", "TestAttestationNotOffered"),
    "same peer key": ("./postauth", "TestKeyTrust"),
    "verified peer only": ("./postauth", "TestUnverifiedPeerCertificateIsNoIdentity",
                           ("len(cs.PeerCertificates) > 0 && len(cs.VerifiedChains) > 0", "len(cs.PeerCertificates) > 0")),
    "role labels": ("./postauth", "TestRoleLabelsBind"),
    "role check": ("./postauth", "TestAttackReflection"),
    "offered scheme": ("./postauth", "TestSchemeMustBeOffered",
                       ("!slices.Contains(offered, a.Scheme) || ", "len(offered) < 0 || ")),
    "key fits scheme": ("./postauth", "TestKeyDecidedBeforeSignature"),
    "rsa bounds": ("./postauth", "TestKeyDecidedBeforeSignature",
                   (" && n <= maxRSABits && k.E == rsaExponent", "")),
    "chain length": ("./postauth", "TestChainBounded"),
    "chain key bounds": ("./postauth", "TestChainBounded"),
    # requests
    "single use": ("./postauth ./middleware", "TestAttackReplay",
                   ("slices.Delete(r.pending, i, i+1)", "slices.Delete(r.pending, i, i)")),
    "context expiry": ("./postauth", "TestContextExpires"),
    "operation binding": ("./postauth ./middleware", "TestAttackOperationSwap"),
    # layer 2: expat
    "attestation offered in request": ("./postauth", "TestAttestationNotOffered"),
    "cmw only in end entity": ("./postauth", "TestAttestationOnlyInEndEntity"),
    "deadline by the clock": ("./postauth", "TestContextErrJudgesByTheClock"),
    "verify deadline": ("./postauth ./middleware", "TestLateVerdictIsNoPass|TestLatePassNeverRuns",
                        ("case <-ctx.Done():", "case <-make(chan struct{}):")),
    "nil appraisal": ("./postauth", "TestNilAppraisalIsInvalid"),
    "verifier expiry": ("./postauth ./middleware", "TestVerifierExpiry"),
    "postauth binder compare": ("./postauth", "TestCarelessVerifierCannotPass"),
    "postauth keyhash compare": ("./postauth", "TestCarelessVerifierCannotPass"),
    "relying party replays posture": ("./postauth ./postauth/softeat ./postauth/tpm ./postauth/tdx ./postauth/ear", "TestPostureReplayedByRelyingParty|TestVerifierRejects|TestPosture|TestPassportPostureReplayedByRelyingParty"),
    "same-peer subject": ("./postauth", "TestSamePeerSubjectFromTLS"),
    "format check": ("./postauth ./postauth/tdx", "TestFormatNotAccepted|TestFormatsFromVerifier"),
    "cmw json record shape": ("./postauth", "TestDecodeCMWRefusesNonStringJSON"),
    # formats
    "softeat binder compare": ("./postauth/softeat", "TestVerifierRejects"),
    "softeat keyhash compare": ("./postauth/softeat", "TestVerifierRejects"),
    "softeat protected header exact": ("./postauth/softeat", "TestVerifierStrictness"),
    "softeat unprotected header empty": ("./postauth/softeat", "TestVerifierStrictness"),
    "softeat nonce length": ("./postauth/softeat", "TestVerifierStrictness"),
    "softeat canonical claims": ("./postauth/softeat", "TestVerifierStrictness|TestVerifierRejects"),
    # formats: Intel TDX (postauth/tdx)
    "tdx quote verification": ("./postauth/tdx", "TestVerifierRejects|TestIntelSampleBindingFailsClosed"),
    "tdx quote signature (known signer)": ("./postauth/tdx", "TestKnownSignerStillChecked"),
    "tdx signer bound to collateral": ("./postauth/tdx", "TestKnownSignerBoundToCollateral"),
    "tdx qe vendor": ("./postauth/tdx", "TestVerifierRejects"),
    "tdx binder compare": ("./postauth/tdx", "TestVerifierRejects|TestBinderLayout"),
    "tdx local binding": ("./postauth/tdx ./postauth/ear", "TestBinding|TestTDXEvidenceBothModels"),
    "tdx pck revocation": ("./postauth/tdx", "TestVerifierRejects|TestKnownSignerRevoked|TestCRLRollbackRefused"),
    "tdx pck ca revocation": ("./postauth/tdx", "TestVerifierRejects|TestKnownSignerRevoked"),
    "tdx crl rollback": ("./postauth/tdx", "TestCRLRollbackRefused"),
    "tdx root crl rollback": ("./postauth/tdx", "TestCRLRollbackRefused"),
    "tdx collateral platform": ("./postauth/tdx", "TestVerifierRejects"),
    "tdx tcb status policy": ("./postauth/tdx", "TestVerifierRejects"),
    "tdx measurement policy": ("./postauth/tdx", "TestVerifierRejects"),
    "tdx hardware-backed only for Intel's root": ("./postauth/tdx", "TestExchange|TestFormatOf|TestTestRootRefusedByIntelRoot",
                                                  ("bytes.Equal(root.Raw, v.intel)", "true || bytes.Equal(root.Raw, v.intel)")),
    "tdx collateral expiry": ("./postauth/tdx", "TestVerifierRejects|TestCacheExpiry|TestIntelSampleFullPipeline"),
    "tdx collateral signer chain": ("./postauth/tdx", "TestVerifierRejects"),
    "tdx collateral signature": ("./postauth/tdx", "TestVerifierRejects"),
    "tdx pck crl signature": ("./postauth/tdx", "TestVerifierRejects"),
    "tdx tcb info platform": ("./postauth/tdx", "TestVerifierRejects"),
    "tdx module identity": ("./postauth/tdx", "TestVerifierRejects"),
    "tdx tcb level match": ("./postauth/tdx", "TestVerifierRejects|TestIntelSampleFullPipeline",
                            ("if componentsReach(", "if true || componentsReach(")),
    "tdx qe identity": ("./postauth/tdx", "TestVerifierRejects"),
    "tdx debug td": ("./postauth/tdx", "TestVerifierRejects"),
    "tdx mrtd policy": ("./postauth/tdx", "TestVerifierRejects",
                        ('check("mrtd", c.mrtd, q.MRTD)', "_ = c.mrtd")),
    "tdx rtmr policy": ("./postauth/tdx", "TestVerifierRejects",
                        ('check(fmt.Sprintf("rtmr:%d", i), c.rtmr[i], q.RTMRs[i])', "_ = i")),
    # TPM trust chain (postauth/tpm, postauth/tpm/enroll)
    "tpm ak chain": ("./postauth/tpm", "TestAttackUntrustedAK"),
    "tpm ak eku": ("./postauth/tpm", "TestAttackUntrustedAK"),
    "tpm ak certificate key": ("./postauth/tpm", "TestAttackUntrustedAK"),
    "tpm ak certificate name": ("./postauth/tpm", "TestAttackUntrustedAK"),
    "tpm ak generated in tpm": ("./postauth/tpm/enroll", "TestChallengeRejects"),
    "tpm ek chain": ("./postauth/tpm ./postauth/tpm/enroll", "TestAttackAKCertificateForAnotherEK|TestChallengeRejects"),
    "tpm ek binding": ("./postauth/tpm", "TestAttackAKCertificateForAnotherEK"),
    "tpm machine pin": ("./postauth/tpm", "TestDiversion"),
    "tpm quote signature": ("./postauth/tpm", "TestVerifierRejects|TestUntrustedAK"),
    "tpm quote binder": ("./postauth/tpm", "TestVerifierRejects|TestForgedStructure"),
    "tpm certify signature": ("./postauth/tpm", "TestAttackQuoteAndCertificationFromTwoTPMs"),
    "tpm certify binder": ("./postauth/tpm", "TestAttackStaleCertification"),
    "tpm certified name": ("./postauth/tpm", "TestAttackSoftwareKeyWithOtherCertification"),
    "tpm certified key hash": ("./postauth/tpm", "TestAttackSoftwareKeyWithOtherCertification",
                               ("app.KeyHash = kh", "app.KeyHash, _ = slices.Clone(ch.KeyHash), kh")),
    "tpm key attributes": ("./postauth/tpm", "TestCertifiedKeyAttributes"),
    "tpm key residency": ("./postauth/tpm", "TestSoftwareKeyRefused"),
    "tpm pcr policy": ("./postauth/tpm", "TestAttackPCRsOutsidePolicy|TestPCRPolicy"),
    "tpm hardware-backed needs a boot policy": ("./postauth/tpm", "TestHardwareBackedNeedsBootPolicy",
                                                ("v.pcrs != nil", "true")),
    "tpm event log replay": ("./postauth/tpm", "TestEventLog"),
    "enroll ek chain": ("./postauth/tpm/enroll", "TestChallengeRejects"),
    "enroll ek public is the certificate's": ("./postauth/tpm/enroll", "TestChallengeRejects"),
    "enroll activation": ("./postauth/tpm ./postauth/tpm/enroll", "TestIssueRejectsGuesses|TestIssueChecks|TestAttackAKCertificateForAnotherEK"),
    "enroll state expiry": ("./postauth/tpm/enroll", "TestIssueChecks"),
    # strict policy and rules documents (internal/strictdoc)
    "strictdoc size bound": ("./internal/strictdoc", "TestDecode"),
    "strictdoc duplicate keys": ("./internal/strictdoc ./posture", "TestDecode|TestParsePolicyErrors"),
    "strictdoc folded keys": ("./internal/strictdoc ./posture", "TestDecode|TestParsePolicyErrors"),
    "strictdoc json depth": ("./internal/strictdoc", "TestDecode"),
    "strictdoc yaml depth": ("./internal/strictdoc", "TestDecode"),
    "strictdoc trailing data": ("./internal/strictdoc ./posture", "TestDecode|TestParsePolicyErrors"),
    "strictdoc second yaml document": ("./internal/strictdoc ./posture", "TestDecode|TestParsePolicyErrors"),
    # posture
    "posture log replay": ("./posture ./postauth ./postauth/softeat ./postauth/tpm", "TestVerify|TestEvidence|TestVerifierRejects|TestPosture"),
    # middleware
    "too early": ("./middleware", "TestTooEarly"),
    "max age": ("./middleware", "TestMaxAgeExpiry"),
    "posture hint": ("./middleware", "TestPostureHintChangeRechallenges"),
    "decoded path match": ("./middleware/...", "TestPatternMatching|TestGin"),
    "server attest global limit": ("./middleware", "TestServerAttestationLimited",
                                   ("ok = g.serverBudget.take(now, g.cfg.serverRate, g.cfg.serverBurst)", "ok = true || g.serverBudget.take(now, g.cfg.serverRate, g.cfg.serverBurst)")),
    "route posture policy": ("./middleware", "TestForbiddenToolDeniedThenAllowed|TestLyingPostureHintCannotPassOperationMode"),
    "route appraise hook": ("./middleware", "TestPolicyDenial"),
    "literal index host patterns": ("./middleware", "TestMatchExact"),
    "static prefix escapes": ("./middleware", "TestTabbedAndEscapedPatternsProtect"),
    "appraisal deadline": ("./middleware", "TestLatePassNeverRuns",
                           ("case <-ctx.Done():", "case <-make(chan struct{}):")),
    "operation authority": ("./middleware", "TestOperationBindsAuthority",
                            ("OperationDigest(r.Method, r.Host,", "OperationDigest(r.Method, \"\",")),
    "denial revokes verdict": ("./middleware", "TestDenialRevokesCachedVerdict"),
    "body content length": ("./middleware", "TestBodyLimits"),
    "body read length": ("./middleware", "TestBodyLimits"),
    "server attest connection limit": ("./middleware", "TestServerAttestationLimitedPerConnection",
                                       ("ok := st.serverBudget.take(now, serverConnRate, serverConnBurst)", "ok := true || st.serverBudget.take(now, serverConnRate, serverConnBurst)")),
    "fallback cache bound": ("./middleware", "TestFallbackCacheBounded",
                             ("for f.ll.Len() > f.max {", "for f.ll.Len() > f.max+1_000_000 {")),
    "fallback drops unattested": ("./middleware", "TestFallbackDropsUnattested"),
    # HTTP binding
    "header base64 alphabet": ("./internal/httpbind", "TestDecodeBytes"),
    "result size bound": ("./internal/httpbind", "TestResult"),
    # MCP adapter (middleware/mcpattest): classification of JSON-RPC bodies
    "mcp classification applies": ("./middleware/mcpattest", "TestToolCalls|TestUnattestedClientGetsJSONRPCError",
                                   ("len(c.rules) == 0", "true")),
    "mcp batch every message": ("./middleware/mcpattest", "TestBatch|TestClassify",
                                ("range msgs {", "range msgs[:min(len(msgs), 1)] {")),
    "mcp every matched rule": ("./middleware/mcpattest", "TestBatchAppliesEveryRule"),
    "mcp valid json": ("./middleware/mcpattest", "TestClassifyRefusesAmbiguous"),
    "mcp unreadable target": ("./middleware/mcpattest", "TestClassifyRefusesAmbiguous"),
    "mcp method is a string": ("./middleware/mcpattest", "TestClassifyRefusesAmbiguous"),
    "mcp duplicate keys": ("./middleware/mcpattest", "TestClassifyRefusesAmbiguous"),
    "mcp key case": ("./middleware/mcpattest", "TestClassifyRefusesAmbiguous"),
    "mcp body limit": ("./middleware/mcpattest", "TestBodyLimitsAndUnreadableBodies"),
    # scale-out: a coordinator shared by replicas (middleware/coordinate.go, limit.go)
    "coordinator down deny": ("./middleware ./middleware/redisstate", "TestOutOfSyncDenies|TestRedisKilledFailsClosedThenRecovers"),
    "unsynced verdict untrusted": ("./middleware ./middleware/redisstate", "TestOutOfSyncReattests|TestNeverSyncedAndClose|TestRedisKilledFailsClosedThenRecovers"),
    "resync drops verdicts": ("./middleware", "TestResyncDropsVerdictsCachedBefore"),
    "revoked cached verdict": ("./middleware ./middleware/redisstate", "TestRevocationDropsVerdictAndRefusesEvidence|TestReplicasRevokeOnOneOthersRefuse"),
    "revoked evidence refused": ("./middleware", "TestRevocationDropsVerdictAndRefusesEvidence|TestRevocationByEachIdentity"),
    "invalidated verdict": ("./middleware", "TestInvalidationFromAnotherReplica"),
    "posture invalidation": ("./middleware", "TestInvalidationFromAnotherReplica"),
    "shared policy on cached verdicts": ("./middleware ./middleware/redisstate", "TestPolicyDocumentAppliedNeverRolledBack|TestReplicasPolicyChange"),
    "shared policy on new evidence": ("./middleware", "TestPolicyDocumentAppliedNeverRolledBack",
                                      ("return appraiseDocument(ctx, d, rt, res)", "return nil")),
    "policy never rolls back": ("./middleware", "TestPolicyDocumentAppliedNeverRolledBack"),
    "posture change reaches other replicas": ("./middleware ./middleware/redisstate", "TestVerificationsAndDenialsArePublished|TestReplicasPostureInvalidation",
                                              ("co.publish(ev)", "_ = ev")),
    "denial reaches other replicas": ("./middleware ./middleware/redisstate", "TestVerificationsAndDenialsArePublished|TestReplicasDenialInvalidates",
                                      ("co.publish(ev)", "_ = ev")),
    "too many invalidations drop every verdict": ("./middleware", "TestTooManyInvalidationsDropEveryVerdict"),
    "revocation keeps the later expiry": ("./middleware", "TestRevocationKeepsLaterExpiry",
                                          ("!ok || e.Until.After(until)", "true || !ok || until.IsZero()")),
    "verify rate limit": ("./middleware ./middleware/redisstate", "TestVerifyRateLimit|TestReplicasRateLimit"),
    "server attest shared limit": ("./middleware", "TestServerAttestSharedLimit",
                                   ("ok = g.limits.allowServerAttest(r.Context(), r)", "ok = true || g.limits.allowServerAttest(r.Context(), r)")),
    # the Redis adapter (middleware/redisstate)
    "out of sync when the link fails": ("./middleware/redisstate", "TestStoreOutOfSyncWhenRedisDies|TestRedisKilledFailsClosedThenRecovers",
                                        ("s.setSynced(false)", "s.setSynced(true)")),
    "heartbeat detects a silent link": ("./middleware/redisstate", "TestStoreHeartbeatDetectsSilentLink"),
    "undecodable event resyncs": ("./middleware/redisstate", "TestStoreResyncsOnUndecodableMessage"),
    # remote verification: EAR passports (postauth/ear)
    "ear jws alg": ("./postauth/ear", "TestPassportVerifierRejects"),
    "ear signature": ("./postauth/ear", "TestPassportVerifierRejects|TestPassportAttacks",
                      ("ecdsa.Verify(k, digest[:], r, s)", "true || ecdsa.Verify(k, digest[:], r, s)")),
    "ear profile": ("./postauth/ear", "TestPassportVerifierRejects"),
    "ear max age": ("./postauth/ear", "TestPassportVerifierRejects|TestPassportAttacks"),
    "ear exp": ("./postauth/ear", "TestPassportVerifierRejects"),
    "ear hardware backed": ("./postauth/ear", "TestPassportHardwareBacked",
                            ("TierOf(v) != StatusAffirming", "TierOf(v) == StatusContraindicated")),
    "ear min status": ("./postauth/ear", "TestPassportVerifierRejects|TestBackgroundCheckVerdicts"),
    "ear trust vector": ("./postauth/ear", "TestPassportVerifierRejects|TestPassportPolicyViolations"),
    "passport binder": ("./postauth/ear", "TestPassportVerifierRejects"),
    "passport key attestation required": ("./postauth/ear", "TestPassportVerifierRejects"),
    "passport key attestation": ("./postauth/ear", "TestPassportVerifierRejects"),
    # remote verification: the background check (postauth/ear)
    "background local binding": ("./postauth/ear", "TestBackgroundCheckBrokenVerifierAffirmsWrongNonce|TestBackgroundCheckLocalChecksBeforeSending"),
    "background local key hash": ("./postauth/ear", "TestBackgroundCheckLocalChecksBeforeSending"),
    "background eat_nonce": ("./postauth/ear", "TestBackgroundCheckVerifierFailures"),
    "background late answer": ("./postauth/ear", "TestBackgroundCheckVerifierFailures"),
    "background session same origin": ("./postauth/ear", "TestSessionURL|TestBackgroundCheckVerifierFailures"),
    "background session nonce echo": ("./postauth/ear", "TestBackgroundCheckVerifierFailures",
                                      ("!equal(got, nonce)", "len(got) < 0")),
    "background circuit breaker": ("./postauth/ear", "TestCircuitBreaker|TestBreaker"),
    # the verifier service (verifier)
    "service max sessions": ("./verifier", "TestSessionLifetime"),
    "service session expiry": ("./verifier", "TestSessionLifetime|TestSessionExpiredBeforeEvidence"),
    "service one Evidence per session": ("./verifier", "TestSubmitEvidence"),
    "service nonce size": ("./verifier", "TestNewSession"),
    "service evidence only": ("./verifier", "TestServiceRefusesAttestationResultCMW"),
    "service eat_nonce": ("./verifier", "TestSubmitEvidence",
                          ("ear.EncodeNonce(nonce)", "ear.EncodeNonce(make([]byte, 32))")),
    "service key attestation": ("./verifier", "TestServiceAttestsOnlyTheKeyTheEvidenceNames",
                                ("subtle.ConstantTimeCompare(app.KeyHash, ch.KeyHash) == 1", "subtle.ConstantTimeCompare(app.KeyHash, ch.KeyHash) >= 0")),
    "service binder compare": ("./verifier", "TestServiceComparesReportedNonce"),
    "service posture replay": ("./verifier", "TestServiceReplaysPosture"),
    # client
    "attest allow-list": ("./transports", "TestEvidenceOnlyToAllowedServers",
                          ("mayAttest := t.mayAttest(req)", "mayAttest := t.responder != nil")),
    "critical requests": ("./transports", "TestCriticalRequestNotSentInClear",
                          ("critical := t.cfg.server != nil && req.URL != nil && t.cfg.server.require(req)", "critical := false")),
    # stream binding (raw TLS and QUIC)
    "frame size limit": ("./streams", "TestOversizedFrame|TestFrameLimits"),
    "stream ALPN": ("./streams", "TestALPNRequired"),
    "stream read gate": ("./streams", "TestUnverifiedDataHeld|TestAttackRelay"),
    "stream write gate": ("./streams", "TestNoDataToUnattestedPeer"),
    "refuse unverified data": ("./streams", "TestUnverifiedDataRefused"),
    "stream flow control": ("./streams", "TestFlowControl"),
    "request queue bound": ("./streams", "TestRequestFlood"),
    "answer deadline": ("./streams", "TestLateAnswer|TestPeerStopsAnswering"),
    "stream verdict failure closes": ("./streams", "TestAttackRelay|TestAttackReplay|TestRefusalClosesTheConnection|TestNoDataToUnattestedPeer"),
    "stream posture policy": ("./streams", "TestPostureChangeForcesReattestation"),
    "posture notice suspends": ("./streams", "TestPostureNoticeSuspends",
                                ("s.suspended = true", "s.suspended = false")),
    "posture notice re-attests": ("./streams", "TestPostureChangeForcesReattestation|TestPostureNoticeSuspends",
                                  ("s.exchange(TriggerPosture)", "_ = TriggerPosture")),
    "quic 0-RTT refused": ("./streams/quicstream", "TestZeroRTTRefused"),
    "quic refuse unverified streams": ("./streams/quicstream", "TestQUICUnverifiedStreamRefused"),
    "quic open gate": ("./streams/quicstream", "TestQUICNoStreamToUnattestedPeer"),
    "quic accept gate": ("./streams/quicstream", "TestQUICUnverifiedStreamHeld"),
    "quic stream read gate": ("./streams/quicstream", "TestQUICPostureNoticeSuspends"),
    "quic stream write gate": ("./streams/quicstream", "TestQUICPostureNoticeSuspends"),
}

MARKER = re.compile(r"\s*// mutation: (.+?)\s*$")


class ToolError(Exception):
    pass


def find_markers():
    """Returns {name: (path, line index)} for every marker in the module."""
    out = {}
    for root, dirs, files in os.walk("."):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "testdata"]
        for f in files:
            if not f.endswith(".go") or f.endswith("_test.go"):
                continue
            path = os.path.join(root, f)
            for i, line in enumerate(open(path, encoding="utf-8").read().split("\n")):
                m = MARKER.search(line)
                if m:
                    if m.group(1) in out:
                        raise ToolError("marker %r twice: %s and %s" % (m.group(1), out[m.group(1)][0], path))
                    out[m.group(1)] = (path, i)
    return out


def split_top(s, sep):
    """Splits s at the last top-level (outside brackets and strings) sep."""
    depth, quote, last = 0, None, -1
    i = 0
    while i < len(s):
        c = s[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and s.startswith(sep, i):
            last = i
        i += 1
    return (s[:last], s[last + len(sep):]) if last >= 0 else (None, s)


def mutate_line(line, name, replacement):
    code = MARKER.sub("", line)
    if replacement:
        old, new = replacement
        if code.count(old) != 1:
            raise ToolError("%s: replacement text not found once on the marked line: %r" % (name, code.strip()))
        return code.replace(old, new)
    m = re.match(r"^(\s*)(\}?\s*(?:else )?if )(.*)(\s*\{)\s*$", code)
    if m:
        init, cond = split_top(m.group(3), "; ")
        head = m.group(1) + m.group(2) + (init + "; " if init is not None else "")
        return head + "false && (" + cond.strip() + ")" + m.group(4)
    m = re.match(r"^(\s*case )(.*):\s*$", code)
    if m:
        return m.group(1) + "false && (" + m.group(2) + "):"
    raise ToolError("%s: the marked line is not an if or case; give a replacement: %r" % (name, code.strip()))


def run(cmd, timeout=600, cwd=None):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def build_failed(r):
    """Whether go test could not build a package (test files included)."""
    if "[build failed]" in r.stdout or "[setup failed]" in r.stdout or "build failed" in r.stderr:
        return True
    for line in r.stdout.splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("Action") == "build-fail" or ev.get("FailedBuild"):
            return True
    return False


def failed_tests(output, wanted):
    """Names of failed tests (from go test -json) that match wanted."""
    pat = re.compile(r"^(%s)(/|$)" % wanted)
    failed = set()
    for line in output.splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("Action") == "fail" and ev.get("Test") and pat.match(ev["Test"]):
            failed.add("%s.%s" % (ev.get("Package", "").rsplit("/", 1)[-1], ev["Test"]))
    return sorted(failed)


def mutate_one(name, markers, workdir):
    """Mutates the marked line of name in workdir, runs its tests there and
    restores the file. Returns (name, killers or None if it survived)."""
    entry = MUTATIONS[name]
    pkgs, tests = entry[0], entry[1]
    replacement = entry[2] if len(entry) > 2 else None
    rel, idx = markers[name]
    path = os.path.join(workdir, rel)
    src = open(path, encoding="utf-8").read()
    lines = src.split("\n")
    lines[idx] = mutate_line(lines[idx], name, replacement)
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
        # -vet=off: vet is not a test (the build check below still runs);
        # -trimpath: the build cache is shared by the copies.
        r = run("go test -count=1 -vet=off -trimpath -json -run '^(%s)$' %s" % (tests, pkgs), cwd=workdir)
        if build_failed(r):
            raise ToolError("%s: the mutation does not compile (an error of the tool, not a kill):\n%s" % (name, (r.stdout + r.stderr)[-2000:]))
        killers = failed_tests(r.stdout, tests)
        if r.returncode != 0 and killers:
            return name, killers
        if r.returncode != 0:
            raise ToolError("%s: go test failed without a named test failing:\n%s" % (name, (r.stdout + r.stderr)[-2000:]))
        return name, None
    finally:
        with open(path, "w", encoding="utf-8") as f:
            f.write(src)


def main(filters, jobs=None):
    markers = find_markers()
    problems = []
    for name in markers:
        if name not in MUTATIONS:
            problems.append("marker %r has no entry in tools/mutation-check.py" % name)
    for name in MUTATIONS:
        if name not in markers:
            problems.append("entry %r has no marker in the code" % name)
    if problems:
        raise ToolError("\n".join(problems))
    selected = [n for n in MUTATIONS if not filters or any(f in n for f in filters)]
    if jobs is None:
        jobs = int(os.environ.get("MUTATION_JOBS", "0")) or min(4, os.cpu_count() or 1)
    jobs = max(1, min(jobs, len(selected)))
    # Each worker mutates its own copy of the module (the build cache is
    # shared), so that mutations run side by side and the working tree is
    # never touched.
    tmp = tempfile.mkdtemp(prefix="mutation-check-")
    try:
        dirs = queue.Queue()
        for i in range(jobs):
            d = os.path.join(tmp, str(i))
            shutil.copytree(".", d, ignore=shutil.ignore_patterns(".git"))
            dirs.put(d)

        def work(name):
            d = dirs.get()
            try:
                return mutate_one(name, markers, d)
            finally:
                dirs.put(d)

        survived = 0
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(work, n) for n in selected]
            try:
                for fut in futures:  # in the table's order
                    name, killers = fut.result()
                    if killers:
                        print("KILLED   %-32s by %s" % (name, ", ".join(killers[:3])), flush=True)
                    else:
                        print("SURVIVED %-32s (%s in %s all pass)" % (name, MUTATIONS[name][1], MUTATIONS[name][0]), flush=True)
                        survived += 1
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d mutations, %d killed, %d survived" % (len(selected), len(selected) - survived, survived))
    return 1 if survived else 0


def self_test():
    """The tool must refuse a mutation that does not compile."""
    MUTATIONS["role check"] = ("./postauth", "TestAttackReflection", ("responder != role", "responder != notDeclaredAnywhere"))
    try:
        main(["role check"], jobs=1)
    except ToolError as e:
        if "does not compile" in str(e):
            print("self-test: a mutation that does not compile is an error of the tool: ok")
            return 0
        raise
    print("self-test: FAILED: a non-compiling mutation was not reported as an error", file=sys.stderr)
    return 1


if __name__ == "__main__":
    try:
        if sys.argv[1:] == ["--self-test"]:
            sys.exit(self_test())
        sys.exit(main(sys.argv[1:]))
    except ToolError as e:
        print("mutation-check: error: %s" % e, file=sys.stderr)
        sys.exit(2)
