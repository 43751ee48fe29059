package streams

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// BenchmarkIdleConnMemory: heap and goroutines held per idle, mutually
// attested TLS connection (both ends in this process, so each op is two
// endpoints), against plain TLS connections in the same run.
//
//	go test ./streams -run '^$' -bench IdleConnMemory -benchtime 200x
func BenchmarkIdleConnMemory(b *testing.B) {
	e := newEnv(b)
	serverOpts := []Option{e.serverAttests(b, nil), e.requireClient(b), WithInterval(time.Hour)}
	clientOpts := []Option{e.clientAttests(b, nil), e.requireServer(b), WithInterval(time.Hour)}
	measure := func(b *testing.B, open func() func()) {
		var closers []func()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		for i := 0; i < b.N; i++ {
			closers = append(closers, open())
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(b.N), "heap-B/conn")
		b.ReportMetric(float64(runtime.NumGoroutine()-g0)/float64(b.N), "goroutines/conn")
		b.StopTimer()
		for _, c := range closers {
			c()
		}
	}
	b.Run("plain-tls", func(b *testing.B) {
		ln, err := Listen("tcp", "127.0.0.1:0", e.serverTLS())
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		measure(b, func() func() {
			acc := make(chan error, 1)
			var sc interface{ Close() error }
			go func() {
				c, err := ln.inner.Accept()
				if err == nil {
					tc := tlsServer(c, ln.config)
					err = tc.Handshake()
					sc = tc
				}
				acc <- err
			}()
			cc, err := tlsDial(ln.Addr().String(), TLSConfig(e.clientTLS()))
			if err != nil || <-acc != nil {
				b.Fatal(err)
			}
			return func() { cc.Close(); sc.Close() }
		})
	})
	b.Run("attested", func(b *testing.B) {
		ln, err := Listen("tcp", "127.0.0.1:0", e.serverTLS(), serverOpts...)
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		ctx := context.Background()
		measure(b, func() func() {
			acc := make(chan *Conn, 1)
			go func() {
				c, _ := ln.AcceptConn()
				acc <- c
			}()
			cc, err := Dial(ctx, "tcp", ln.Addr().String(), e.clientTLS(), clientOpts...)
			if err != nil {
				b.Fatal(err)
			}
			sc := <-acc
			if err := cc.Ready(ctx); err != nil {
				b.Fatal(err)
			}
			if err := sc.Ready(ctx); err != nil {
				b.Fatal(err)
			}
			return func() { cc.Close(); sc.Close() }
		})
	})
}
