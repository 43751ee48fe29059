package main

// CPU amplification: what an unauthenticated client can make the server
// spend, against what it spends itself. The server (a Guard with an
// operation-mode route and server attestation, over TLS 1.3 + HTTP/2) runs
// in this process; the attacker runs as a child process (this binary,
// re-executed with -attacker), so that each side's CPU time is its own
// process's rusage. The attacker holds one connection without a client
// certificate and repeats one attempt:
//
//   - plain: a request to the protected route (the server answers 401 with
//     a fresh challenge);
//   - forged-<key>: the same, then an authenticator answering the challenge
//     with a certificate for <key>, a junk signature and a valid Finished;
//   - server-attest: a request to the discovery document asking the server
//     to attest (rate-limited per connection and server-wide).
//
// Every scenario runs with the default key trust (the authenticator key
// must be the TLS client certificate's); "attested-key-only" adds the
// opt-in mode, where any key is trusted and a junk ECDSA signature is
// verified.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/reattest/reattest/internal/httpbind"
	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/softeat"
)

// ampScenario is one attack.
type ampScenario struct {
	name     string
	key      string // forged authenticator key ("" for none)
	scheme   tls.SignatureScheme
	path     string // "pay" (protected route) or "attest" (discovery + server attestation)
	openKeys bool   // the server uses KeyTrustAttestedKeyOnly
}

var ampScenarios = []ampScenario{
	{name: "plain 401 (challenge)", path: "pay"},
	{name: "forged, ECDSA P-256", key: "p256", scheme: tls.ECDSAWithP256AndSHA256, path: "pay"},
	{name: "forged, ECDSA P-384", key: "p384", scheme: tls.ECDSAWithP384AndSHA384, path: "pay"},
	{name: "forged, Ed25519", key: "ed25519", scheme: tls.Ed25519, path: "pay"},
	{name: "forged, RSA-2048", key: "rsa2048", scheme: tls.PSSWithSHA256, path: "pay"},
	{name: "forged, RSA-4096", key: "rsa4096", scheme: tls.PSSWithSHA256, path: "pay"},
	{name: "forged, RSA-16384 e=2^31-1", key: "rsa16384", scheme: tls.PSSWithSHA512, path: "pay"},
	{name: "server attests (requests over the rate limit)", path: "attest"},
	{name: "attested-key-only (opt-in): forged ECDSA P-256", key: "p256", scheme: tls.ECDSAWithP256AndSHA256, path: "pay", openKeys: true},
	{name: "attested-key-only (opt-in): forged RSA-16384 e=2^31-1", key: "rsa16384", scheme: tls.PSSWithSHA512, path: "pay", openKeys: true},
}

// targetAmplification is the issue's bound: the server's CPU per attempt at
// most twice the attacker's.
const targetAmplification = 2.0

type ampResult struct {
	scenario         ampScenario
	attempts         int
	server, attacker time.Duration // CPU, total
}

func (r ampResult) ratio() float64 { return float64(r.server) / float64(r.attacker) }

// attackerReport is what the child prints.
type attackerReport struct {
	Attempts int           `json:"attempts"`
	CPU      time.Duration `json:"cpu"`
	Statuses map[int]int   `json:"statuses"`
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measureAmplification runs every scenario against a fresh server.
func measureAmplification(attempts int) ([]ampResult, error) {
	var out []ampResult
	for _, sc := range ampScenarios {
		r, err := measureOne(sc, attempts)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sc.name, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func measureOne(sc ampScenario, attempts int) (ampResult, error) {
	tb := &mainTB{}
	defer tb.runCleanups()
	pki := postauthtest.New(tb)
	serverCert := pki.Issue(tb, "localhost", postauthtest.ServerAuth())
	att, ver := postauthtest.Software(tb)
	serverID, err := postauth.IdentityFromTLS(&serverCert)
	if err != nil {
		return ampResult{}, err
	}
	opts := []middleware.Option{
		middleware.WithRoute("POST /pay", middleware.Route{Mode: middleware.ModeOperation}),
		middleware.WithServerAttestation(serverID, att, softeat.MediaType),
	}
	if sc.openKeys {
		opts = append(opts, middleware.WithProtocol(postauth.WithKeyTrust(postauth.KeyTrustAttestedKeyOnly)))
	}
	guard, err := middleware.New(ver, opts...)
	if err != nil {
		return ampResult{}, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /pay", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "paid") })
	srv := httptest.NewUnstartedServer(guard.Middleware(mux))
	srv.EnableHTTP2 = true
	srv.TLS = pki.ServerConfig(serverCert)
	middleware.ConfigureServer(srv.Config)
	srv.StartTLS()
	defer srv.Close()

	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pki.Root.Raw})
	cmd := exec.Command(os.Args[0], "-attacker")
	cmd.Env = append(os.Environ(),
		"REATTEST_ATTACK_URL="+srv.URL, "REATTEST_ATTACK_CA="+string(ca),
		"REATTEST_ATTACK_KEY="+sc.key, fmt.Sprintf("REATTEST_ATTACK_SCHEME=%d", sc.scheme),
		"REATTEST_ATTACK_PATH="+sc.path, fmt.Sprintf("REATTEST_ATTACK_N=%d", attempts))
	cmd.Stderr = os.Stderr
	settle()
	before := cpuTime()
	outb, err := cmd.Output()
	server := cpuTime() - before
	if err != nil {
		return ampResult{}, fmt.Errorf("attacker: %w", err)
	}
	var rep attackerReport
	if err := json.Unmarshal(outb, &rep); err != nil {
		return ampResult{}, fmt.Errorf("attacker report %q: %w", outb, err)
	}
	if sc.path == "pay" && rep.Statuses[http.StatusOK] > 0 {
		return ampResult{}, fmt.Errorf("a forged attempt passed: %v", rep.Statuses)
	}
	return ampResult{scenario: sc, attempts: rep.Attempts, server: server, attacker: rep.CPU}, nil
}

// runAttacker is the child process: it reads its scenario from the
// environment, runs the attempts and prints its report.
func runAttacker() {
	n := 0
	fmt.Sscan(os.Getenv("REATTEST_ATTACK_N"), &n)
	var scheme int
	fmt.Sscan(os.Getenv("REATTEST_ATTACK_SCHEME"), &scheme)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(os.Getenv("REATTEST_ATTACK_CA")))
	base := os.Getenv("REATTEST_ATTACK_URL")
	// The forged certificate is made before measuring: a real attacker
	// reuses one. Its public key has no private key.
	var cert []byte
	if k := os.Getenv("REATTEST_ATTACK_KEY"); k != "" {
		cert = forgedCert(k)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13}, ForceAttemptHTTP2: true}
	client := &http.Client{Transport: tr}
	// One warm-up request opens the connection (the handshake is not part
	// of the attempts).
	if resp, err := client.Get(base + middleware.WellKnownPath); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	statuses := map[int]int{}
	start := cpuTime()
	for range n {
		st, err := attempt(client, base, os.Getenv("REATTEST_ATTACK_PATH"), cert, tls.SignatureScheme(scheme))
		if err != nil {
			fmt.Fprintln(os.Stderr, "attacker:", err)
			os.Exit(1)
		}
		statuses[st]++
	}
	json.NewEncoder(os.Stdout).Encode(attackerReport{Attempts: n, CPU: cpuTime() - start, Statuses: statuses})
}

const attackBody = `{"amount":100}`

func attempt(c *http.Client, base, path string, cert []byte, scheme tls.SignatureScheme) (int, error) {
	if path == "attest" {
		// A ClientCertificateRequest with a fixed context: the server answers
		// (within its rate limits) whatever the context.
		req := &postauth.Request{Type: postauth.TypeClientCertificateRequest, Context: make([]byte, 32), Extensions: []postauth.Extension{
			{Type: postauth.ExtensionSignatureAlgorithms, Data: []byte{0, 2, 4, 3}},
			{Type: postauth.DefaultAttestationExtension, Data: []byte{}},
		}}
		b, _ := req.Marshal()
		r, _ := http.NewRequest("GET", base+middleware.WellKnownPath, nil)
		r.Header.Set(middleware.HeaderAttestationRequest, httpbind.EncodeBytes(b))
		return send(c, r)
	}
	r, _ := http.NewRequest("POST", base+"/pay", strings.NewReader(attackBody))
	resp, err := c.Do(r)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if cert == nil {
		return resp.StatusCode, nil
	}
	raw, _, err := httpbind.DecodeBytes(resp.Header.Get(middleware.HeaderAttestationRequest), httpbind.MaxRequestHeader)
	if err != nil {
		return 0, fmt.Errorf("no challenge (%d): %w", resp.StatusCode, err)
	}
	areq, err := postauth.ParseRequest(raw)
	if err != nil {
		return 0, err
	}
	junk := make([]byte, 64)
	rand.Read(junk)
	forged, err := postauthtest.Forge(resp.TLS, postauthtest.Forgery{Role: postauth.RoleClient, Request: raw, Context: areq.Context,
		Entries: []postauth.CertificateEntry{{Data: cert}}, Scheme: scheme, Signature: junk})
	if err != nil {
		return 0, err
	}
	r, _ = http.NewRequest("POST", base+"/pay", strings.NewReader(attackBody))
	r.Header.Set(middleware.HeaderAttestation, httpbind.EncodeBytes(forged))
	return send(c, r)
}

func send(c *http.Client, r *http.Request) (int, error) {
	resp, err := c.Do(r)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// forgedCert returns a certificate for a public key of the given kind,
// signed by a throwaway key.
func forgedCert(kind string) []byte {
	var pub crypto.PublicKey
	switch kind {
	case "p256", "p384":
		c := elliptic.P256()
		if kind == "p384" {
			c = elliptic.P384()
		}
		k, _ := ecdsa.GenerateKey(c, rand.Reader)
		pub = &k.PublicKey
	case "ed25519":
		p, _, _ := ed25519.GenerateKey(rand.Reader)
		pub = p
	case "rsa2048", "rsa4096", "rsa16384":
		bits, e := 2048, 65537
		if kind == "rsa4096" {
			bits = 4096
		}
		if kind == "rsa16384" {
			bits, e = 16384, 1<<31-1
		}
		n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), uint(bits)))
		n.SetBit(n, bits-1, 1)
		n.SetBit(n, 0, 1)
		pub = &rsa.PublicKey{N: n, E: e}
	}
	signer, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "forger"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, signer)
	if err != nil {
		fmt.Fprintln(os.Stderr, "attacker: certificate:", err)
		os.Exit(1)
	}
	return der
}

// writeAmplification writes the amplification table.
func writeAmplification(md mdWriter, amp []ampResult) {
	md.line("| attack (one attempt) | attempts | server CPU / attempt | attacker CPU / attempt | ratio | ≤ %.0f× |", targetAmplification)
	md.line("|---|---|---|---|---|---|")
	for _, r := range amp {
		md.line("| %s | %d | %s | %s | %.2f× | %s |", r.scenario.name, r.attempts,
			us(r.server/time.Duration(r.attempts)), us(r.attacker/time.Duration(r.attempts)), r.ratio(), verdict(r.ratio() <= targetAmplification))
	}
}
