package tpm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// TCG event types this package names (PC Client Platform Firmware
// Profile). Other types are reported by number.
const (
	// EventNoAction (EV_NO_ACTION) events are not extended into any PCR.
	EventNoAction = 0x00000003
)

// Event is one event of a TCG boot event log, with its SHA-256 digest.
type Event struct {
	// PCR is the PCR index the event was extended into.
	PCR int
	// Type is the TCG event type (EV_...).
	Type uint32
	// Digest is the event's SHA-256 digest: what was extended.
	Digest []byte
	// Data is the event data (not covered by the PCR: only Digest is).
	Data []byte
}

// ParseEventLog parses a TCG crypto-agile boot event log (PC Client
// Platform Firmware Profile, "Spec ID Event03"): the first event, in the
// SHA-1 log format, must be the EV_NO_ACTION Spec ID event that lists the
// digest algorithms and sizes, and every later event must carry a SHA-256
// digest. Integers are little-endian. Logs in the SHA-1-only format (old
// BIOS firmware) are refused. The result is not verified: only a replay
// against quoted PCR values gives it meaning.
func ParseEventLog(raw []byte) ([]Event, error) {
	if len(raw) == 0 || len(raw) > MaxEventLogLen {
		return nil, errors.New("tpm: event log size out of range")
	}
	r := &leReader{b: raw}
	// TCG_PCR_EVENT: PCRIndex, EventType, SHA-1 digest, EventSize, Event.
	pcr, typ := r.u32(), r.u32()
	r.bytes(20)
	spec := r.bytes(int(r.u32()))
	if r.err != nil || pcr != 0 || typ != EventNoAction {
		return nil, errors.New("tpm: the event log does not start with a Spec ID event")
	}
	sizes, err := parseSpecID(spec)
	if err != nil {
		return nil, err
	}
	var out []Event
	for !r.done() {
		// TCG_PCR_EVENT2: PCRIndex, EventType, TPML_DIGEST_VALUES,
		// EventSize, Event.
		e := Event{PCR: int(r.u32()), Type: r.u32()}
		count := r.u32()
		if r.err != nil || count == 0 || int(count) > len(sizes) {
			return nil, fmt.Errorf("tpm: event %d: bad digest count", len(out)+1)
		}
		for range count {
			alg := r.u16()
			size, ok := sizes[alg]
			if !ok {
				return nil, fmt.Errorf("tpm: event %d: digest algorithm %#04x not in the Spec ID event", len(out)+1, alg)
			}
			d := r.bytes(int(size))
			if alg == tpmAlgSHA256 {
				if e.Digest != nil {
					return nil, fmt.Errorf("tpm: event %d: two SHA-256 digests", len(out)+1)
				}
				e.Digest = slices.Clone(d)
			}
		}
		e.Data = slices.Clone(r.bytes(int(r.u32())))
		if r.err != nil {
			return nil, fmt.Errorf("tpm: event %d: %w", len(out)+1, r.err)
		}
		if e.PCR < 0 || e.PCR >= NumPCRs {
			return nil, fmt.Errorf("tpm: event %d: PCR %d out of range", len(out)+1, e.PCR)
		}
		if e.Digest == nil {
			return nil, fmt.Errorf("tpm: event %d has no SHA-256 digest", len(out)+1)
		}
		out = append(out, e)
	}
	return out, nil
}

const tpmAlgSHA256 = 0x000B

// specIDSignature starts the Spec ID event of a crypto-agile log.
var specIDSignature = []byte("Spec ID Event03\x00")

// parseSpecID parses the TCG_EfiSpecIDEvent and returns the digest size
// of each algorithm; SHA-256 must be listed with size 32.
func parseSpecID(b []byte) (map[uint16]uint16, error) {
	r := &leReader{b: b}
	sig := r.bytes(16)
	r.u32()           // platformClass
	r.bytes(2)        // specVersionMinor, specVersionMajor
	r.bytes(2)        // specErrata, uintnSize
	n := int(r.u32()) // numberOfAlgorithms
	if r.err != nil || !bytes.Equal(sig, specIDSignature) {
		return nil, errors.New("tpm: the event log is not a crypto-agile log (no Spec ID Event03)")
	}
	if n == 0 || n > 8 {
		return nil, errors.New("tpm: bad algorithm count in the Spec ID event")
	}
	sizes := make(map[uint16]uint16, n)
	for range n {
		alg, size := r.u16(), r.u16()
		if _, dup := sizes[alg]; dup || size == 0 || size > 64 {
			return nil, errors.New("tpm: bad algorithm list in the Spec ID event")
		}
		sizes[alg] = size
	}
	r.bytes(int(r.u8())) // vendorInfo
	if r.err != nil || !r.done() {
		return nil, errors.New("tpm: malformed Spec ID event")
	}
	if sizes[tpmAlgSHA256] != sha256.Size {
		return nil, errors.New("tpm: the event log has no SHA-256 digests")
	}
	return sizes, nil
}

// startupLocality is the signature of the EV_NO_ACTION event that records
// the locality of TPM2_Startup, which sets PCR 0's initial value.
var startupLocality = []byte("StartupLocality\x00")

// ReplayEventLog computes the SHA-256 PCR values the events produce from
// the initial values: zero, except PCR 0 after a StartupLocality event
// (its last byte is the locality). EV_NO_ACTION events are not extended.
// Only PCRs that some event names are in the result.
func ReplayEventLog(events []Event) map[int][]byte {
	out := map[int][]byte{}
	for _, e := range events {
		if e.Type == EventNoAction {
			if e.PCR == 0 && len(e.Data) == 17 && bytes.Equal(e.Data[:16], startupLocality) {
				if _, seen := out[0]; !seen {
					init := make([]byte, PCRSize)
					init[PCRSize-1] = e.Data[16]
					out[0] = init
				}
			}
			continue
		}
		cur, ok := out[e.PCR]
		if !ok {
			cur = make([]byte, PCRSize)
		}
		h := sha256.New()
		h.Write(cur)
		h.Write(e.Digest)
		out[e.PCR] = h.Sum(nil)
	}
	return out
}

// checkEventLog parses the log and requires that it replays, for every
// quoted PCR it names, to the quoted value. Events for PCRs outside the
// quote cannot be checked: they are dropped. It returns the checked
// events.
func checkEventLog(raw []byte, quoted map[int][]byte) ([]Event, error) {
	events, err := ParseEventLog(raw)
	if err != nil {
		return nil, err
	}
	replayed := ReplayEventLog(events)
	for pcr, v := range replayed {
		q, ok := quoted[pcr]
		if !ok {
			continue
		}
		if !bytes.Equal(q, v) { // mutation: tpm event log replay
			return nil, fmt.Errorf("tpm: the event log does not replay to the quoted PCR %d", pcr)
		}
	}
	return slices.DeleteFunc(events, func(e Event) bool {
		_, ok := quoted[e.PCR]
		return !ok || e.Type == EventNoAction
	}), nil
}

// leReader reads little-endian integers and byte strings; the first
// shortfall sets err and every later read returns zero values.
type leReader struct {
	b   []byte
	err error
}

func (r *leReader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = errors.New("truncated")
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *leReader) u8() uint8 {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *leReader) u16() uint16 {
	if b := r.take(2); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (r *leReader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (r *leReader) bytes(n int) []byte { return r.take(n) }

func (r *leReader) done() bool { return r.err == nil && len(r.b) == 0 }
