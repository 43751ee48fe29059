package streams

import (
	"bytes"
	"crypto/tls"
	"testing"
	"time"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
)

// discard is a FrameWriter that keeps nothing.
type discard struct{}

func (discard) WriteFrame(FrameType, []byte) error { return nil }

// FuzzSessionFrames: any sequence of frames from a peer ends in a running
// or closed session, never a panic or a deadlock; a session never lets
// data through on frames alone (no valid answer can be forged here).
func FuzzSessionFrames(f *testing.F) {
	key := postauthtest.NewSoftwareKey(f)
	rp := postauthtest.RelyingParty(f, key.Verifier(f), postauth.WithKeyTrust(postauth.KeyTrustAttestedKeyOnly))
	id, err := postauth.SelfSignedIdentity(postauthtest.NewKey(f), "fuzz", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	att := key.Attester(f)
	export := func(label string, context []byte, n int) ([]byte, error) { return make([]byte, n), nil }
	// A request the fuzzed endpoint (a client) answers: a CertificateRequest.
	ch, _ := postauth.NewChannelFromExporter(tls.TLS_AES_128_GCM_SHA256, export)
	r, _ := rp.NewRequester(ch, postauth.RoleClient)
	q, _ := r.NewRequest(nil)
	req, _ := q.Marshal()
	for _, seed := range [][]byte{
		mustFrame(FrameReady, nil),
		append(mustFrame(FrameRequest, req), mustFrame(FrameReady, nil)...),
		mustFrame(FramePosture, bytes.Repeat([]byte{1}, 32)),
		mustFrame(FrameAuthenticator, []byte{20, 0, 0, 32}),
		mustFrame(FrameClose, AppendClose(nil, PolicyDenied, postauth.ReasonPostureDenied)),
		mustFrame(FrameData, []byte("x")),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		ch, err := postauth.NewChannelFromExporter(tls.TLS_AES_128_GCM_SHA256, export)
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewSession(ch, postauth.RoleClient, discard{}, func(error) {},
			WithRelyingParty(rp), WithAttester(id, att), WithAnswerDeadline(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		defer s.Close()
		r := bytes.NewReader(in)
		for {
			typ, p, err := ReadFrame(r, nil)
			if err != nil {
				break
			}
			if s.HandleFrame(typ, p) != nil {
				break
			}
		}
		if s.CanDeliver() || s.Result() != nil {
			t.Fatal("a verdict from frames no attester made")
		}
	})
}
