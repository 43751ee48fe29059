package tpm_test

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/reattest/reattest/postauth/tpm"
)

// logEvent is an event of a test event log.
type logEvent struct {
	pcr  int
	typ  uint32
	data []byte
}

// digest is the event's SHA-256 digest (of its data, as firmware measures
// most events).
func (e logEvent) digest() []byte {
	d := sha256.Sum256(e.data)
	return d[:]
}

// buildLog encodes a crypto-agile TCG event log (SHA-1 and SHA-256
// digests), starting with the Spec ID event.
func buildLog(events ...logEvent) []byte {
	le := binary.LittleEndian
	var spec bytes.Buffer
	spec.WriteString("Spec ID Event03\x00")
	spec.Write(le.AppendUint32(nil, 0)) // platformClass
	spec.Write([]byte{0, 2, 0, 2})      // minor, major, errata, uintnSize
	spec.Write(le.AppendUint32(nil, 2)) // numberOfAlgorithms
	spec.Write(le.AppendUint16(nil, 0x0004))
	spec.Write(le.AppendUint16(nil, 20))
	spec.Write(le.AppendUint16(nil, 0x000B))
	spec.Write(le.AppendUint16(nil, 32))
	spec.WriteByte(0) // vendorInfoSize
	var b bytes.Buffer
	b.Write(le.AppendUint32(nil, 0))
	b.Write(le.AppendUint32(nil, tpm.EventNoAction))
	b.Write(make([]byte, 20))
	b.Write(le.AppendUint32(nil, uint32(spec.Len())))
	b.Write(spec.Bytes())
	for _, e := range events {
		b.Write(le.AppendUint32(nil, uint32(e.pcr)))
		b.Write(le.AppendUint32(nil, e.typ))
		b.Write(le.AppendUint32(nil, 2))
		s1 := sha1.Sum(e.data)
		b.Write(le.AppendUint16(nil, 0x0004))
		b.Write(s1[:])
		b.Write(le.AppendUint16(nil, 0x000B))
		b.Write(e.digest())
		b.Write(le.AppendUint32(nil, uint32(len(e.data))))
		b.Write(e.data)
	}
	return b.Bytes()
}

// startupLocality is the EV_NO_ACTION event that records TPM2_Startup's
// locality.
func startupLocality(loc byte) logEvent {
	return logEvent{pcr: 0, typ: tpm.EventNoAction, data: append([]byte("StartupLocality\x00"), loc)}
}

func TestParseEventLog(t *testing.T) {
	good := buildLog(startupLocality(3), logEvent{pcr: 0, typ: 0x8, data: []byte("S-CRTM")}, logEvent{pcr: 7, typ: 0x80000001, data: []byte("SecureBoot")})
	events, err := tpm.ParseEventLog(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 3 || events[1].Type != 0x8 || events[2].PCR != 7 || !bytes.Equal(events[2].Data, []byte("SecureBoot")) {
		t.Fatalf("events %+v", events)
	}
	pcrs := tpm.ReplayEventLog(events)
	init := make([]byte, 32)
	init[31] = 3 // locality 3
	h := sha256.New()
	h.Write(init)
	h.Write(logEvent{data: []byte("S-CRTM")}.digest())
	if !bytes.Equal(pcrs[0], h.Sum(nil)) || len(pcrs) != 2 {
		t.Fatalf("replay %x", pcrs)
	}
	le := binary.LittleEndian
	sha1Only := append(le.AppendUint32(le.AppendUint32(nil, 0), 8), make([]byte, 24)...)
	cases := map[string][]byte{
		"empty":        nil,
		"sha1-format":  sha1Only,
		"truncated":    good[:len(good)-1],
		"trailing":     append(bytes.Clone(good), 0),
		"pcr-24":       buildLog(logEvent{pcr: 24, typ: 1}),
		"huge":         make([]byte, tpm.MaxEventLogLen+1),
		"first-not-no": append(bytes.Clone(good[:4]), append([]byte{1, 0, 0, 0}, good[8:]...)...),
	}
	// An event without a SHA-256 digest: one SHA-1 digest only.
	noSHA256 := buildLog()
	noSHA256 = append(noSHA256, le.AppendUint32(nil, 1)...)
	noSHA256 = append(noSHA256, le.AppendUint32(nil, 1)...)
	noSHA256 = append(noSHA256, le.AppendUint32(nil, 1)...)
	noSHA256 = append(noSHA256, le.AppendUint16(nil, 0x0004)...)
	noSHA256 = append(noSHA256, make([]byte, 20)...)
	noSHA256 = append(noSHA256, le.AppendUint32(nil, 0)...)
	cases["no-sha256-digest"] = noSHA256
	for name, b := range cases {
		if _, err := tpm.ParseEventLog(b); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func FuzzParseEventLog(f *testing.F) {
	f.Add(buildLog(startupLocality(0), logEvent{pcr: 0, typ: 8, data: []byte("x")}))
	f.Add(buildLog())
	f.Fuzz(func(t *testing.T, b []byte) {
		events, err := tpm.ParseEventLog(b)
		if err != nil {
			return
		}
		for _, e := range events {
			if e.PCR < 0 || e.PCR >= tpm.NumPCRs || len(e.Digest) != 32 {
				t.Fatalf("event %+v", e)
			}
		}
		for pcr, v := range tpm.ReplayEventLog(events) {
			if pcr < 0 || pcr >= tpm.NumPCRs || len(v) != 32 {
				t.Fatalf("replayed PCR %d: %x", pcr, v)
			}
		}
	})
}
