package redisstate_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/middleware/redisstate"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/posture"
	"github.com/reattest/reattest/transports"
)

// redisAddr is the redis-server of the integration tests (.ci/run starts
// one); the test skips without it.
func redisAddr(t testing.TB) string {
	t.Helper()
	addr := os.Getenv("REATTEST_REDIS")
	if addr == "" {
		t.Skip("REATTEST_REDIS not set: run .ci/run, or start redis-server on a free port and set REATTEST_REDIS=127.0.0.1:PORT (see CONTRIBUTING.md)")
	}
	return addr
}

// namespace is a fresh namespace, so tests sharing a redis-server never
// see each other's keys.
func namespace(t testing.TB) string {
	var b [4]byte
	rand.Read(b[:])
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	if len(name) > 40 {
		name = name[:40]
	}
	return name + "-" + hex.EncodeToString(b[:])
}

func newClient(t testing.TB, addr string) redis.UniversalClient {
	t.Helper()
	c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}, MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

// newStore returns a Store of namespace ns on its own client (as a
// separate replica process would have).
func newStore(t testing.TB, addr, ns string, opts ...redisstate.Option) *redisstate.Store {
	t.Helper()
	all := append([]redisstate.Option{redisstate.WithNamespace(ns),
		redisstate.WithBackoff(20*time.Millisecond, 200*time.Millisecond), redisstate.WithTimeout(time.Second)}, opts...)
	s, err := redisstate.New(newClient(t, addr), all...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// fleet is n gateway replicas (real TLS 1.3 servers on loopback, each with
// its Guard and its Store on one Redis) and one agent that attests to all.
type fleet struct {
	t          *testing.T
	addr, ns   string
	pki        *postauthtest.PKI
	serverCert tls.Certificate
	clientCert tls.Certificate
	attester   *postauthtest.CountingAttester
	verifier   postauth.Verifier
	tracker    *posture.Tracker
	opts       []middleware.Option
	replicas   []*replica
}

type replica struct {
	guard     *middleware.Guard
	store     *redisstate.Store
	srv       *httptest.Server
	calls     atomic.Int64
	mu        sync.Mutex
	decisions []middleware.Decision
}

// Routes of every replica: PUT /config (connection mode), POST /pay
// (operation mode, posture policy: no shell tool).
const noShell = `{"tools": {"deny": ["shell"]}}`

func newFleet(t *testing.T, addr string, n int, opts ...middleware.Option) *fleet {
	t.Helper()
	f := &fleet{t: t, addr: addr, ns: namespace(t), pki: postauthtest.New(t)}
	f.serverCert = f.pki.Issue(t, "localhost", postauthtest.ServerAuth())
	f.clientCert = f.pki.Issue(t, "agent-7")
	key := postauthtest.NewSoftwareKey(t)
	var err error
	if f.tracker, err = posture.NewTracker(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	f.tracker.SetModel(ctx, posture.Model{Name: "assistant", Version: "1", Digest: posture.DigestOf([]byte("weights"))})
	f.tracker.EnableTool(ctx, posture.Tool{Name: "search", Version: "1", Digest: posture.DigestOf([]byte("search"))})
	f.attester = &postauthtest.CountingAttester{Inner: key.Attester(t, softeat.WithPosture(f.tracker))}
	f.verifier = key.Verifier(t)
	pol, err := posture.ParsePolicy([]byte(noShell), "json")
	if err != nil {
		t.Fatal(err)
	}
	f.opts = append([]middleware.Option{
		middleware.WithRoute("PUT /config", middleware.Route{MaxAge: time.Hour}),
		middleware.WithRoute("POST /pay", middleware.Route{Mode: middleware.ModeOperation, Posture: pol}),
	}, opts...)
	for range n {
		f.add()
	}
	return f
}

// add starts one more replica and waits until it is in sync.
func (f *fleet) add(opts ...middleware.Option) *replica {
	t := f.t
	t.Helper()
	r := &replica{store: newStore(t, f.addr, f.ns)}
	all := append(append([]middleware.Option{middleware.WithCoordinator(r.store),
		middleware.WithObserver(func(_ context.Context, d middleware.Decision) {
			r.mu.Lock()
			r.decisions = append(r.decisions, d)
			r.mu.Unlock()
		})}, f.opts...), opts...)
	var err error
	if r.guard, err = middleware.New(f.verifier, all...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.guard.Close() })
	r.srv = httptest.NewUnstartedServer(r.guard.Middleware(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.calls.Add(1)
		io.Copy(io.Discard, req.Body)
		fmt.Fprint(w, "ok")
	})))
	r.srv.EnableHTTP2 = true
	r.srv.TLS = f.pki.ServerConfig(f.serverCert)
	middleware.ConfigureServer(r.srv.Config)
	r.srv.StartTLS()
	t.Cleanup(r.srv.Close)
	waitFor(t, "replica in sync", r.guard.Synced)
	f.replicas = append(f.replicas, r)
	return r
}

// client is the agent's HTTP client: it attests to every replica (all on
// 127.0.0.1) and sends no posture hint (only the replicas can tell each
// other that its posture changed).
func (f *fleet) client() *http.Client {
	f.t.Helper()
	id, err := postauth.IdentityFromTLS(&f.clientCert)
	if err != nil {
		f.t.Fatal(err)
	}
	p := new(http.Protocols)
	p.SetHTTP2(true)
	tr, err := transports.NewTransport(&http.Transport{TLSClientConfig: f.pki.ClientConfig(&f.clientCert), Protocols: p},
		transports.WithAttester(id, f.attester), transports.WithAttestTo("127.0.0.1"))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { tr.Close() })
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// do sends a request to replica i and returns the status and the
// problem's reason.
func (f *fleet) do(c *http.Client, i int, method, path string) (int, postauth.Reason) {
	f.t.Helper()
	req, _ := http.NewRequest(method, f.replicas[i].srv.URL+path, strings.NewReader("body"))
	resp, err := c.Do(req)
	if err != nil {
		f.t.Fatalf("replica %d: %s %s: %v", i, method, path, err)
	}
	defer resp.Body.Close()
	var p middleware.Problem
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &p)
	return resp.StatusCode, p.Reason
}

// keyIdentity is the agent's key identity (SHA-256 form).
func (f *fleet) keyIdentity() middleware.Identity {
	leaf, err := x509.ParseCertificate(f.clientCert.Certificate[0])
	if err != nil {
		f.t.Fatal(err)
	}
	return middleware.KeyIdentities(leaf.RawSubjectPublicKeyInfo)[0]
}

func (r *replica) reasons() []postauth.Reason {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []postauth.Reason
	for _, d := range r.decisions {
		out = append(out, d.Reason)
	}
	return out
}

// waitFor polls cond for up to 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// spy is a Watcher that records what a Store delivers.
type spy struct {
	mu     sync.Mutex
	events []middleware.Event
	synced bool
	flips  int
}

func (s *spy) Apply(e middleware.Event) {
	s.mu.Lock()
	s.events = append(s.events, e)
	s.mu.Unlock()
}

func (s *spy) Synced(ok bool) {
	s.mu.Lock()
	if ok != s.synced {
		s.flips++
	}
	s.synced = ok
	s.mu.Unlock()
}

func (s *spy) isSynced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.synced
}

func (s *spy) has(match func(middleware.Event) bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.events {
		if match(e) {
			return true
		}
	}
	return false
}

// delivered waits until st has delivered an event matching match to its
// watchers (a spy watching st sees it, and the delivery is complete).
func delivered(t testing.TB, st *redisstate.Store, sp *spy, what string, match func(middleware.Event) bool) {
	t.Helper()
	waitFor(t, what, func() bool { return sp.has(match) })
	st.Stats() // waits for the delivery to every watcher to end
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }

// quiet silences go-redis's own log (dial errors while a test has Redis
// down on purpose).
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	redis.SetLogger(quiet{})
	os.Exit(m.Run())
}
