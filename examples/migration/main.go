// Command migration shows seed use case 3.6 (platform to platform) of
// draft-mihalcea-seat-use-cases: the migration agents of two platforms
// (think Intel TDX MigTDs) set up an attested raw QUIC connection, both
// attest, and only then does the source hand the migration key to the
// destination. Re-attestation keeps running every interval while the
// workload's memory streams across; when the destination's posture changes
// (its debug flag goes on), the source appraises it again, denies it, and
// the connection is gone. A destination whose attestation key nobody
// trusts never receives a byte.
//
//	go run ./examples/migration             # the whole story, one process, loopback QUIC
//	go run ./examples/migration -interval 1s
//
// Credentials (CA, TLS certificates, attestation keys) are generated at
// run time; the Evidence is software EAT (not hardware-backed). The program
// exits 0 only if every step went as expected.
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/reattest/reattest/examples/internal/demo"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/posture"
	"github.com/reattest/reattest/streams"
	"github.com/reattest/reattest/streams/quicstream"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "migration demo:", err)
		os.Exit(1)
	}
}

// The migration agent both platforms run, and the policy each applies to
// the other: that agent, with TD debugging off.
var migtd = posture.Model{Name: "migtd", Version: "1.0", Digest: posture.DigestOf([]byte("migtd 1.0 image"))}

func policy() *posture.Policy {
	return &posture.Policy{
		Models: []posture.ModelRule{{Name: migtd.Name, Digest: migtd.Digest.String()}},
		Flags:  map[string]string{"td_debug": "off"},
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("migration", flag.ContinueOnError)
	fs.SetOutput(out)
	interval := fs.Duration("interval", 200*time.Millisecond, "how often each platform re-attests the other")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := demo.NewTranscript(out)

	pki, err := demo.NewPKI("migration demo CA")
	if err != nil {
		return err
	}
	src, err := demo.NewPlatform(pki, "source-migtd", false)
	if err != nil {
		return err
	}
	dst, err := demo.NewPlatform(pki, "destination-migtd", true)
	if err != nil {
		return err
	}
	for _, p := range []*demo.Platform{src, dst} {
		if err := p.Tracker.SetModel(ctx, migtd); err != nil {
			return err
		}
		if err := p.Tracker.SetFlag(ctx, "td_debug", "off"); err != nil {
			return err
		}
	}

	// The destination listens; it requires the source's attestation and
	// attests itself.
	var dstVerdicts, srcVerdicts atomic.Int64
	dstOpts, err := options(dst, src, *interval, &dstVerdicts)
	if err != nil {
		return err
	}
	ln, err := quicstream.Listen("127.0.0.1:0", pki.ServerTLS(dst.Cert), nil, dstOpts...)
	if err != nil {
		return err
	}
	defer ln.Close()
	log.Printf("destination: listening on %s (QUIC, ALPN %s)", ln.Addr(), streams.ALPN)

	type received struct {
		key   []byte
		pages int64
		err   error
	}
	dstDone := make(chan received, 1)
	go func() {
		var r received
		defer func() { dstDone <- r }()
		c, err := ln.Accept(ctx)
		if err != nil {
			r.err = err
			return
		}
		defer c.Close()
		st, err := c.AcceptStream(ctx) // only once the source attested
		if err != nil {
			r.err = err
			return
		}
		log.Printf("destination: source attested (%s); migration stream accepted", describe(c.Result()))
		r.key = make([]byte, 32)
		if _, err := io.ReadFull(st, r.key); err != nil {
			r.err = err
			return
		}
		sum := sha256.Sum256(r.key)
		st.Write(sum[:4])
		r.pages, r.err = io.Copy(io.Discard, st) // memory pages, until the end
	}()

	// The source dials; it requires the destination's attestation before
	// anything leaves.
	srcOpts, err := options(src, dst, *interval, &srcVerdicts)
	if err != nil {
		return err
	}
	c, err := quicstream.Dial(ctx, ln.Addr().String(), pki.ClientTLS(&src.Cert, dst.Name), nil, srcOpts...)
	if err != nil {
		return err
	}
	defer c.Close()
	err = c.Ready(ctx)
	log.Check(err == nil, "source: destination attested (%s): both platforms verified, the migration may start", describe(c.Result()))
	if err != nil {
		return log.Err()
	}
	st, err := c.OpenStream(ctx)
	if err != nil {
		return err
	}
	key := make([]byte, 32)
	rand.Read(key)
	st.Write(key)
	ack := make([]byte, 4)
	_, err = io.ReadFull(st, ack)
	sum := sha256.Sum256(key)
	log.Check(err == nil && string(ack) == string(sum[:4]), "source: migration key sent; the destination confirmed it (sha-256 %x...)", ack)

	// Memory pages stream across while both keep re-attesting each other.
	page := make([]byte, 64<<10)
	pagesErr := make(chan error, 1)
	go func() {
		for {
			if _, err := st.Write(page); err != nil {
				pagesErr <- err
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	deadline := time.Now().Add(15 * time.Second)
	for (srcVerdicts.Load() < 4 || dstVerdicts.Load() < 4) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	log.Check(srcVerdicts.Load() >= 4 && dstVerdicts.Load() >= 4,
		"periodic re-attestation every %v while pages stream: the source verified the destination %d times, the destination the source %d times",
		*interval, srcVerdicts.Load(), dstVerdicts.Load())

	// The destination's posture changes: TD debugging on.
	log.Printf("destination: posture change: td_debug=on")
	if err := dst.Tracker.SetFlag(ctx, "td_debug", "on"); err != nil {
		return err
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
	}
	var ce *streams.CloseError
	ok := errors.As(c.Err(), &ce) && ce.Code == streams.PolicyDenied && !ce.Remote
	log.Check(ok, "source: destination re-attested and denied: connection closed with %s", closeText(c.Err()))
	werr := <-pagesErr
	log.Check(errors.As(werr, &ce), "source: migration stream stopped: %s", closeText(werr))
	r := <-dstDone
	ok = len(r.key) == 32 && errors.As(r.err, &ce) && ce.Code == streams.PolicyDenied && ce.Remote
	log.Check(ok, "destination: lost the connection after %d KiB of pages: %s", r.pages>>10, closeText(r.err))

	rogueDestination(ctx, log, pki, src, dst, *interval)
	return log.Err()
}

// rogueDestination: a machine with a valid TLS certificate but an
// attestation key the source does not trust. The source closes the
// connection before any stream opens; the rogue receives nothing.
func rogueDestination(ctx context.Context, log *demo.Transcript, pki *demo.PKI, src, dst *demo.Platform, interval time.Duration) {
	rogue, err := demo.NewPlatform(pki, dst.Name, true)
	if err != nil {
		log.Check(false, "rogue: %v", err)
		return
	}
	rogue.Tracker.SetModel(ctx, migtd)
	rogue.Tracker.SetFlag(ctx, "td_debug", "off")
	var n atomic.Int64
	opts, err := options(rogue, src, interval, &n)
	if err != nil {
		log.Check(false, "rogue: %v", err)
		return
	}
	ln, err := quicstream.Listen("127.0.0.1:0", pki.ServerTLS(rogue.Cert), nil, opts...)
	if err != nil {
		log.Check(false, "rogue: %v", err)
		return
	}
	defer ln.Close()
	got := make(chan error, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			got <- err
			return
		}
		_, err = c.AcceptStream(ctx)
		got <- err
	}()
	var m atomic.Int64
	srcOpts, err := options(src, dst, interval, &m) // the source still trusts only the real destination
	if err != nil {
		log.Check(false, "rogue: %v", err)
		return
	}
	c, err := quicstream.Dial(ctx, ln.Addr().String(), pki.ClientTLS(&src.Cert, dst.Name), nil, srcOpts...)
	if err != nil {
		log.Check(false, "rogue: dial: %v", err)
		return
	}
	defer c.Close()
	err = c.Ready(ctx)
	var ce *streams.CloseError
	log.Check(errors.As(err, &ce) && ce.Code == streams.AttestationInvalid, "source: rogue destination (untrusted attestation key) refused: %s", closeText(err))
	rerr := <-got
	log.Check(rerr != nil, "rogue destination: no migration stream, no key: %s", closeText(rerr))
}

// options are the streams options of platform self facing peer: it
// attests (announcing its posture changes), requires peer's attestation
// under the migration policy, re-attests every interval, and counts its
// verdicts.
func options(self, peer *demo.Platform, interval time.Duration, verdicts *atomic.Int64) ([]streams.Option, error) {
	id, err := self.Identity()
	if err != nil {
		return nil, err
	}
	att, err := self.Attester()
	if err != nil {
		return nil, err
	}
	rp, err := demo.RelyingParty(peer)
	if err != nil {
		return nil, err
	}
	return []streams.Option{
		streams.WithAttester(id, att),
		streams.WithPosture(self.Tracker),
		streams.WithRelyingParty(rp),
		streams.WithPosturePolicy(policy()),
		streams.WithInterval(interval),
		streams.WithObserver(func(ev streams.Event) {
			if ev.Kind == streams.EventVerified {
				verdicts.Add(1)
			}
		}),
	}, nil
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
