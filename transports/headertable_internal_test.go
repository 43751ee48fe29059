package transports

import (
	"net/http"
	"testing"

	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/postauthtest"
)

// A Transport with an attester sends its Attestation header unindexed: its
// HPACK encoder table is smaller than the header, unless the base chose a
// size; the caller's base is never modified.
func TestAttesterHeaderTableSize(t *testing.T) {
	att, _ := postauthtest.Software(t)
	cert := postauthtest.New(t).Issue(t, "agent")
	id, err := postauth.IdentityFromTLS(&cert)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		base   *http.Transport
		attest bool
		want   int
	}{
		{"attester-default", &http.Transport{}, true, ClientHeaderTableSize},
		{"attester-base-chose", &http.Transport{HTTP2: &http.HTTP2Config{MaxEncoderHeaderTableSize: 8192, MaxReadFrameSize: 1 << 20}}, true, 8192},
		{"no-attester", &http.Transport{}, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []Option
			if tc.attest {
				opts = append(opts, WithAttester(id, att), WithAttestTo("example.com"))
			}
			before := tc.base.HTTP2
			tr, err := NewTransport(tc.base, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			got := 0
			if tr.base.HTTP2 != nil {
				got = tr.base.HTTP2.MaxEncoderHeaderTableSize
			}
			if got != tc.want {
				t.Fatalf("encoder table = %d, want %d", got, tc.want)
			}
			if tc.base.HTTP2 != before || (before != nil && before.MaxEncoderHeaderTableSize != 8192) {
				t.Fatal("the caller's base transport was modified")
			}
			if before != nil && tr.base.HTTP2.MaxReadFrameSize != before.MaxReadFrameSize {
				t.Fatal("other HTTP/2 settings of the base were lost")
			}
		})
	}
}
