package ear_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/ear"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
	"github.com/reattest/reattest/verifier"
)

// exchange runs one attested Exported Authenticator exchange over a real
// TLS 1.3 connection: the server asks, the client answers with att's
// Evidence (its TLS client key is the authenticator key), the server
// verifies with v through a postauth.RelyingParty (which compares the
// binder and key hash and replays the posture log itself).
func exchange(tb testing.TB, ep *postauthtest.Endpoints, att postauth.Attester, v postauth.Verifier) (*postauth.Result, error) {
	tb.Helper()
	ctx := context.Background()
	ccs, scs := ep.Client.ConnectionState(), ep.Server.ConnectionState()
	cch, err := postauth.NewChannel(&ccs)
	if err != nil {
		tb.Fatal(err)
	}
	sch, err := postauth.NewChannel(&scs)
	if err != nil {
		tb.Fatal(err)
	}
	id, err := postauth.IdentityFromTLS(&ep.ClientCert)
	if err != nil {
		tb.Fatal(err)
	}
	rp := postauthtest.RelyingParty(tb, v)
	reqr, err := rp.NewRequester(sch, postauth.RoleClient)
	if err != nil {
		tb.Fatal(err)
	}
	binding := []byte("POST /pay")
	req, err := reqr.NewRequest(binding)
	if err != nil {
		tb.Fatal(err)
	}
	onWire, err := req.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	got, err := postauth.ParseRequest(onWire)
	if err != nil {
		tb.Fatal(err)
	}
	r, err := postauth.NewResponder(id, att)
	if err != nil {
		tb.Fatal(err)
	}
	answer, err := r.Respond(ctx, cch, postauth.RoleClient, got)
	if err != nil {
		return nil, err
	}
	return reqr.Verify(ctx, answer, binding)
}

// clientKey is the authenticator key of the exchange's client.
func clientKey(ep *postauthtest.Endpoints) crypto.PublicKey {
	return ep.ClientCert.Leaf.PublicKey
}

// world is a running verifier service (real HTTP on loopback) that
// appraises software EAT Evidence, with the agent's attester.
type world struct {
	signKey *ecdsa.PrivateKey
	svc     *verifier.Service
	srv     *verifier.Server
	att     *softeat.Attester
	kid     []byte            // att's attestation key id (softeat.KeyID)
	local   *softeat.Verifier // the same verifier the service uses
	tracker *posture.Tracker
}

// newWorld starts a service. Extra service options come last.
func newWorld(tb testing.TB, opts ...verifier.Option) *world {
	tb.Helper()
	w := &world{}
	var err error
	if w.tracker, err = posture.NewTracker(); err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	if err := w.tracker.SetModel(ctx, posture.Model{Name: "assistant", Version: "1", Digest: posture.DigestOf([]byte("weights"))}); err != nil {
		tb.Fatal(err)
	}
	if err := w.tracker.EnableTool(ctx, posture.Tool{Name: "search", Digest: posture.DigestOf([]byte("search v1"))}); err != nil {
		tb.Fatal(err)
	}
	k := postauthtest.NewSoftwareKey(tb)
	w.att, w.local = k.Attester(tb, softeat.WithPosture(w.tracker)), k.Verifier(tb)
	if w.kid, err = softeat.KeyID(k.Key.Public()); err != nil {
		tb.Fatal(err)
	}
	if w.signKey, err = verifier.GenerateKey(); err != nil {
		tb.Fatal(err)
	}
	all := append([]verifier.Option{verifier.SoftEAT(w.local)}, opts...)
	if w.svc, err = verifier.NewService(w.signKey, all...); err != nil {
		tb.Fatal(err)
	}
	w.srv = start(tb, w.svc)
	return w
}

// start serves h on loopback until the test ends.
func start(tb testing.TB, h http.Handler) *verifier.Server {
	tb.Helper()
	srv, err := verifier.Start(nil, h, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	return srv
}

// passport returns a passport Attester for ep's client key.
func (w *world) passport(tb testing.TB, ep *postauthtest.Endpoints, opts ...ear.AttesterOption) *ear.Attester {
	tb.Helper()
	a, err := ear.NewAttester(w.att, w.srv.URL(), clientKey(ep), opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { a.Close() })
	return a
}

// passportVerifier trusts the service's key.
func (w *world) passportVerifier(tb testing.TB, opts ...ear.VerifierOption) *ear.Verifier {
	tb.Helper()
	v, err := ear.NewVerifier([]crypto.PublicKey{w.svc.PublicKey()}, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// remote is a background-check verifier against the service, with the
// software EAT local binding check.
func (w *world) remote(tb testing.TB, opts ...ear.RemoteOption) *ear.RemoteVerifier {
	tb.Helper()
	return remoteAt(tb, w.srv.URL(), append([]ear.RemoteOption{ear.WithVerifierKeys(w.svc.PublicKey())}, opts...)...)
}

func remoteAt(tb testing.TB, url string, opts ...ear.RemoteOption) *ear.RemoteVerifier {
	tb.Helper()
	v, err := ear.NewRemoteVerifier(url, append([]ear.RemoteOption{ear.WithLocalBinding(softeat.MediaType, softeat.Binding)}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { v.Close() })
	return v
}

// replaying is an attester that answers every challenge with the first
// Evidence it ever got from inner: an attacker replaying Evidence (or a
// passport) of another connection.
type replaying struct {
	inner postauth.Attester
	mu    sync.Mutex
	ev    *postauth.Evidence
}

func (r *replaying) Attest(ctx context.Context, ch postauth.Challenge) (postauth.Evidence, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ev == nil {
		ev, err := r.inner.Attest(ctx, ch)
		if err != nil {
			return ev, err
		}
		r.ev = &ev
	}
	return *r.ev, nil
}

// nonceBlindVerifier is a DELIBERATELY BROKEN format verifier: it ignores
// the session nonce, checks the Evidence against its own nonce, and
// reports the session nonce as the one it found, as Veraison's
// TPM_ENACTTRUST scheme did in services v0.0.2506. A service that uses it
// affirms Evidence over any nonce (the service's own comparison of the
// reported nonce cannot see the lie).
type nonceBlindVerifier struct{ inner *softeat.Verifier }

func (b nonceBlindVerifier) Verify(ctx context.Context, ch postauth.Challenge, ev postauth.Evidence) (*postauth.Appraisal, error) {
	own, _, err := softeat.Binding(ch, ev)
	if err != nil {
		return nil, err
	}
	session := ch.Binder
	ch.Binder = own
	app, err := b.inner.Verify(ctx, ch, ev)
	if err != nil {
		return nil, err
	}
	app.Nonce = session
	return app, nil
}

// counting counts the requests a handler serves.
type counting struct {
	h http.Handler
	n atomic.Int64
}

func (c *counting) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.n.Add(1)
	c.h.ServeHTTP(w, r)
}

// spkiHash is SHA-256 over a key's SubjectPublicKeyInfo.
func spkiHash(tb testing.TB, pub crypto.PublicKey) []byte {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return sum[:]
}
