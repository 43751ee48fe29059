// Command datacollab shows seed use case 3.2 (confidential data
// collaboration) of draft-mihalcea-seat-use-cases: a data clean room. Data
// providers upload sensitive records to a confidential workload over
// mutually attested TLS 1.3 connections (package streams):
//
//   - each provider requires the workload's fresh attestation and a
//     measurement policy (the analysis code it runs, by digest) before a
//     single record leaves;
//   - the workload accepts records only from providers that attested
//     themselves;
//   - a provider whose policy the workload does not meet (it insists on
//     another version of the analysis code) sends nothing;
//   - a provider that cannot attest is refused, and its records are never
//     read;
//   - a data consumer attests the workload too before it trusts the
//     aggregate it receives.
//
// Run it with:
//
//	go run ./examples/datacollab
//
// Credentials are generated at run time; the Evidence is software EAT (not
// hardware-backed), and the workload's code measurement is a measured
// component in its posture log. The program exits 0 only if every step went
// as expected.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/reattest/reattest/examples/internal/demo"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/posture"
	"github.com/reattest/reattest/streams"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "datacollab demo:", err)
		os.Exit(1)
	}
}

// The analysis code the clean room runs, and the version a stricter
// provider insists on.
var (
	analysisV14 = posture.Model{Name: "clean-room-analysis", Version: "1.4", Digest: posture.DigestOf([]byte("clean-room-analysis 1.4 build"))}
	analysisV20 = posture.Model{Name: "clean-room-analysis", Version: "2.0", Digest: posture.DigestOf([]byte("clean-room-analysis 2.0 build"))}
)

// requireCode is a provider's measurement policy: the workload runs code.
func requireCode(code posture.Model) *posture.Policy {
	return &posture.Policy{Models: []posture.ModelRule{{Name: code.Name, Digest: code.Digest.String()}}}
}

// cleanRoom is the confidential workload's state: what it accepted.
type cleanRoom struct {
	mu        sync.Mutex // guards every field
	providers []string
	records   []float64
	refused   []string
}

func (r *cleanRoom) summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	sum := 0.0
	for _, v := range r.records {
		sum += v
	}
	mean := 0.0
	if len(r.records) > 0 {
		mean = sum / float64(len(r.records))
	}
	return fmt.Sprintf("providers=%d records=%d mean=%.1f", len(r.providers), len(r.records), mean)
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("datacollab", flag.ContinueOnError)
	fs.SetOutput(out)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := demo.NewTranscript(out)
	pki, err := demo.NewPKI("clean room demo CA")
	if err != nil {
		return err
	}

	workload, err := demo.NewPlatform(pki, "clean-room", true)
	if err != nil {
		return err
	}
	workload.Tracker.SetModel(ctx, analysisV14)
	var parties []*demo.Platform
	for _, name := range []string{"hospital-a", "hospital-b", "hospital-c", "analyst"} {
		p, err := demo.NewPlatform(pki, name, false)
		if err != nil {
			return err
		}
		parties = append(parties, p)
	}
	hospA, hospB, hospC, analyst := parties[0], parties[1], parties[2], parties[3]
	hospD, err := demo.NewPlatform(pki, "hospital-d", false) // cannot attest
	if err != nil {
		return err
	}

	// The workload: attests (its code is in its posture), and requires the
	// attestation of every party it talks to.
	wid, err := workload.Identity()
	if err != nil {
		return err
	}
	watt, err := workload.Attester()
	if err != nil {
		return err
	}
	trustParties, err := demo.RelyingParty(parties...)
	if err != nil {
		return err
	}
	ln, err := streams.Listen("tcp", "127.0.0.1:0", pki.ServerTLS(workload.Cert),
		streams.WithAttester(wid, watt), streams.WithRelyingParty(trustParties))
	if err != nil {
		return err
	}
	defer ln.Close()
	room := &cleanRoom{}
	go serve(ln, room)
	log.Printf("clean room: listening on %s, running %s %s", ln.Addr(), analysisV14.Name, analysisV14.Version)

	upload := func(p *demo.Platform, policy *posture.Policy, attests bool, records []float64) error {
		rp, err := demo.RelyingParty(workload)
		if err != nil {
			return err
		}
		opts := []streams.Option{streams.WithRelyingParty(rp), streams.WithPosturePolicy(policy)}
		if attests {
			id, err := p.Identity()
			if err != nil {
				return err
			}
			att, err := p.Attester()
			if err != nil {
				return err
			}
			opts = append(opts, streams.WithAttester(id, att))
		}
		c, err := streams.Dial(ctx, "tcp", ln.Addr().String(), pki.ClientTLS(&p.Cert, workload.Name), opts...)
		if err != nil {
			return err
		}
		defer c.Close()
		w := bufio.NewWriter(c)
		for _, v := range records {
			fmt.Fprintf(w, "%g\n", v)
		}
		io.WriteString(w, "END\n")
		if err := w.Flush(); err != nil { // Write waits for both verdicts
			return err
		}
		if r := c.Result(); r == nil || !strings.Contains(describePosture(r), analysisV14.Version) {
			return errors.New("sent without a verdict on the workload")
		}
		ack, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if want := fmt.Sprintf("stored %d\n", len(records)); ack != want {
			return fmt.Errorf("clean room answered %q", ack)
		}
		return c.Close()
	}

	err = upload(hospA, requireCode(analysisV14), true, []float64{41, 44, 38})
	log.Check(err == nil, "hospital-a: clean room attested (%s); 3 records uploaded", analysisV14.Name+" "+analysisV14.Version)
	err = upload(hospB, requireCode(analysisV14), true, []float64{47, 40, 42})
	log.Check(err == nil, "hospital-b: clean room attested; 3 records uploaded")
	err = upload(hospC, requireCode(analysisV20), true, []float64{999, 999})
	var ce *streams.CloseError
	log.Check(errors.As(err, &ce) && ce.Code == streams.PolicyDenied && !ce.Remote,
		"hospital-c: wants %s %s, the clean room runs %s: nothing sent: %s", analysisV20.Name, analysisV20.Version, analysisV14.Version, closeText(err))
	err = upload(hospD, requireCode(analysisV14), false, []float64{-1})
	log.Check(errors.As(err, &ce) && ce.Code == streams.AttestationRequired && ce.Remote,
		"hospital-d: cannot attest: upload refused by the clean room: %s", closeText(err))

	// The data consumer attests the workload before trusting the result.
	rp, err := demo.RelyingParty(workload)
	if err != nil {
		return err
	}
	aid, _ := analyst.Identity()
	aatt, _ := analyst.Attester()
	c, err := streams.Dial(ctx, "tcp", ln.Addr().String(), pki.ClientTLS(&analyst.Cert, workload.Name),
		streams.WithRelyingParty(rp), streams.WithPosturePolicy(requireCode(analysisV14)), streams.WithAttester(aid, aatt))
	if err != nil {
		return err
	}
	defer c.Close()
	io.WriteString(c, "RESULT\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	want := "providers=2 records=6 mean=42.0"
	log.Check(err == nil && strings.TrimSpace(line) == want, "analyst: clean room attested; aggregate: %s", strings.TrimSpace(line))

	var refused string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		room.mu.Lock()
		refused = strings.Join(room.refused, "; ")
		n := len(room.refused)
		room.mu.Unlock()
		if n == 2 {
			break
		}
	}
	log.Check(strings.Contains(refused, "hospital-c") && strings.Contains(refused, "hospital-d") && !strings.Contains(refused, "hospital-a"),
		"clean room: nothing accepted from %s", refused)
	return log.Err()
}

// serve is the clean room: records from attested providers, the aggregate
// for attested consumers.
func serve(ln *streams.Listener, room *cleanRoom) {
	for {
		c, err := ln.AcceptConn()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			// Read waits for the provider's attestation: nothing it sent
			// is read before its verdict, and nothing at all if it fails.
			sc := bufio.NewScanner(c)
			var records []float64
			for sc.Scan() {
				switch sc.Text() {
				case "RESULT":
					io.WriteString(c, room.summary()+"\n")
					return
				case "END":
					room.mu.Lock()
					room.providers = append(room.providers, strings.TrimPrefix(c.Result().Subject(), "CN="))
					room.records = append(room.records, records...)
					room.mu.Unlock()
					fmt.Fprintf(c, "stored %d\n", len(records))
					return
				}
				v, err := strconv.ParseFloat(sc.Text(), 64)
				if err != nil {
					return
				}
				records = append(records, v)
			}
			// Ended without END: a failed connection contributes nothing.
			room.mu.Lock()
			room.refused = append(room.refused, fmt.Sprintf("%s (%s)", peerName(c), closeText(sc.Err())))
			room.mu.Unlock()
		}()
	}
}

func peerName(c *streams.Conn) string {
	if cs := c.ConnectionState(); len(cs.PeerCertificates) > 0 {
		return cs.PeerCertificates[0].Subject.CommonName
	}
	return "unknown peer"
}

func describePosture(r *postauth.Result) string {
	if st := r.Posture(); st != nil && st.Model != nil {
		return st.Model.Name + " " + st.Model.Version
	}
	return ""
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
