package quicstream_test

import (
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/reattest/reattest/streams"
	"github.com/reattest/reattest/streams/quicstream"
)

// BenchmarkBulk: the cost of periodic re-attestation on an attested QUIC
// connection carrying bulk data. Two mutually attested connections run
// side by side: "none" never re-attests, "reattest-1s" re-attests its peer
// every second, both ways. Each iteration sends 4 MiB on one connection
// and waits until the receiver has read it all, then the same on the
// other, so that the machine's load affects both alike. It reports each
// connection's throughput and their ratio (reattest-1s / none; the target
// is at least 0.95). Run it long enough for several re-attestations:
//
//	go test ./streams/quicstream -run '^$' -bench Bulk -benchtime 20x
func BenchmarkBulk(b *testing.B) {
	type side struct {
		st       *quicstream.Stream
		progress chan int64
		verdicts atomic.Int64
		busy     time.Duration
	}
	const round = 4 << 20
	e := newEnv(b)
	ctx := context.Background()
	open := func(interval time.Duration) *side {
		sd := &side{progress: make(chan int64, 64)}
		count := streams.WithObserver(func(ev streams.Event) {
			if ev.Kind == streams.EventVerified {
				sd.verdicts.Add(1)
			}
		})
		client, server := pair(b, e,
			[]streams.Option{e.serverAttests(b), e.requireClient(b), streams.WithInterval(interval), count},
			[]streams.Option{e.clientAttests(b), e.requireServer(b), streams.WithInterval(interval), count})
		st, err := client.OpenStream(ctx)
		if err != nil {
			b.Fatal(err)
		}
		st.Write([]byte{0})
		in, err := server.AcceptStream(ctx)
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			buf := make([]byte, 64<<10)
			io.ReadFull(in, buf[:1])
			var got int64
			for {
				n, err := in.Read(buf)
				got += int64(n)
				if got >= round {
					sd.progress <- got
					got = 0
				}
				if err != nil {
					close(sd.progress)
					return
				}
			}
		}()
		sd.st = st
		return sd
	}
	none, reattest := open(-1), open(time.Second)
	chunk := make([]byte, 1<<20)
	send := func(sd *side) {
		start := time.Now()
		for sent := 0; sent < round; sent += len(chunk) {
			if _, err := sd.st.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		if _, ok := <-sd.progress; !ok {
			b.Fatal("receiver ended")
		}
		sd.busy += time.Since(start)
	}
	v0 := reattest.verdicts.Load()
	b.SetBytes(2 * round)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%2 == 0 {
			send(none)
			send(reattest)
		} else {
			send(reattest)
			send(none)
		}
	}
	b.StopTimer()
	mbps := func(sd *side) float64 { return float64(b.N) * round / sd.busy.Seconds() / 1e6 }
	b.ReportMetric(mbps(none), "MB/s-none")
	b.ReportMetric(mbps(reattest), "MB/s-reattest-1s")
	b.ReportMetric(mbps(reattest)/mbps(none), "ratio")
	b.ReportMetric(float64(reattest.verdicts.Load()-v0), "reattestations")
	b.ReportMetric(none.busy.Seconds()+reattest.busy.Seconds(), "s")
}

// BenchmarkConnect: time from connect to the first verified application
// byte, against a plain QUIC connect in the same run. Each iteration
// dials, opens a stream, writes one byte that the server reads and echoes,
// and reads the echo. "attested" attests both ways (software EAT Evidence)
// before the stream may open; "plain-quic" is quic-go alone.
//
//	go test ./streams/quicstream -run '^$' -bench Connect
func BenchmarkConnect(b *testing.B) {
	e := newEnv(b)
	b.Run("plain-quic", func(b *testing.B) {
		stc := e.serverTLS()
		stc.NextProtos = []string{"bench"}
		ln, err := quic.ListenAddr("127.0.0.1:0", stc, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				qc, err := ln.Accept(context.Background())
				if err != nil {
					return
				}
				go func() {
					st, err := qc.AcceptStream(context.Background())
					if err != nil {
						return
					}
					echoOne(st)
				}()
			}
		}()
		ctc := e.clientTLS()
		ctc.NextProtos = []string{"bench"}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			qc, err := quic.DialAddr(context.Background(), ln.Addr().String(), ctc, nil)
			if err != nil {
				b.Fatal(err)
			}
			st, err := qc.OpenStreamSync(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			roundTrip(b, st)
			qc.CloseWithError(0, "")
		}
	})
	b.Run("attested", func(b *testing.B) {
		ln, err := quicstream.Listen("127.0.0.1:0", e.serverTLS(), nil, e.serverAttests(b), e.requireClient(b))
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept(context.Background())
				if err != nil {
					return
				}
				go func() {
					st, err := c.AcceptStream(context.Background())
					if err != nil {
						return
					}
					echoOne(st)
				}()
			}
		}()
		opts := []streams.Option{e.clientAttests(b), e.requireServer(b)}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			c, err := quicstream.Dial(context.Background(), ln.Addr().String(), e.clientTLS(), nil, opts...)
			if err != nil {
				b.Fatal(err)
			}
			st, err := c.OpenStream(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			roundTrip(b, st)
			c.Close()
		}
	})
}

func echoOne(st io.ReadWriter) {
	one := make([]byte, 1)
	if _, err := io.ReadFull(st, one); err == nil {
		st.Write(one)
	}
}

func roundTrip(b *testing.B, st io.ReadWriter) {
	if _, err := st.Write([]byte{1}); err != nil {
		b.Fatal(err)
	}
	one := make([]byte, 1)
	if _, err := io.ReadFull(st, one); err != nil {
		b.Fatal(err)
	}
}
