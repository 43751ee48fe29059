package postauth

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/veraison/cmw"
)

// The hand-written CBOR record is byte for byte what veraison/cmw writes,
// for every head size of the type, the value and the indicator.
func TestEncodeCBORRecordMatchesVeraison(t *testing.T) {
	types := []string{"a/b", "application/eat+cwt", "application/eat+cwt; eat_profile=\"tag:x\"", "application/" + strings.Repeat("x", 250)}
	sizes := []int{1, 23, 24, 255, 256, 65535, 65536}
	inds := []cmw.Indicator{cmw.Evidence, cmw.AttestationResults, cmw.Evidence | cmw.AttestationResults, 23, 24, 255, 256, 1 << 20, ^cmw.Indicator(0)}
	for _, typ := range types {
		for _, n := range sizes {
			for _, ind := range inds {
				val := bytes.Repeat([]byte{0xa5}, n)
				rec, err := cmw.NewMonad(typ, val, ind)
				if err != nil {
					t.Fatal(err)
				}
				want, err := rec.MarshalCBOR()
				if err != nil {
					t.Fatal(err)
				}
				got := encodeCBORRecord(typ, val, uint64(ind))
				if !bytes.Equal(got, want) {
					t.Fatalf("type %d bytes, value %d bytes, ind %d: %x..., want %x...", len(typ), n, ind, got[:min(16, len(got))], want[:min(16, len(want))])
				}
				ev, gotInd, ok := decodeCBORRecord(got)
				if !ok || ev.Type != typ || !bytes.Equal(ev.Value, val) || gotInd != ind {
					t.Fatalf("type %d bytes, value %d bytes, ind %d: not read back (ok %v)", len(typ), n, ind, ok)
				}
			}
		}
	}
}

// Forms the fast path leaves to veraison/cmw.
func TestDecodeCBORRecordLeavesOtherForms(t *testing.T) {
	for name, b := range map[string][]byte{
		"indicator not shortest":  {0x83, 0x63, 'a', '/', 'b', 0x41, 1, 0x18, 4},
		"length not shortest":     {0x83, 0x78, 3, 'a', '/', 'b', 0x41, 1, 4},
		"indefinite value":        {0x83, 0x63, 'a', '/', 'b', 0x5f, 0x41, 1, 0xff, 4},
		"indefinite array":        {0x9f, 0x63, 'a', '/', 'b', 0x41, 1, 0xff},
		"type not UTF-8":          {0x82, 0x63, 'a', '/', 0xff, 0x41, 1},
		"trailing data":           {0x83, 0x63, 'a', '/', 'b', 0x41, 1, 4, 0},
		"short value":             {0x82, 0x63, 'a', '/', 'b', 0x42, 1},
		"content-format type":     {0x83, 0x19, 0x01, 0x0e, 0x41, 1, 4},
		"tagged value":            {0x83, 0x63, 'a', '/', 'b', 0xd8, 0x18, 0x41, 1, 4},
		"negative indicator":      {0x83, 0x63, 'a', '/', 'b', 0x41, 1, 0x20},
		"four items":              {0x84, 0x63, 'a', '/', 'b', 0x41, 1, 4, 4},
		"truncated 8-byte length": {0x82, 0x63, 'a', '/', 'b', 0x5b, 0, 0, 0},
	} {
		if _, _, ok := decodeCBORRecord(b); ok {
			t.Errorf("%s: read by the fast path", name)
		}
	}
}

// A decoded value does not alias the record (the caller may reuse it).
func TestDecodeCBORRecordCopiesValue(t *testing.T) {
	b := encodeCBORRecord("a/b", []byte{1, 2, 3}, 4)
	ev, _, ok := decodeCBORRecord(b)
	if !ok {
		t.Fatal("not read")
	}
	b[len(b)-2] = 9
	if ev.Value[2] != 3 {
		t.Fatal("the value aliases the record")
	}
}

// An indicator wider than uint is left to veraison/cmw (which refuses it
// on 32-bit platforms) instead of being truncated.
func TestDecodeCBORRecordWideIndicator(t *testing.T) {
	wide := []byte{0x83, 0x63, 'a', '/', 'b', 0x41, 1, 0x1b, 0, 0, 0, 1, 0, 0, 0, 4} // 2^32 + 4
	_, ind, ok := decodeCBORRecord(wide)
	if want := strconv.IntSize == 64; ok != want || (ok && uint64(ind) != 1<<32+4) {
		t.Fatalf("fast path: ok %v, indicator %d on a %d-bit platform", ok, ind, strconv.IntSize)
	}
	_, errFast := decodeCMW(wide)
	_, errLib := decodeCMWRecord(wide)
	if (errFast == nil) != (errLib == nil) {
		t.Fatalf("fast path and veraison/cmw disagree: %v / %v", errFast, errLib)
	}
}
