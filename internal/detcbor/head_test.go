package detcbor

import (
	"bytes"
	"testing"
)

// AppendHead writes what the deterministic encoder writes, HeadLen is its
// length, and ReadArg reads it back, at every head size's boundaries.
func TestHead(t *testing.T) {
	for _, n := range []uint64{0, 23, 24, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, 1<<64 - 1} {
		for _, major := range []byte{0, 2, 3, 4} {
			got := AppendHead(nil, major, n)
			var want []byte
			var err error
			switch major {
			case 0:
				want, err = Enc.Marshal(n)
			case 2, 3, 4:
				// The head of a string or array of n items, from the
				// encoder's own output for a small n only.
				if n > 255 {
					continue
				}
				switch major {
				case 2:
					want, err = Enc.Marshal(make([]byte, n))
				case 3:
					want, err = Enc.Marshal(string(make([]byte, n)))
				case 4:
					want, err = Enc.Marshal(make([]int, n))
				}
				want = want[:HeadLen(n)]
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) || len(got) != HeadLen(n) {
				t.Fatalf("major %d, n %d: %x, want %x (HeadLen %d)", major, n, got, want, HeadLen(n))
			}
			v, hl, ok := ReadArg(got)
			if !ok || v != n || hl != len(got) || got[0]>>5 != major {
				t.Fatalf("major %d, n %d: read back %d, %d, %v", major, n, v, hl, ok)
			}
			if _, _, ok := ReadArg(got[:len(got)-1]); len(got) > 1 && ok {
				t.Fatalf("major %d, n %d: a truncated head reads", major, n)
			}
		}
	}
	for _, b := range [][]byte{nil, {0x1c}, {0x5f}, {0x9f}, {0xff}} {
		if _, _, ok := ReadArg(b); ok {
			t.Fatalf("%x reads as a definite head", b)
		}
	}
}
