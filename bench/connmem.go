package main

// End-to-end memory per held connection: the server's live heap with N
// real TLS 1.3 + HTTP/2 connections held open on loopback, for
// connections that were never attested (one plain request), connections
// that sent one plain request with an extra header as large as the
// Attestation header, and connections attested in connection mode (401,
// attest, retry; the verdict stays cached). The clients run in a child
// process (this program re-executed, as for the amplification attacker) so
// that only the server's memory is counted.

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/transports"
)

// childEnv names the child process's role; the child's parameters are in
// the REATTEST_CONNMEM_* variables.
const childEnv = "REATTEST_BENCH_CHILD"

type connKind string

const (
	connPlain    connKind = "plain"
	connHeader   connKind = "same-size header"
	connAttested connKind = "attested"
)

var connKinds = []connKind{connAttested, connHeader, connPlain} // attested first: it gives the header size

// padHeader is the extra header of connHeader: its name is as long as
// "Attestation", and its value as long as the Attestation header the
// attested connections sent, from the same base64 alphabet (so HPACK's
// Huffman coding gives the same wire size).
const padHeader = "X-Same-Size"

const (
	pathMemOpen = "/open"
	pathMemConn = "/conn"
)

// connMemResult is one kind of connection at one N.
type connMemResult struct {
	kind connKind
	n    int
	// heap, stack: growth of the server's live heap (HeapAlloc after GC)
	// and goroutine stacks (StackInuse) per held connection.
	heap, stack float64
	goroutines  float64 // server goroutines per held connection
	requests    float64 // HTTP requests per connection the server answered
	headerLen   int     // largest Attestation / X-Same-Size value the server saw
	open        time.Duration
}

// connMem runs the measurement: a fresh server per run (fresh port, so
// that TIME_WAIT sockets of the previous run do not matter), one Guard.
type connMem struct {
	guard      *middleware.Guard
	tls        *tls.Config
	childEnv   []string
	profileDir string
	workers    int
	settle     func() // waits for the heap to settle (tests skip it)
	// Experiments (0: Go's default, 4096): the HPACK encoder table limit of
	// the clients (http.HTTP2Config.MaxEncoderHeaderTableSize; a field
	// larger than the table is sent without indexing) and of the server.
	clientEncTable, serverEncTable int
}

func (e *env) newConnMem(profileDir string) *connMem {
	e.tb.Helper()
	// A verifier and Guard on the real clock: the child's attester uses
	// it, and the bench's shared clock has been advanced by scenario (c).
	v, err := softeat.NewVerifier([]crypto.PublicKey{e.attKey.Public()}, softeat.WithMaxAge(time.Hour))
	if err != nil {
		e.tb.Fatal(err)
	}
	g, err := middleware.New(v, middleware.WithRoute("POST "+pathMemConn, middleware.Route{}))
	if err != nil {
		e.tb.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(e.clientCert.PrivateKey)
	if err != nil {
		e.tb.Fatal(err)
	}
	attDER, err := x509.MarshalPKCS8PrivateKey(e.attKey)
	if err != nil {
		e.tb.Fatal(err)
	}
	pemOf := func(typ string, der []byte) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	return &connMem{
		guard: g,
		tls:   e.pki.ServerConfig(e.serverCert),
		childEnv: []string{
			childEnv + "=connclient",
			"REATTEST_CONNMEM_CA=" + pemOf("CERTIFICATE", e.pki.Root.Raw),
			"REATTEST_CONNMEM_CERT=" + pemOf("CERTIFICATE", e.clientCert.Certificate[0]),
			"REATTEST_CONNMEM_KEY=" + pemOf("PRIVATE KEY", keyDER),
			"REATTEST_CONNMEM_ATTKEY=" + pemOf("PRIVATE KEY", attDER),
		},
		profileDir: profileDir,
		workers:    8,
		settle:     settle,
	}
}

// memServer is the server of one run.
type memServer struct {
	srv       *http.Server
	url       string
	live      atomic.Int64
	requests  atomic.Int64
	headerLen atomic.Int64
}

func (m *connMem) newServer() (*memServer, error) {
	s := &memServer{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+pathMemOpen, okHandler)
	mux.HandleFunc("POST "+pathMemConn, okHandler)
	h := m.guard.Middleware(mux)
	s.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.requests.Add(1)
			n := int64(max(len(r.Header.Get(middleware.HeaderAttestation)), len(r.Header.Get(padHeader))))
			for {
				old := s.headerLen.Load()
				if n <= old || s.headerLen.CompareAndSwap(old, n) {
					break
				}
			}
			h.ServeHTTP(w, r)
		}),
		TLSConfig: m.tls.Clone(),
		ErrorLog:  log.New(io.Discard, "", 0),
		HTTP2:     &http.HTTP2Config{MaxEncoderHeaderTableSize: m.serverEncTable},
		ConnState: func(_ net.Conn, cs http.ConnState) {
			switch cs {
			case http.StateNew:
				s.live.Add(1)
			case http.StateClosed, http.StateHijacked:
				s.live.Add(-1)
			}
		},
	}
	middleware.ConfigureServer(s.srv) // keeps the ConnState hook
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.url = "https://" + ln.Addr().String()
	go s.srv.ServeTLS(ln, "", "")
	return s, nil
}

// memSnapshot is the server process's memory after garbage collection.
type memSnapshot struct {
	heap, stack uint64
	goroutines  int
}

func memNow() memSnapshot {
	h := heapAlloc()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memSnapshot{heap: h, stack: m.StackInuse, goroutines: runtime.NumGoroutine()}
}

// childReport is what the child prints once its connections are open.
type childReport struct {
	Conns int           `json:"conns"`
	Open  time.Duration `json:"open"`
	Err   string        `json:"err,omitempty"`
}

// measure holds n connections of kind (headerLen: the X-Same-Size value
// length) and returns the server's growth per connection. A warm-up run
// (record false) measures nothing.
func (m *connMem) measure(kind connKind, n, headerLen int, record bool) (connMemResult, error) {
	res := connMemResult{kind: kind, n: n}
	s, err := m.newServer()
	if err != nil {
		return res, err
	}
	defer s.srv.Close()
	var m0 memSnapshot
	if record {
		m.settle()
		m0 = memNow()
		m.writeProfile(kind, n, "before")
	}

	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), m.childEnv...),
		"REATTEST_CONNMEM_URL="+s.url,
		"REATTEST_CONNMEM_KIND="+string(kind),
		"REATTEST_CONNMEM_N="+strconv.Itoa(n),
		"REATTEST_CONNMEM_HEADER="+strconv.Itoa(headerLen),
		"REATTEST_CONNMEM_WORKERS="+strconv.Itoa(m.workers),
		"REATTEST_CONNMEM_ENCTABLE="+strconv.Itoa(m.clientEncTable),
	)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return res, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return res, err
	}
	if err := cmd.Start(); err != nil {
		return res, err
	}
	release := func() {
		stdin.Close()
		cmd.Wait()
	}
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	var rep childReport
	if err == nil {
		err = json.Unmarshal(line, &rep)
	}
	if err == nil && rep.Err != "" {
		err = errors.New(rep.Err)
	}
	if err == nil && rep.Conns != n {
		err = fmt.Errorf("child opened %d connections, want %d", rep.Conns, n)
	}
	if err == nil && s.live.Load() != int64(n) {
		err = fmt.Errorf("server holds %d connections, want %d", s.live.Load(), n)
	}
	if err != nil {
		release()
		return res, fmt.Errorf("%s connections (n=%d): %w", kind, n, err)
	}
	res.headerLen = int(s.headerLen.Load())
	if !record {
		release()
		return res, nil
	}
	// The child has its answers: what the server still runs are the
	// connections' own goroutines (a verification goroutine may be
	// finishing).
	time.Sleep(100 * time.Millisecond)
	m1 := memNow()
	m.writeProfile(kind, n, "held")
	release()

	res.heap = float64(int64(m1.heap)-int64(m0.heap)) / float64(n)
	res.stack = float64(int64(m1.stack)-int64(m0.stack)) / float64(n)
	res.goroutines = float64(m1.goroutines-m0.goroutines) / float64(n)
	res.requests = float64(s.requests.Load()) / float64(n)
	res.open = rep.Open
	// The child's exit closes its connections: wait until the server has
	// let go of them, so that the next run starts clean.
	for deadline := time.Now().Add(30 * time.Second); s.live.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	return res, nil
}

func (m *connMem) writeProfile(kind connKind, n int, when string) {
	if m.profileDir == "" {
		return
	}
	name := fmt.Sprintf("connmem-%d-%s-%s.pprof", n, strings.ReplaceAll(string(kind), " ", "-"), when)
	f, err := os.Create(filepath.Join(m.profileDir, name))
	if err != nil {
		log.Printf("heap profile: %v", err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		log.Printf("heap profile: %v", err)
	}
}

// measureAll runs every kind at every n, after a small unrecorded warm-up
// run of each kind (one-time allocations are not charged to the first
// kind). The same-size header copies the attested runs' Attestation size.
func (m *connMem) measureAll(sizes []int, warmup int) ([]connMemResult, error) {
	var out []connMemResult
	run := func(n int, record bool) error {
		headerLen := 0
		for _, k := range connKinds {
			r, err := m.measure(k, n, headerLen, record)
			if err != nil {
				return err
			}
			if k == connAttested {
				headerLen = r.headerLen
			}
			if record {
				log.Printf("connmem    n=%d %-16s %6.0f B heap + %6.0f B stack per connection (opened in %v)", n, k, r.heap, r.stack, r.open.Round(time.Millisecond))
				out = append(out, r)
			}
		}
		return nil
	}
	if warmup > 0 {
		if err := run(warmup, false); err != nil {
			return nil, err
		}
	}
	for _, n := range sizes {
		if err := run(n, true); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// runConnClient is the child: it opens its connections, reports, and holds
// them until its standard input closes.
func runConnClient() {
	held, rep, err := openConns()
	if err != nil {
		rep.Err = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(rep)
	if err != nil {
		os.Exit(1)
	}
	io.Copy(io.Discard, os.Stdin)
	runtime.KeepAlive(held)
	os.Exit(0)
}

func openConns() ([]any, childReport, error) {
	var rep childReport
	env := func(k string) string { return os.Getenv("REATTEST_CONNMEM_" + k) }
	n, _ := strconv.Atoi(env("N"))
	headerLen, _ := strconv.Atoi(env("HEADER"))
	workers, _ := strconv.Atoi(env("WORKERS"))
	kind, url := connKind(env("KIND")), env("URL")
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(env("CA"))) {
		return nil, rep, errors.New("child: no CA")
	}
	cert, err := tls.X509KeyPair([]byte(env("CERT")), []byte(env("KEY")))
	if err != nil {
		return nil, rep, err
	}
	blk, _ := pem.Decode([]byte(env("ATTKEY")))
	if blk == nil {
		return nil, rep, errors.New("child: no attestation key")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, rep, err
	}
	attKey, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, rep, fmt.Errorf("child: attestation key is %T", k)
	}
	att, err := softeat.NewAttester(attKey)
	if err != nil {
		return nil, rep, err
	}
	id, err := postauth.IdentityFromTLS(&cert)
	if err != nil {
		return nil, rep, err
	}
	encTable, _ := strconv.Atoi(env("ENCTABLE"))
	base := &http.Transport{
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: "localhost", Certificates: []tls.Certificate{cert}},
		Protocols:       h2Only(),
		HTTP2:           &http.HTTP2Config{MaxEncoderHeaderTableSize: encTable},
	}
	var hdr http.Header
	if kind == connHeader {
		hdr = http.Header{padHeader: {padValue(headerLen)}}
	}
	addr := strings.TrimPrefix(url, "https://")
	open := func(ctx context.Context) (any, error) {
		if kind == connAttested {
			tr, err := transports.NewTransport(base,
				transports.WithAttester(id, att),
				transports.WithAttestTo("127.0.0.1"),
				transports.WithMaxConnsPerHost(1))
			if err != nil {
				return nil, err
			}
			return tr, post(ctx, tr.RoundTrip, url+pathMemConn)
		}
		cc, err := base.NewClientConn(ctx, "https", addr)
		if err != nil {
			return nil, err
		}
		return cc, postWith(ctx, cc.RoundTrip, url+pathMemOpen, hdr)
	}
	held := make([]any, n)
	var next atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	start := time.Now()
	for range max(workers, 1) {
		wg.Go(func() {
			ctx := context.Background()
			for firstErr.Load() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				c, err := open(ctx)
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				held[i] = c
			}
		})
	}
	wg.Wait()
	rep.Open = time.Since(start)
	if p := firstErr.Load(); p != nil {
		return held, rep, *p
	}
	rep.Conns = n
	return held, rep, nil
}

// padValue is a structured-field byte sequence of length n (at least 2)
// with random content.
func padValue(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	s := base64.StdEncoding.EncodeToString(b)[:max(n-2, 0)]
	return ":" + s + ":"
}
