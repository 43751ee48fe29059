package h3_test

import (
	"net"
	"sync"
	"testing"
	"time"
)

// delayProxy forwards UDP datagrams between one client and a QUIC server,
// holding back the client's datagrams that carry Handshake or 1-RTT packets
// for delay. The client's first flight (Initial and 0-RTT packets) goes
// through at once, so the server reads 0-RTT requests while its handshake
// is still incomplete: the situation a replayed 0-RTT request creates.
type delayProxy struct {
	pc     net.PacketConn
	server *net.UDPAddr
	delay  time.Duration

	mu       sync.Mutex
	client   net.Addr
	upstream *net.UDPConn
}

func newDelayProxy(t *testing.T, server string, delay time.Duration) *delayProxy {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sa, _ := net.ResolveUDPAddr("udp", server)
	up, err := net.DialUDP("udp", nil, sa)
	if err != nil {
		t.Fatal(err)
	}
	p := &delayProxy{pc: pc, server: sa, delay: delay, upstream: up}
	t.Cleanup(func() { pc.Close(); up.Close() })
	go p.fromClient()
	go p.fromServer()
	return p
}

func (p *delayProxy) addr() string { return p.pc.LocalAddr().String() }

func (p *delayProxy) fromClient() {
	buf := make([]byte, 65535)
	for {
		n, from, err := p.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		p.client = from
		p.mu.Unlock()
		d := append([]byte(nil), buf[:n]...)
		if holdsHandshakeOr1RTT(d) {
			time.AfterFunc(p.delay, func() { p.upstream.Write(d) })
			continue
		}
		p.upstream.Write(d)
	}
}

func (p *delayProxy) fromServer() {
	buf := make([]byte, 65535)
	for {
		n, err := p.upstream.Read(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		c := p.client
		p.mu.Unlock()
		if c != nil {
			p.pc.WriteTo(buf[:n], c)
		}
	}
}

// holdsHandshakeOr1RTT walks the coalesced QUIC v1 packets of a datagram
// (RFC 9000 section 17) and reports whether one is a Handshake packet or a
// short-header (1-RTT) packet.
func holdsHandshakeOr1RTT(d []byte) bool {
	for len(d) > 0 {
		if d[0]&0x80 == 0 {
			return true // short header: 1-RTT
		}
		typ := (d[0] & 0x30) >> 4 // 0 Initial, 1 0-RTT, 2 Handshake, 3 Retry
		if typ == 2 {
			return true
		}
		i := 5 // first byte, version
		if len(d) < i+1 {
			return false
		}
		i += 1 + int(d[i]) // DCID
		if len(d) < i+1 {
			return false
		}
		i += 1 + int(d[i]) // SCID
		if typ == 0 {
			tokLen, n := varint(d[i:])
			if n == 0 {
				return false
			}
			i += n + int(tokLen)
		}
		length, n := varint(d[i:])
		if n == 0 {
			return false
		}
		i += n + int(length)
		if i > len(d) {
			return false
		}
		d = d[i:]
	}
	return false
}

func varint(b []byte) (uint64, int) {
	if len(b) == 0 {
		return 0, 0
	}
	n := 1 << (b[0] >> 6)
	if len(b) < n {
		return 0, 0
	}
	v := uint64(b[0] & 0x3f)
	for _, c := range b[1:n] {
		v = v<<8 | uint64(c)
	}
	return v, n
}
