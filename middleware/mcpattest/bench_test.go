package mcpattest_test

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"slices"
	"testing"
	"time"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/middleware/mcpattest"
	"github.com/reattest/reattest/postauth/postauthtest"
)

// BenchmarkToolCall is one MCP tool call by the official SDK client
// (stateful session, SSE responses) over HTTP/2 and TLS 1.3 on loopback,
// client and server in this process, the client's RoundTripper the
// reattest transport everywhere. Compare within one run:
//
//   - search/adapter against search/bare: a harmless tool through the
//     adapter (which reads and classifies the body) against the bare SDK
//     handler;
//
//   - payment/prearmed (operation mode, the transport answers a pre-armed
//     request: one round trip, one attestation per call) against
//     payment/limit, the physical limit: the same call to the bare SDK
//     handler plus the raw signature operations an attestation contains
//     (two ECDSA P-256 signatures and two verifications).
//
//     go test ./middleware/mcpattest -run '^$' -bench ToolCall -benchmem -count 5
func BenchmarkToolCall(b *testing.B) {
	bare := newGateway(b, gatewayConfig{h2: true, bare: true})
	guarded := newGateway(b, gatewayConfig{h2: true, rules: []mcpattest.Rule{
		{Tools: []string{"payments.*"}, Mode: middleware.ModeOperation, PreArm: true},
		{Tools: []string{"admin.reset"}},
		{URIs: []string{"secrets://*"}},
	}})
	bareSession := bare.connect(b, bare.attesting(), nil)
	guardedSession := guarded.connect(b, guarded.attesting(), nil)
	search := searchIn{Query: "invoices"}
	pay := payIn{To: "acme", Amount: 25}
	run := func(b *testing.B, f func() error) {
		b.Helper()
		for range 20 { // warm up: connections, the pre-armed request
			if err := f(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if err := f(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("search/bare", func(b *testing.B) {
		run(b, func() error { _, err := callTool(bareSession, "search", search); return err })
	})
	b.Run("search/adapter", func(b *testing.B) {
		run(b, func() error { _, err := callTool(guardedSession, "search", search); return err })
	})
	b.Run("payment/bare", func(b *testing.B) {
		run(b, func() error { _, err := callTool(bareSession, "payments.transfer", pay); return err })
	})
	b.Run("payment/prearmed", func(b *testing.B) {
		before := guarded.Attester.Count()
		run(b, func() error { _, err := callTool(guardedSession, "payments.transfer", pay); return err })
		b.ReportMetric(float64(guarded.Attester.Count()-before)/float64(b.N+20), "attestations/op")
	})
	eaKey, attKey := postauthtest.NewKey(b), postauthtest.NewKey(b)
	cvInput, eatInput := make([]byte, 64+len("Exported Authenticator")+1+32), make([]byte, 180)
	rand.Read(cvInput)
	rand.Read(eatInput)
	signVerify := func(key *ecdsa.PrivateKey, msg []byte) error {
		d := sha256.Sum256(msg)
		sig, err := ecdsa.SignASN1(rand.Reader, key, d[:])
		if err != nil {
			return err
		}
		d = sha256.Sum256(msg)
		if !ecdsa.VerifyASN1(&key.PublicKey, d[:], sig) {
			b.Fatal("signature does not verify")
		}
		return nil
	}
	b.Run("payment/limit", func(b *testing.B) {
		run(b, func() error {
			if _, err := callTool(bareSession, "payments.transfer", pay); err != nil {
				return err
			}
			if err := signVerify(eaKey, cvInput); err != nil {
				return err
			}
			return signVerify(attKey, eatInput)
		})
	})
	// The same comparisons, paired: each iteration runs both sides one
	// after the other, so that load on a shared machine hits both alike;
	// the metrics are the medians of each side (µs) and their ratio.
	paired := func(b *testing.B, base, other func() error, baseName, otherName string) {
		for range 20 {
			if base() != nil || other() != nil {
				b.Fatal("warm-up failed")
			}
		}
		var bs, os []time.Duration
		b.ResetTimer()
		for b.Loop() {
			t0 := time.Now()
			if err := base(); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if err := other(); err != nil {
				b.Fatal(err)
			}
			bs, os = append(bs, t1.Sub(t0)), append(os, time.Since(t1))
		}
		mb, mo := median(bs), median(os)
		b.ReportMetric(float64(mb.Nanoseconds())/1e3, baseName+"-µs")
		b.ReportMetric(float64(mo.Nanoseconds())/1e3, otherName+"-µs")
		b.ReportMetric(float64(mo)/float64(mb), otherName+"/"+baseName)
	}
	b.Run("paired/search", func(b *testing.B) {
		paired(b,
			func() error { _, err := callTool(bareSession, "search", search); return err },
			func() error { _, err := callTool(guardedSession, "search", search); return err },
			"bare", "adapter")
	})
	b.Run("paired/payment", func(b *testing.B) {
		paired(b,
			func() error {
				if _, err := callTool(bareSession, "payments.transfer", pay); err != nil {
					return err
				}
				if err := signVerify(eaKey, cvInput); err != nil {
					return err
				}
				return signVerify(attKey, eatInput)
			},
			func() error { _, err := callTool(guardedSession, "payments.transfer", pay); return err },
			"limit", "prearmed")
	})
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
