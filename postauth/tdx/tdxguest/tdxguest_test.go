package tdxguest

import (
	"bytes"
	"context"
	"crypto"
	"os"
	"strings"
	"testing"
)

// TestNotATD: on a machine without TDX guest support (CI), the provider
// cannot be created, and the register's Read has nothing to read from.
func TestNotATD(t *testing.T) {
	if _, err := os.Stat("/dev/tdx_guest"); err == nil {
		t.Skip("this machine is a TD")
	}
	if _, err := NewQuoteProvider(); err == nil {
		t.Fatal("a quote provider without TDX")
	}
	r, _ := NewRTMRRegister(nil)
	if r.Hash() != crypto.SHA384 {
		t.Fatal("RTMR hash")
	}
	if _, err := os.Stat(rtmrSysfs); err != nil {
		if _, err := r.Read(context.Background()); err == nil {
			t.Fatal("read RTMR3 without an interface")
		}
	}
	if err := r.Extend(context.Background(), make([]byte, 32)); err == nil {
		t.Fatal("32-byte extend accepted")
	}
}

func TestParseRTMR(t *testing.T) {
	raw := bytes.Repeat([]byte{0xab}, 48)
	for _, in := range [][]byte{raw, []byte(strings.Repeat("ab", 48) + "\n")} {
		got, err := parseRTMR(in)
		if err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("parseRTMR(%q) = %x, %v", in, got, err)
		}
	}
	if _, err := parseRTMR([]byte("short")); err == nil {
		t.Fatal("short value accepted")
	}
}
