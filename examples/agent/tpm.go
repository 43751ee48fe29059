package main

// The TPM mode of the demo (-attester tpm): the agent's Evidence is the
// whole TPM 2.0 trust chain (docs/tpm.md). The TPM is the in-process
// simulator by default, swtpm with -tpm-addr host:port, or a TPM device
// with -tpm-addr /dev/tpmrm0 (then -ek-roots names its manufacturer's CA
// certificates).

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
	"github.com/reattest/reattest/postauth/tpm"
	"github.com/reattest/reattest/postauth/tpm/enroll"
	"github.com/reattest/reattest/postauth/tpm/tpmtest"
	"github.com/reattest/reattest/transports"
)

// tpmConfig is the TPM mode's configuration.
type tpmConfig struct {
	addr    string // "" (simulator), host:port (swtpm) or a device path
	ekRoots string // PEM file of manufacturer CA certificates
}

// openSimulator opens the in-process TPM simulator (tpm_sim.go; it needs
// cgo).
var openSimulator func() (transport.TPMCloser, error)

// tpmDevice is the demo's TPM and the manufacturer certificates its EK
// certificate chains to.
type tpmDevice struct {
	dev           *tpm.SharedTPM
	close         func() error
	what          string
	roots, inters []*x509.Certificate
}

func openTPM(ctx context.Context, cfg tpmConfig) (*tpmDevice, error) {
	var d tpmDevice
	switch {
	case cfg.addr == "":
		if openSimulator == nil {
			return nil, errors.New("the TPM simulator needs cgo: build with CGO_ENABLED=1, or use -tpm-addr")
		}
		sim, err := openSimulator()
		if err != nil {
			return nil, err
		}
		d.dev, d.close, d.what = tpm.Share(sim), sim.Close, "the in-process TPM simulator (go-tpm)"
		// A simulator comes without an EK certificate: a demo TPM vendor
		// writes one into NV, as a TPM maker or swtpm_setup does.
		vendor, err := tpmtest.NewManufacturer("reattest demo TPM vendor")
		if err != nil {
			sim.Close()
			return nil, err
		}
		if _, err := vendor.Provision(ctx, d.dev); err != nil {
			sim.Close()
			return nil, err
		}
		d.roots = []*x509.Certificate{vendor.Root()}
	case strings.HasPrefix(cfg.addr, "/"):
		dev, err := linuxtpm.Open(cfg.addr)
		if err != nil {
			return nil, err
		}
		d.dev, d.close, d.what = tpm.Share(dev), dev.Close, "the TPM at "+cfg.addr
	default:
		dev, err := tpmtest.Dial(cfg.addr)
		if err != nil {
			return nil, err
		}
		if err := tpmtest.FlushTransient(dev); err != nil {
			dev.Close()
			return nil, err
		}
		d.dev, d.close, d.what = tpm.Share(dev), dev.Close, "swtpm at "+cfg.addr
		if cfg.ekRoots == "" {
			root, issuer, err := tpmtest.SWTPMRoots()
			if err != nil {
				dev.Close()
				return nil, fmt.Errorf("%w (or give -ek-roots)", err)
			}
			d.roots, d.inters = []*x509.Certificate{root}, []*x509.Certificate{issuer}
		}
	}
	if cfg.ekRoots != "" {
		b, err := os.ReadFile(cfg.ekRoots)
		if err != nil {
			d.close()
			return nil, err
		}
		for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				d.close()
				return nil, fmt.Errorf("-ek-roots: %w", err)
			}
			if c.CheckSignatureFrom(c) == nil {
				d.roots = append(d.roots, c)
			} else {
				d.inters = append(d.inters, c)
			}
		}
	}
	if len(d.roots) == 0 {
		d.close()
		return nil, errors.New("no TPM manufacturer root: give -ek-roots")
	}
	return &d, nil
}

// bootValues reads PCRs 0 to 7: the demo's reference values for the boot
// policy (a real relying party takes them from known-good measurements,
// not from the machine it appraises).
func bootValues(dev transport.TPM) (map[int][][]byte, error) {
	rsp, err := tpm2.PCRRead{PCRSelectionIn: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{
		{Hash: tpm2.TPMAlgSHA256, PCRSelect: tpm2.PCClientCompatible.PCRs(0, 1, 2, 3, 4, 5, 6, 7)},
	}}}.Execute(dev)
	if err != nil {
		return nil, err
	}
	if len(rsp.PCRValues.Digests) != 8 {
		return nil, errors.New("PCR_Read returned another selection")
	}
	out := map[int][][]byte{}
	for i, d := range rsp.PCRValues.Digests {
		out[i] = [][]byte{d.Buffer}
	}
	return out, nil
}

func short(b []byte) string {
	h := hex.EncodeToString(b)
	if len(h) > 16 {
		return h[:16] + "..."
	}
	return h
}

// tpmDemo runs the gateway and the agent in one process with the TPM
// trust chain.
func tpmDemo(out io.Writer, cfg tpmConfig) (err error) {
	defer func() {
		if r := recover(); r != nil { // postauthtest.Must panics on failure
			err = fmt.Errorf("%v", r)
		}
	}()
	start := time.Now()
	ctx := context.Background()
	var failures []string
	check := func(ok bool, format string, args ...any) {
		if !ok {
			msg := fmt.Sprintf(format, args...)
			failures = append(failures, msg)
			fmt.Fprintf(out, "      !! UNEXPECTED: %s\n", msg)
		}
	}

	d, err := openTPM(ctx, cfg)
	if err != nil {
		return err
	}
	defer d.close()
	fmt.Fprintf(out, "reattest demo, TPM mode: %s\n", d.what)

	// [1] The EK certificate.
	fmt.Fprintln(out, "\n[1] The TPM's endorsement key (EK) certificate, from its NV memory")
	ek, err := tpm.ReadEK(ctx, d.dev)
	if err != nil {
		return err
	}
	ekCert, err := x509.ParseCertificate(ek.Certificate)
	if err != nil {
		return err
	}
	pool := func(cs []*x509.Certificate) *x509.CertPool {
		p := x509.NewCertPool()
		for _, c := range cs {
			p.AddCert(c)
		}
		return p
	}
	verr := tpm.VerifyEKCertificate(ekCert, pool(d.roots), pool(d.inters), time.Now())
	machine, _ := ek.MachineID()
	fmt.Fprintf(out, "    NV %#x: issued by %q, chains to the manufacturer root %q: %v\n", ek.CertIndex, ekCert.Issuer.CommonName, d.roots[0].Subject.CommonName, verr == nil)
	fmt.Fprintf(out, "    machine identifier = SHA-256(EK public key) = %s\n", short(machine))
	check(verr == nil, "EK certificate: %v", verr)

	// The gateway: an enrollment CA (trusting the manufacturer roots) and
	// a payments route whose verifier trusts that CA, requires the EK
	// certificate, this machine, a TPM-resident key and the boot values.
	caCert, caKey, err := enroll.NewRoot("reattest demo enrollment CA", 24*time.Hour)
	if err != nil {
		return err
	}
	ca, err := enroll.New(caCert, caKey, enroll.WithEKRoots(d.roots...), enroll.WithEKIntermediates(d.inters...))
	if err != nil {
		return err
	}
	boot, err := bootValues(d.dev)
	if err != nil {
		return err
	}
	verifier, err := tpm.NewVerifier(tpm.WithAKRoots(caCert), tpm.WithEKRoots(d.roots...), tpm.WithEKIntermediates(d.inters...),
		tpm.WithMachineIDs(machine), tpm.WithPCRPolicy(boot))
	if err != nil {
		return err
	}
	guard, err := middleware.New(verifier, middleware.WithRoute("POST /v1/payments", middleware.Route{Mode: middleware.ModeOperation}))
	if err != nil {
		return err
	}
	pki := postauthtest.New(postauthtest.Must) // the demo's TLS CA, in memory
	mux := http.NewServeMux()
	mux.Handle("/enroll/", http.StripPrefix("/enroll", ca.Handler()))
	mux.HandleFunc("POST /v1/payments", func(w http.ResponseWriter, r *http.Request) {
		res, _ := postauth.FromContext(r.Context())
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"status": "paid", "request": string(body), "hardware_backed": res.HardwareBacked(),
			"machine": hex.EncodeToString(res.MachineID()), "key_hash": hex.EncodeToString(res.KeyHash()),
		})
	})
	srv := &http.Server{Handler: guard.Middleware(mux), ReadHeaderTimeout: 10 * time.Second, TLSConfig: pki.ServerConfig(pki.Issue(postauthtest.Must, "localhost", postauthtest.ServerAuth()))}
	srv.TLSConfig.NextProtos = []string{"h2", "http/1.1"}
	middleware.ConfigureServer(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go srv.ServeTLS(ln, "", "")
	defer srv.Close()
	base := "https://" + ln.Addr().String()

	// [2] Enrollment.
	fmt.Fprintln(out, "\n[2] The attestation key (AK) is enrolled with the gateway's enrollment CA")
	att, err := tpm.NewAttester(ctx, d.dev, tpm.IncludeEKCertificate())
	if err != nil {
		return err
	}
	plainTLS := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientConfig(nil)}, Timeout: 30 * time.Second}
	client, err := enroll.NewClient(base+"/enroll", plainTLS)
	if err != nil {
		return err
	}
	t0 := time.Now()
	err = att.Enroll(ctx, client)
	check(err == nil, "enrollment: %v", err)
	if err != nil {
		att.Close()
		return fmt.Errorf("enrollment: %w", err)
	}
	akCert, _ := x509.ParseCertificate(att.AKCertificate()[0])
	fmt.Fprintf(out, "    the CA encrypted a secret to the EK, bound to the AK's name (TPM2_MakeCredential); the TPM recovered it (TPM2_ActivateCredential) (%s)\n", fmtDur(time.Since(t0)))
	fmt.Fprintf(out, "    AK certificate from %q: key = the AK, subject serialNumber = machine %s\n", akCert.Issuer.CommonName, short(att.MachineID()))
	chain := att.AKCertificate()
	att.Close() // the TPM has few object slots: the AK is loaded again below

	// [3] The authenticator key.
	fmt.Fprintln(out, "\n[3] The agent's authenticator key is created in the TPM and certified by the AK")
	key, err := tpm.NewKey(ctx, d.dev)
	if err != nil {
		return err
	}
	defer key.Close()
	att, err = tpm.NewAttester(ctx, d.dev, tpm.WithCertifiedKey(key), tpm.IncludeEKCertificate())
	if err != nil {
		return err
	}
	defer att.Close()
	if err := att.SetAKCertificate(chain); err != nil {
		return err
	}
	fmt.Fprintf(out, "    ECDSA P-256, fixedTPM | fixedParent | sensitiveDataOrigin | sign: it cannot leave the TPM; TPM name %s\n", short(key.Name()))
	cert := pki.Issue(postauthtest.Must, "agent-7", postauthtest.WithKey(key))
	spki := sha256.Sum256(cert.Leaf.RawSubjectPublicKeyInfo)
	fmt.Fprintf(out, "    it is the key of the agent's TLS client certificate (the TPM signs the TLS 1.3 handshake) and of its Exported Authenticators; key hash %s\n", short(spki[:]))

	// [4] A payment.
	fmt.Fprintln(out, "\n[4] A payment (operation mode): challenged, attested with the TPM chain, executed")
	status, body, events, err := tpmPay(base, pki.ClientConfig(&cert), att, `{"to":"acme-supplies","amount":25}`)
	if err != nil {
		return err
	}
	for _, e := range events {
		fmt.Fprintf(out, "      %s\n", e)
	}
	var paid struct {
		Status         string `json:"status"`
		HardwareBacked bool   `json:"hardware_backed"`
		Machine        string `json:"machine"`
		KeyHash        string `json:"key_hash"`
	}
	json.Unmarshal([]byte(body), &paid)
	fmt.Fprintf(out, "    POST /v1/payments -> %d %s\n", status, paid.Status)
	if status == 200 {
		fmt.Fprintf(out, "      the gateway checked: AK certificate -> enrollment CA, EK certificate -> manufacturer, machine %s pinned,\n", paid.Machine[:16]+"...")
		fmt.Fprintf(out, "      quote and key certification by the same AK over this connection's binder, certified key = authenticator key (%s...),\n", paid.KeyHash[:16])
		fmt.Fprintf(out, "      PCRs 0-7 = reference values: hardware-backed %v\n", paid.HardwareBacked)
	}
	check(status == 200 && paid.Status == "paid" && paid.HardwareBacked && paid.Machine == hex.EncodeToString(machine) && paid.KeyHash == hex.EncodeToString(spki[:]),
		"want 200 paid by the TPM key on this machine, got %d %s", status, body)

	// [5] A software key is refused.
	fmt.Fprintln(out, "\n[5] The same agent with a software TLS key (the TPM still quotes, but certifies no key of this connection)")
	soft := pki.Issue(postauthtest.Must, "agent-7")
	quoteOnly, err := tpm.NewAttester(ctx, d.dev, tpm.IncludeEKCertificate())
	if err != nil {
		return err
	}
	defer quoteOnly.Close()
	if err := quoteOnly.SetAKCertificate(chain); err != nil {
		return err
	}
	status, body, _, err = tpmPay(base, pki.ClientConfig(&soft), quoteOnly, `{"to":"mallory","amount":9000}`)
	if err != nil {
		return err
	}
	var problem middleware.Problem
	json.Unmarshal([]byte(body), &problem)
	fmt.Fprintf(out, "    POST /v1/payments -> %d %s: the policy requires a TPM-resident key\n", status, problem.Reason)
	check(status == 403 && problem.Reason == postauth.ReasonKeyNotResident, "want 403 key_not_resident, got %d %s", status, body)

	fmt.Fprintln(out, "    and with the certification of the TPM key in its Evidence:")
	status, body, _, err = tpmPay(base, pki.ClientConfig(&soft), att, `{"to":"mallory","amount":9000}`)
	if err != nil {
		return err
	}
	problem = middleware.Problem{}
	json.Unmarshal([]byte(body), &problem)
	fmt.Fprintf(out, "    POST /v1/payments -> %d %s: the certified key is not the authenticator key\n", status, problem.Reason)
	check(status == 401 && problem.Reason == postauth.ReasonKeyHashMismatch, "want 401 key_hash_mismatch, got %d %s", status, body)

	fmt.Fprintln(out)
	if len(failures) > 0 {
		return fmt.Errorf("the TPM story did not go as expected:\n  %s", strings.Join(failures, "\n  "))
	}
	fmt.Fprintf(out, "all steps went as expected (%s)\n", fmtDur(time.Since(start)))
	return nil
}

// tpmPay sends one payment from an agent with the TLS configuration
// tlsConf (its client certificate's key is its authenticator key) and the
// attester att, and returns the status, the body and what the transport
// did.
func tpmPay(base string, tlsConf *tls.Config, att postauth.Attester, body string) (int, string, []string, error) {
	id, err := postauth.IdentityFromTLS(&tlsConf.Certificates[0])
	if err != nil {
		return 0, "", nil, err
	}
	var mu sync.Mutex // guards events
	var events []string
	tr, err := transports.NewTransport(&http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: true},
		transports.WithAttester(id, att), transports.WithAttestTo(strings.TrimPrefix(base, "https://")),
		transports.WithObserver(func(a transports.Activity) {
			mu.Lock()
			defer mu.Unlock()
			switch a.Kind {
			case transports.ActivityChallenged:
				events = append(events, fmt.Sprintf("<- 401 challenge: %s (%s mode)", a.Reason, a.Mode))
			case transports.ActivityAttested:
				events = append(events, fmt.Sprintf("-> attested: TPM2_Quote + TPM2_Certify of the key + AK and EK certificates, bound to this connection, retried (%s)", fmtDur(a.Duration)))
			}
		}))
	if err != nil {
		return 0, "", nil, err
	}
	defer tr.Close()
	req, err := http.NewRequest(http.MethodPost, base+"/v1/payments", strings.NewReader(body))
	if err != nil {
		return 0, "", nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	mu.Lock()
	defer mu.Unlock()
	return resp.StatusCode, string(b), slices.Clone(events), nil
}
