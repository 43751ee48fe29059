package main

// The size of the Attestation header per Evidence format: what a client
// sends on every attested request, and what HTTP/2 and TLS buffers may keep
// after it.

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"

	"github.com/reattest/reattest/internal/httpbind"
	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
)

// evidenceFormat is one Evidence format to size: an attester and the
// verifier that accepts its Evidence.
type evidenceFormat struct {
	name     string
	attester postauth.Attester
	verifier postauth.Verifier
	mediaTyp string
	err      error // the format cannot be measured here
}

// headerSize breaks one Attestation header down.
type headerSize struct {
	format string
	err    error // the format could not be measured (the other fields are zero)
	// value is the header value as sent (RFC 9651 byte sequence, base64).
	value int
	// hpack is the HPACK dynamic table size of the field (RFC 7541
	// section 4.1: name + value + 32); a Go encoder indexes it when it is
	// at most the table size (4096 by default).
	hpack int
	// authenticator is the Exported Authenticator (Certificate +
	// CertificateVerify + Finished), in bytes.
	authenticator int
	certs         int // certificates in the Certificate message
	certBytes     int // their DER, without extensions
	extBytes      int // certificate entry extensions (the CMW)
	evidence      int // the Evidence value the attester returned
	signature     int // CertificateVerify signature
	finished      int
}

// hpackOverhead is RFC 7541's per-entry overhead.
const hpackOverhead = 32

// recordingAttester remembers the size of the last Evidence it made.
type recordingAttester struct {
	inner postauth.Attester
	mu    sync.Mutex
	last  int
}

func (a *recordingAttester) Attest(ctx context.Context, ch postauth.Challenge) (postauth.Evidence, error) {
	ev, err := a.inner.Attest(ctx, ch)
	a.mu.Lock()
	a.last = len(ev.Value)
	a.mu.Unlock()
	return ev, err
}

// attestationHeaderSizes answers one connection-mode request per format on
// a real TLS 1.3 connection (the client certificate of cert is the
// authenticator's identity), checks that the answer verifies, and breaks
// the resulting Attestation header down.
func attestationHeaderSizes(tb postauthtest.TB, pki *postauthtest.PKI, client, server tls.Certificate, formats []evidenceFormat) []headerSize {
	tb.Helper()
	c, s := postauthtest.Pair(tb, pki.ClientConfig(&client), pki.ServerConfig(server))
	ccs, scs := c.ConnectionState(), s.ConnectionState()
	var out []headerSize
	for _, f := range formats {
		hs, err := headerSize{}, f.err
		if err == nil {
			hs, err = attestationHeaderSize(&ccs, &scs, client, f)
		}
		if err != nil {
			hs = headerSize{err: err}
		}
		hs.format = f.name
		out = append(out, hs)
	}
	return out
}

func attestationHeaderSize(ccs, scs *tls.ConnectionState, client tls.Certificate, f evidenceFormat) (headerSize, error) {
	ctx := context.Background()
	clientCh, err := postauth.NewChannel(ccs)
	if err != nil {
		return headerSize{}, err
	}
	serverCh, err := postauth.NewChannel(scs)
	if err != nil {
		return headerSize{}, err
	}
	id, err := postauth.IdentityFromTLS(&client)
	if err != nil {
		return headerSize{}, err
	}
	rp, err := postauth.NewRelyingParty(f.verifier, postauth.WithFormats(f.mediaTyp))
	if err != nil {
		return headerSize{}, err
	}
	reqr, err := rp.NewRequester(serverCh, postauth.RoleClient)
	if err != nil {
		return headerSize{}, err
	}
	rec := &recordingAttester{inner: f.attester}
	responder, err := postauth.NewResponder(id, rec)
	if err != nil {
		return headerSize{}, err
	}
	req, err := reqr.NewRequest(nil)
	if err != nil {
		return headerSize{}, err
	}
	raw, err := responder.Respond(ctx, clientCh, postauth.RoleClient, req)
	if err != nil {
		return headerSize{}, err
	}
	if _, err := reqr.Verify(ctx, raw, nil); err != nil {
		return headerSize{}, fmt.Errorf("the answer does not verify: %w", err)
	}
	a, err := postauth.ParseAuthenticator(raw)
	if err != nil {
		return headerSize{}, err
	}
	v := httpbind.EncodeBytes(raw)
	hs := headerSize{
		value:         len(v),
		hpack:         len(middleware.HeaderAttestation) + len(v) + hpackOverhead,
		authenticator: len(raw),
		certs:         len(a.Certificates),
		evidence:      rec.last,
		signature:     len(a.Signature),
		finished:      len(a.Finished),
	}
	for _, ce := range a.Certificates {
		hs.certBytes += len(ce.Data)
		for _, x := range ce.Extensions {
			hs.extBytes += 4 + len(x.Data)
		}
	}
	return hs, nil
}

// evidenceFormats returns the formats available to this program: software
// EAT always, the TPM quote when the TPM simulator is linked (cgo). The
// cleanup releases what they hold.
func (e *env) evidenceFormats() ([]evidenceFormat, func()) {
	e.tb.Helper()
	formats := []evidenceFormat{softwareFormat(e.tb)}
	cleanup := func() {}
	if f, done, err := tpmFormat(); err != nil {
		formats = append(formats, evidenceFormat{name: tpmFormatName, err: err})
	} else {
		formats = append(formats, f)
		cleanup = done
	}
	return formats, cleanup
}

const tpmFormatName = "TPM 2.0 quote (postauth/tpm, simulator)"

// softwareFormat is software EAT with a fresh key.
func softwareFormat(tb postauthtest.TB) evidenceFormat {
	att, ver := postauthtest.Software(tb)
	return evidenceFormat{name: "software EAT (postauth/softeat)", attester: att, verifier: ver, mediaTyp: softeat.MediaType}
}
