// Command mcp shows reattest in front of Model Context Protocol tools: an
// MCP gateway (the official Go SDK, Streamable HTTP) whose payment tool
// demands fresh attestation of the calling agent, bound to the live TLS
// connection and to the very JSON-RPC call, and an AI agent that uses the
// official SDK client with the reattest transport and records the MCP
// tools it loads in its measured posture.
//
//	go run ./examples/mcp
//
// It runs the gateway and the agent in one process over TLS 1.3 on
// loopback with a throwaway PKI, and exits 0 only if every step of the
// story went as expected, so it doubles as a smoke test.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/middleware/mcpattest"
	"github.com/reattest/reattest/transports"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mcp demo:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("mcp", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	start := time.Now()
	ctx := context.Background()
	p, err := newPKI()
	if err != nil {
		return err
	}
	g, allow, err := newGateway(p, "127.0.0.1:0")
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- g.serve() }()
	defer g.close()
	a, err := newAgent(ctx, p, g.url())
	if err != nil {
		return err
	}
	defer a.close()
	fmt.Fprintf(out, "reattest MCP demo: gateway %s (official MCP Go SDK, Streamable HTTP), agent \"agent-7\", TLS 1.3 on loopback\n", g.url())
	fmt.Fprintln(out, "  tools: search (plain), payments.transfer (operation mode: every call attested, bound to its JSON-RPC message)")
	fmt.Fprintln(out, "  payments policy allows only the gateway's own MCP tools, pinned by digest:")
	for _, e := range allow {
		fmt.Fprintf(out, "    %s\n", short(e))
	}
	fmt.Fprintln(out, "  evidence: software EAT (not hardware-backed)")
	if err := story(ctx, out, a, g); err != nil {
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

// story runs the demo and prints a transcript to w.
func story(ctx context.Context, w io.Writer, a *agent, g *gateway) error {
	var failures []string
	step := 0
	check := func(ok bool, format string, args ...any) {
		if !ok {
			msg := fmt.Sprintf(format, args...)
			failures = append(failures, fmt.Sprintf("step %d: %s", step, msg))
			fmt.Fprintf(w, "      !! UNEXPECTED: %s\n", msg)
		}
	}
	title := func(s string) {
		step++
		fmt.Fprintf(w, "\n[%d] %s\n", step, s)
	}
	call := func(name string, args any) (string, []transports.Activity, error) {
		a.takeEvents()
		start := time.Now()
		out, err := a.call(ctx, name, args)
		took := time.Since(start)
		ev := a.takeEvents()
		switch ref, ok := mcpattest.RefusalOf(err); {
		case ok:
			fmt.Fprintf(w, "    tools/call %s -> JSON-RPC error %d (%s)\n", name, ref.Code, fmtDur(took))
		case err != nil:
			fmt.Fprintf(w, "    tools/call %s -> error: %v\n", name, err)
		default:
			fmt.Fprintf(w, "    tools/call %s -> %q (%s)\n", name, out, fmtDur(took))
		}
		for _, e := range ev {
			fmt.Fprintf(w, "      %s\n", describe(e))
		}
		return out, ev, err
	}

	title("Discovery: the gateway lists its protected MCP tools.")
	routes, err := discover(a, g)
	check(err == nil && len(routes) == 1 && routes[0] == "mcp tools/call payments.* (operation)", "discovery: %v %v", routes, err)
	fmt.Fprintf(w, "    GET /.well-known/reattest -> routes: %s\n", strings.Join(routes, ", "))

	title("search is not high-impact: it passes untouched.")
	out, ev, err := call("search", searchArgs{Query: "acme"})
	check(err == nil && strings.HasPrefix(out, "2 invoices") && len(ev) == 0, "want a result without attestation, got %q %v [%d events]", out, err, len(ev))

	title("payments.transfer is high-impact: challenged, attested on the same connection, executed.")
	out, ev, err = call("payments.transfer", transferArgs{To: "acme-supplies", Amount: 25})
	check(err == nil && out == "paid 25 EUR to acme-supplies" && kinds(ev) == "challenged,attested", "want paid after one attestation, got %q %v [%s]", out, err, kinds(ev))
	paid := g.payments.Load()

	title("The agent loads a local MCP server with a shell tool: its posture log and register move.")
	before := fmt.Sprintf("%x", a.tracker.Head()[:8])
	check(a.loadWorkstation(ctx) == nil, "loading the workstation server failed")
	fmt.Fprintf(w, "    recorded mcp:workstation, mcp:workstation/shell.exec; posture head %s... -> %x...\n", before, a.tracker.Head()[:8])

	title("Its next payment is attested again and denied; the MCP client gets a JSON-RPC error naming the tool.")
	_, _, err = call("payments.transfer", transferArgs{To: "acme-supplies", Amount: 900})
	ref, ok := mcpattest.RefusalOf(err)
	check(ok && ref.Status == 403 && ref.Reason == "posture_denied" && slicesEqual(ref.Violations, []string{
		"tool:mcp:workstation not allowed", "tool:mcp:workstation/shell.exec not allowed"}), "want a 403 refusal naming the tools, got %v", err)
	if ok {
		fmt.Fprintf(w, "      error: code %d, reason %s, rule %q\n      violations: %s\n", ref.Code, ref.Reason, ref.Rule, strings.Join(ref.Violations, ", "))
	}
	check(g.payments.Load() == paid, "the denied payment ran")

	title("The agent unloads the shell server and pays again: allowed.")
	check(a.unloadWorkstation(ctx) == nil, "unloading the workstation server failed")
	out, _, err = call("payments.transfer", transferArgs{To: "acme-supplies", Amount: 900})
	check(err == nil && out == "paid 900 EUR to acme-supplies", "want paid, got %q %v", out, err)

	title("An attacker replays a captured Attestation header (and the session id) on its own connection.")
	header, session := g.lastCaptured()
	status, reason, err := attackerReplay(a, g, header, session)
	check(err == nil && status == 401, "want 401 for a replayed header, got %d %v", status, err)
	fmt.Fprintf(w, "    tools/call payments.transfer {to: mallory} with the captured header, session id and the agent's stolen TLS key -> %d %s\n", status, reason)
	fmt.Fprintln(w, "      the header answers a challenge of another connection, for another message: refused, not run")
	check(g.payments.Load() == paid+1, "the replayed payment ran")

	fmt.Fprintln(w)
	if len(failures) > 0 {
		return fmt.Errorf("the story did not go as expected:\n  %s", strings.Join(failures, "\n  "))
	}
	return nil
}

// discover reads the gateway's discovery document.
func discover(a *agent, g *gateway) ([]string, error) {
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: a.tlsConf.Clone(), ForceAttemptHTTP2: true}, Timeout: 10 * time.Second}
	resp, err := c.Get("https://" + g.ln.Addr().String() + middleware.WellKnownPath)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var d middleware.Discovery
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		return nil, err
	}
	var out []string
	for _, r := range d.Routes {
		out = append(out, fmt.Sprintf("%s (%s)", r.Pattern, r.Mode))
	}
	return out, nil
}

// attackerReplay sends a payment to mallory with a captured Attestation
// header and session id from a new connection, with the agent's stolen TLS
// credentials. It fails: the header answers a challenge of another
// connection (another exporter, so another binder), made for another
// message.
func attackerReplay(a *agent, g *gateway, header, session string) (int, string, error) {
	if header == "" {
		return 0, "", errors.New("nothing captured")
	}
	tr := &http.Transport{TLSClientConfig: a.tlsConf.Clone(), ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	body := `{"jsonrpc":"2.0","id":99,"method":"tools/call","params":{"name":"payments.transfer","arguments":{"to":"mallory","amount":9000}}}`
	req, _ := http.NewRequest("POST", g.url(), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", session)
	req.Header.Set(middleware.HeaderAttestation, header)
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var e struct {
		Error struct {
			Code int64               `json:"code"`
			Data mcpattest.ErrorData `json:"data"`
		} `json:"error"`
	}
	json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e)
	return resp.StatusCode, fmt.Sprintf("(JSON-RPC error %d, %s)", e.Error.Code, e.Error.Data.Reason), nil
}

func kinds(ev []transports.Activity) string {
	var out []string
	for _, e := range ev {
		out = append(out, e.Kind.String())
	}
	return strings.Join(out, ",")
}

func describe(e transports.Activity) string {
	switch e.Kind {
	case transports.ActivityChallenged:
		return fmt.Sprintf("<- 401 challenge: %s (%s mode), answered by the transport", e.Reason, e.Mode)
	case transports.ActivityAttested:
		verdict := fmt.Sprintf("HTTP %d", e.Status)
		if e.Outcome == transports.OutcomeRefused {
			verdict += " " + string(e.Reason)
		}
		return fmt.Sprintf("-> attested with software EAT bound to this connection and this message, retried: %s (%s)", verdict, fmtDur(e.Duration))
	}
	return e.Kind.String()
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
}
