// Command agent shows reattest end to end: a gin API gateway that demands
// fresh, connection-bound attestation before high-impact requests, and an AI
// agent whose posture (model, tools, prompt template, permissions, flags)
// is measured and attested.
//
//	go run ./examples/agent                 # the whole story in one process
//	go run ./examples/agent -mode gateway   # just the gateway, on -listen
//	go run ./examples/agent -mode agent -gateway https://127.0.0.1:8443
//	go run ./examples/agent -attester tdx-test  # the story with TDX quotes of a simulated TD (not hardware)
//	go run ./examples/agent -attester tpm   # the TPM 2.0 trust chain (simulator; -tpm-addr for swtpm or /dev/tpmrm0)
//	go run ./examples/agent -replicas 2 [-redis host:port]  # scale-out (replicas.go)
//	go run ./examples/agent -verification background  # the gateway asks a verifier service
//	go run ./examples/agent -verification passport    # the agent brings the verifier's EAR
//
// The verifier service of the two remote models runs in the same process
// unless -verifier gives the URL of one (go run ./cmd/reattest-verifier);
// see verification.go.
//
// With no flags it uses the embedded demo credentials in assets/ (public:
// never trust them anywhere else) and exits 0 only if every step of the
// story went as expected, so it doubles as a smoke test.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// usage is printed by -h before the flags.
const usage = `reattest demo: a gin API gateway that demands fresh, connection-bound
attestation before high-impact requests, and an AI agent that attests.

Examples:
  go run ./examples/agent                          the whole story in one process
  go run ./examples/agent -mode gateway            the gateway alone, on -listen (logs each decision)
  go run ./examples/agent -mode agent -gateway https://127.0.0.1:8443
                                                   the agent alone, against that gateway
  go run ./examples/agent -attester tpm            the TPM 2.0 trust chain (simulator; -tpm-addr for swtpm)
  go run ./examples/agent -attester tdx-test       TDX quotes of a simulated TD (test PKI, not hardware)
  go run ./examples/agent -replicas 2              two gateway replicas sharing state (-redis host:port)

With no flags the demo uses the embedded demo credentials (assets/, public:
never trust them anywhere else) and exits 0 only if every step went as
expected.

Flags:
`

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "agent demo:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	mode := fs.String("mode", "demo", "demo (gateway and agent in one process), gateway, agent, or gen-assets")
	var gw gatewayConfig
	var ag agentConfig
	fs.StringVar(&gw.listen, "listen", "127.0.0.1:8443", "gateway: listen address (demo mode uses a free port)")
	fs.StringVar(&gw.certFile, "cert", "", "gateway: TLS certificate PEM (default: embedded demo)")
	fs.StringVar(&gw.keyFile, "key", "", "gateway: TLS key PEM (default: embedded demo)")
	fs.StringVar(&gw.attPubFile, "attester-pub", "", "gateway: trusted agent attestation public key PEM (default: embedded demo)")
	fs.StringVar(&gw.attKeyFile, "gateway-attestation-key", "", "gateway: its own attestation key PEM (default: embedded demo)")
	fs.StringVar(&gw.policyFile, "policy", "", "gateway: posture policy for payments, YAML or JSON (default: embedded)")
	fs.DurationVar(&gw.configTTL, "config-max-age", 30*time.Second, "gateway: max-age of a config-route attestation")
	fs.StringVar(&ag.gatewayURL, "gateway", "https://127.0.0.1:8443", "agent: gateway URL")
	fs.StringVar(&ag.certFile, "client-cert", "", "agent: TLS client certificate PEM (default: embedded demo)")
	fs.StringVar(&ag.keyFile, "client-key", "", "agent: TLS client key PEM (default: embedded demo)")
	fs.StringVar(&ag.attKeyFile, "attestation-key", "", "agent: its attestation key PEM (default: embedded demo)")
	fs.StringVar(&ag.gatewayAttPub, "gateway-attestation-pub", "", "agent: trusted gateway attestation public key PEM (default: embedded demo)")
	attester := fs.String("attester", "software", "the agent's Evidence: software (EAT), tpm (the TPM 2.0 trust chain, tpm.go; demo mode) or tdx-test (TDX quotes of a simulated TD, test PKI, NOT hardware; demo mode)")
	ca := fs.String("ca", "", "CA certificate PEM for both sides (default: embedded demo)")
	verificationFlags(fs, &gw.verification)
	outDir := fs.String("out", "assets", "gen-assets: output directory")
	var tc tpmConfig
	fs.StringVar(&tc.addr, "tpm-addr", "", "-attester tpm: swtpm host:port or a TPM device (/dev/tpmrm0); default: the in-process simulator")
	fs.StringVar(&tc.ekRoots, "ek-roots", "", "-attester tpm: PEM file of the TPM manufacturer's CA certificates (default: the demo vendor, or swtpm's local CA)")
	replicas := fs.Int("replicas", 0, "demo: run the scale-out story with this many gateway replicas sharing Redis (2 to 8)")
	redisAddr := fs.String("redis", "", "demo with -replicas: Redis host:port (default: an embedded miniredis)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	gw.caFile, ag.caFile = *ca, *ca
	if err := gw.verification.check(); err != nil {
		return err
	}
	if gw.verification.remote() && *attester != "software" && *attester != "" {
		return fmt.Errorf("-verification %s runs with -attester software (the verifier service appraises software EAT)", gw.verification.model)
	}
	if gw.verification.remote() && *replicas > 0 {
		return fmt.Errorf("-verification %s and -replicas are separate stories: run them one at a time", gw.verification.model)
	}
	if *attester == "tpm" {
		if *mode != "demo" {
			return fmt.Errorf("-attester tpm runs in -mode demo only")
		}
		return tpmDemo(out, tc)
	}
	ev, err := newEvidence(*attester, *mode)
	if err != nil {
		return err
	}
	gw.evidence, ag.evidence = ev, ev
	if *mode != "agent" {
		v, stop, err := gw.verification.prepare(gw.attPubFile)
		if err != nil {
			return err
		}
		defer stop()
		defer reportVerifier(out, v)
	} else if gw.verification.remote() && gw.verification.url != "" {
		if gw.verification.key, err = loadEARKey(gw.verification.keyFile, gw.verification.url); err != nil {
			return err
		}
	}
	ag.verification = gw.verification

	switch *mode {
	case "demo":
		if *replicas > 0 {
			return replicasDemo(out, *replicas, *redisAddr, gw, ag)
		}
		gw.listen = "127.0.0.1:0"
		return demo(out, gw, ag)
	case "gateway":
		gw.log = out
		g, err := newGateway(gw)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, gw.verification.describe())
		fmt.Fprintf(out, "gateway listening on https://%s (Ctrl-C or SIGTERM to stop); one line per decision:\n", g.addr())
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sig)
		go func() {
			if s, ok := <-sig; ok {
				fmt.Fprintf(out, "%v: stopping\n", s)
				g.shutdown(5 * time.Second)
			}
		}()
		return g.serve()
	case "agent":
		a, err := newAgent(ag)
		if err != nil {
			return err
		}
		defer a.close()
		if err := a.reachable(); err != nil {
			return err
		}
		fmt.Fprintf(out, "reattest demo: agent against %s\n", ag.gatewayURL)
		return story(out, a, nil)
	case "gen-assets":
		return genAssets(*outDir)
	}
	return fmt.Errorf("unknown -mode %q", *mode)
}

// demo runs the gateway and the agent in one process over TLS 1.3 on
// loopback.
func demo(out io.Writer, gc gatewayConfig, ac agentConfig) error {
	start := time.Now()
	g, err := newGateway(gc)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- g.serve() }()
	defer g.close()
	ac.gatewayURL = "https://" + g.addr()
	a, err := newAgent(ac)
	if err != nil {
		return err
	}
	defer a.close()
	fmt.Fprintf(out, "reattest demo: gin gateway on %s, AI agent \"agent-7\", TLS 1.3 on loopback\n", ac.gatewayURL)
	fmt.Fprintln(out, "  routes: GET /v1/search (plain), POST /v1/payments (operation mode, posture policy),")
	fmt.Fprintf(out, "          PUT /v1/config (connection mode, max-age %v); agent evidence: %s\n", gc.configTTL, ac.evidence.label())
	fmt.Fprintf(out, "  %s\n", gc.verification.describe())
	if err := story(out, a, g); err != nil {
		return err
	}
	select {
	case err := <-errc:
		if err != nil {
			return err
		}
	default:
	}
	fmt.Fprintf(out, "all steps went as expected (%s)\n", fmtDur(time.Since(start)))
	return nil
}
