// Command netconfig shows seed use case 3.3 (network infrastructure
// integrity) of draft-mihalcea-seat-use-cases: a management client pushes
// configuration to a network function (a virtual router) over an attested
// TLS 1.3 session (package streams), only after the router proved its
// state (its measured firmware, secure boot on), and re-checks that state
// periodically on the same session:
//
//  1. the router attests; the client pushes its configuration;
//  2. the client re-attests the router every interval while the session
//     lives;
//  3. an honest router announces a posture change (secure boot off): the
//     client re-attests at once, denies it, and closes the session;
//  4. a router that changes without announcing it is caught by the next
//     periodic re-attestation, within one interval.
//
// Between the change and the verdict, lines may still go through (the
// transcript counts them): at most the time the announcement takes to
// arrive for an honest router, at most one interval for the other.
//
//	go run ./examples/netconfig
//	go run ./examples/netconfig -interval 500ms
//
// Credentials are generated at run time; the Evidence is software EAT (not
// hardware-backed). The program exits 0 only if every step went as
// expected.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/reattest/reattest/examples/internal/demo"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/posture"
	"github.com/reattest/reattest/streams"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "netconfig demo:", err)
		os.Exit(1)
	}
}

// The router's measured firmware, and the management policy: that
// firmware, with secure boot on.
var firmware = posture.Model{Name: "vrouter", Version: "7.2", Digest: posture.DigestOf([]byte("vrouter 7.2 signed image"))}

func policy() *posture.Policy {
	return &posture.Policy{
		Models: []posture.ModelRule{{Name: firmware.Name, Digest: firmware.Digest.String()}},
		Flags:  map[string]string{"secure_boot": "on"},
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("netconfig", flag.ContinueOnError)
	fs.SetOutput(out)
	interval := fs.Duration("interval", 150*time.Millisecond, "how often the client re-attests the router")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := demo.NewTranscript(out)
	pki, err := demo.NewPKI("netconfig demo CA")
	if err != nil {
		return err
	}
	mgmt, err := pki.Client("noc-operator")
	if err != nil {
		return err
	}

	log.Printf("== an honest router, which announces posture changes")
	if err := session(ctx, log, pki, mgmt, *interval, true); err != nil {
		return err
	}
	log.Printf("== a router that changes without announcing it")
	if err := session(ctx, log, pki, mgmt, *interval, false); err != nil {
		return err
	}
	return log.Err()
}

// session runs one management session against a fresh router.
func session(ctx context.Context, log *demo.Transcript, pki *demo.PKI, mgmt tls.Certificate, interval time.Duration, announces bool) error {
	router, err := demo.NewPlatform(pki, "vrouter-1", true)
	if err != nil {
		return err
	}
	router.Tracker.SetModel(ctx, firmware)
	router.Tracker.SetFlag(ctx, "secure_boot", "on")
	id, err := router.Identity()
	if err != nil {
		return err
	}
	att, err := router.Attester()
	if err != nil {
		return err
	}
	routerOpts := []streams.Option{streams.WithAttester(id, att)}
	if announces {
		routerOpts = append(routerOpts, streams.WithPosture(router.Tracker))
	}
	ln, err := streams.Listen("tcp", "127.0.0.1:0", pki.ServerTLS(router.Cert), routerOpts...)
	if err != nil {
		return err
	}
	defer ln.Close()
	applied := make(chan int, 1)
	go serveConfig(ln, applied)

	rp, err := demo.RelyingParty(router)
	if err != nil {
		return err
	}
	var checks atomic.Int64
	var closedBy atomic.Int32 // the trigger of the re-attestation that closed the session
	var announced atomic.Bool // the router announced a posture change
	c, err := streams.Dial(ctx, "tcp", ln.Addr().String(), pki.ClientTLS(&mgmt, router.Name),
		streams.WithRelyingParty(rp),
		streams.WithPosturePolicy(policy()),
		streams.WithInterval(interval),
		streams.WithObserver(func(ev streams.Event) {
			switch ev.Kind {
			case streams.EventVerified:
				checks.Add(1)
			case streams.EventClosed:
				closedBy.Store(int32(ev.Trigger))
			case streams.EventPostureChanged:
				announced.Store(true)
			}
		}))
	if err != nil {
		return err
	}
	defer c.Close()
	err = c.Ready(ctx)
	log.Check(err == nil, "client: router attested before any configuration (%s)", describe(c.Result()))
	if err != nil {
		return nil
	}
	r := bufio.NewReader(c)
	push := func(line string) error {
		if _, err := io.WriteString(c, line+"\n"); err != nil {
			return err
		}
		ack, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if strings.TrimSpace(ack) != "ok" {
			return fmt.Errorf("router answered %q", ack)
		}
		return nil
	}
	for _, line := range []string{"interface eth0 mtu 9000", "route 10.0.0.0/8 via 192.0.2.1", "acl mgmt permit 198.51.100.0/24"} {
		err := push(line)
		log.Check(err == nil, "client: pushed %q: ok", line)
	}
	// The session stays open; the client keeps re-checking the router.
	deadline := time.Now().Add(10 * time.Second)
	for checks.Load() < 4 && time.Now().Before(deadline) {
		push("keepalive")
		time.Sleep(interval / 3)
	}
	log.Check(checks.Load() >= 4, "client: re-checked the router %d times on the session (every %v)", checks.Load(), interval)

	changedAt := time.Now()
	log.Printf("router: secure boot turned off (announced: %v)", announces)
	router.Tracker.SetFlag(ctx, "secure_boot", "off")
	var perr error
	through := -1
	for perr == nil && time.Since(changedAt) < 10*time.Second {
		perr = push("route 0.0.0.0/0 via 203.0.113.66")
		through++
		time.Sleep(interval / 10)
	}
	took := time.Since(changedAt)
	var ce *streams.CloseError
	ok := errors.As(perr, &ce) && ce.Code == streams.PolicyDenied && ce.Reason == postauth.ReasonPostureDenied
	var pe *postauth.Error
	violations := ""
	if errors.As(c.Err(), &pe) {
		violations = strings.Join(pe.Violations, ", ")
	}
	log.Check(ok, "client: session closed, configuration refused: %s [%s]", closeText(perr), violations)
	tr := streams.Trigger(closedBy.Load())
	if announces {
		// Usually the request the announcement triggers; a periodic
		// request that happened to be out at that moment may get there
		// first.
		log.Check(announced.Load(), "client: the router announced the change; the verdict was suspended and the router re-attested at once (caught by the %s request, after %v)", tr, took.Round(time.Millisecond))
	} else {
		log.Check(!announced.Load() && tr == streams.TriggerInterval, "client: no announcement; caught by the next periodic re-check (%s, after %v; the interval is %v)", tr, took.Round(time.Millisecond), interval)
	}
	log.Printf("client: %d lines went through between the change and the verdict", through)
	n := <-applied
	log.Printf("router: applied %d lines; the session ended", n)
	return nil
}

// serveConfig is the router's configuration service: it applies each
// line and answers "ok", on attested sessions only.
func serveConfig(ln *streams.Listener, applied chan<- int) {
	c, err := ln.AcceptConn()
	if err != nil {
		applied <- 0
		return
	}
	defer c.Close()
	n := 0
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		n++
		if _, err := io.WriteString(c, "ok\n"); err != nil {
			break
		}
	}
	applied <- n
}

func describe(r *postauth.Result) string {
	if r == nil {
		return "no verdict"
	}
	return fmt.Sprintf("%s evidence, subject %s", r.Format(), r.Subject())
}

func closeText(err error) string {
	var ce *streams.CloseError
	if errors.As(err, &ce) {
		by := "by us"
		if ce.Remote {
			by = "by the peer"
		}
		return fmt.Sprintf("%s (%s), closed %s", ce.Code, ce.Reason, by)
	}
	if err == nil {
		return "no error"
	}
	return err.Error()
}
