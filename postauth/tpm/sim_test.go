//go:build cgo

// The TPM simulator (go-tpm-tools, Microsoft reference code) needs cgo;
// without it the tests in files with this build tag do not run.

package tpm_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"os"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/simulator"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/tpm"
)

// The simulator is a process-wide singleton: a second OpenSimulator blocks
// until the first is closed. Every test of this binary shares one, and no
// test runs in parallel with another (none calls t.Parallel).
var sim struct {
	once sync.Once
	raw  transport.TPMCloser
	dev  *tpm.SharedTPM
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sim.raw != nil {
		sim.raw.Close()
	}
	os.Exit(code)
}

// simTPM returns the shared simulator, behind one *tpm.SharedTPM.
func simTPM(tb testing.TB) *tpm.SharedTPM {
	tb.Helper()
	sim.once.Do(func() {
		sim.raw, sim.err = simulator.OpenSimulator()
		if sim.err == nil {
			sim.dev = tpm.Share(sim.raw)
		}
	})
	if sim.err != nil {
		tb.Fatalf("opening the TPM simulator: %v", sim.err)
	}
	return sim.dev
}

// newAttester returns an Attester on the simulator whose AK is flushed when
// the test ends (the simulator holds only three transient objects).
func newAttester(tb testing.TB, opts ...tpm.AttesterOption) *tpm.Attester {
	tb.Helper()
	a, err := tpm.NewAttester(context.Background(), simTPM(tb), opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := a.Close(); err != nil {
			tb.Error(err)
		}
	})
	return a
}

func newVerifier(tb testing.TB, aks [][]byte, opts ...tpm.VerifierOption) *tpm.Verifier {
	tb.Helper()
	v, err := tpm.NewVerifier(append([]tpm.VerifierOption{tpm.WithPinnedAKs(aks...), tpm.AllowSoftwareKey()}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// challenge returns a Challenge with a random binder of h's size.
func challenge(h crypto.Hash) postauth.Challenge {
	b := make([]byte, h.Size())
	rand.Read(b)
	kh := h.New()
	kh.Write([]byte("spki"))
	return postauth.Challenge{Binder: b, KeyHash: kh.Sum(nil), Hash: h, Role: postauth.RoleClient}
}

// tlsEnv is one real mutual TLS 1.3 connection on loopback: the server's
// Requester (of a RelyingParty with the given Verifier) asks, the client
// answers with TPM Evidence.
type tlsEnv struct {
	t        testing.TB
	clientCh *postauth.Channel
	clientID *postauth.Identity
	reqr     *postauth.Requester
}

func newTLSEnv(tb testing.TB, v postauth.Verifier) *tlsEnv {
	tb.Helper()
	return newTLSEnvKey(tb, v, nil)
}

// newTLSEnvKey is newTLSEnv with the client's TLS certificate (and so its
// authenticator key, same-peer key trust) for key: a TPM-resident key
// signs the TLS 1.3 CertificateVerify of the handshake and the Exported
// Authenticators. A nil key is a fresh software key.
func newTLSEnvKey(tb testing.TB, v postauth.Verifier, key crypto.Signer, rpOpts ...postauth.Option) *tlsEnv {
	tb.Helper()
	pki := postauthtest.New(tb)
	var issue []postauthtest.IssueOption
	if key != nil {
		issue = append(issue, postauthtest.WithKey(key))
	}
	cc := pki.Issue(tb, "agent", issue...)
	client, server := postauthtest.Pair(tb, pki.ClientConfig(&cc), pki.ServerConfig(pki.Issue(tb, "localhost", postauthtest.ServerAuth())))
	ep := &postauthtest.Endpoints{Client: client, Server: server, ClientCert: cc}
	ccs, scs := ep.Client.ConnectionState(), ep.Server.ConnectionState()
	e := &tlsEnv{t: tb}
	var err error
	if e.clientCh, err = postauth.NewChannel(&ccs); err != nil {
		tb.Fatal(err)
	}
	serverCh, err := postauth.NewChannel(&scs)
	if err != nil {
		tb.Fatal(err)
	}
	if e.clientID, err = postauth.IdentityFromTLS(&ep.ClientCert); err != nil {
		tb.Fatal(err)
	}
	// Without WithFormats the RelyingParty accepts the media types the
	// Verifier declares (tpm.MediaType for a *tpm.Verifier).
	rp, err := postauth.NewRelyingParty(v, rpOpts...)
	if err != nil {
		tb.Fatal(err)
	}
	if e.reqr, err = rp.NewRequester(serverCh, postauth.RoleClient); err != nil {
		tb.Fatal(err)
	}
	return e
}

// respond makes the client answer req with att's Evidence.
func (e *tlsEnv) respond(att postauth.Attester, req *postauth.Request) []byte {
	e.t.Helper()
	r, err := postauth.NewResponder(e.clientID, att)
	if err != nil {
		e.t.Fatal(err)
	}
	raw, err := r.Respond(context.Background(), e.clientCh, postauth.RoleClient, req)
	if err != nil {
		e.t.Fatalf("Respond: %v", err)
	}
	return raw
}

// exchange runs one attestation: a request from the server, the client's
// answer with att's Evidence, and the server's verification.
func (e *tlsEnv) exchange(att postauth.Attester) (*postauth.Result, error) {
	e.t.Helper()
	req, err := e.reqr.NewRequest(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.reqr.Verify(context.Background(), e.respond(att, req), nil)
}

// challengeFor returns the Challenge the client must bind Evidence to for
// a fresh request on e.
func (e *tlsEnv) challengeFor(req *postauth.Request) postauth.Challenge {
	e.t.Helper()
	spki := e.clientID.SPKI()
	b, err := e.clientCh.Binder(spki, req.Context)
	if err != nil {
		e.t.Fatal(err)
	}
	return postauth.Challenge{Binder: b, KeyHash: e.clientCh.KeyHash(spki), Hash: e.clientCh.Hash(), Context: req.Context, Role: postauth.RoleClient}
}

// fixedAttester returns the same Evidence whatever the Challenge (a relay).
type fixedAttester struct{ ev postauth.Evidence }

func (f fixedAttester) Attest(context.Context, postauth.Challenge) (postauth.Evidence, error) {
	return f.ev, nil
}
