package detcbor

// Hand-written CBOR for the fixed shapes that are encoded and read on
// every exchange (the CMW record, the software EAT COSE_Sign1), where the
// reflection of the encoding modes above costs more than the work.

// AppendHead appends the CBOR head of major type major (0 to 7) with
// argument n, in its shortest form (RFC 8949 section 4.2.1).
func AppendHead(b []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(b, m|byte(n))
	case n <= 0xff:
		return append(b, m|24, byte(n))
	case n <= 0xffff:
		return append(b, m|25, byte(n>>8), byte(n))
	case n <= 0xffffffff:
		return append(b, m|26, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, m|27, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// HeadLen is the length of the shortest head with argument n.
func HeadLen(n uint64) int {
	switch {
	case n < 24:
		return 1
	case n <= 0xff:
		return 2
	case n <= 0xffff:
		return 3
	case n <= 0xffffffff:
		return 5
	}
	return 9
}

// ReadArg reads the argument of the CBOR head at the start of b: its
// value, the head's length, and whether it is a definite, complete head
// (not an indefinite length, a reserved value or a truncated head). It
// does not require the shortest form: compare headLen with [HeadLen].
func ReadArg(b []byte) (n uint64, headLen int, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	ai := b[0] & 0x1f
	switch {
	case ai < 24:
		return uint64(ai), 1, true
	case ai == 24 && len(b) >= 2:
		return uint64(b[1]), 2, true
	case ai == 25 && len(b) >= 3:
		return uint64(b[1])<<8 | uint64(b[2]), 3, true
	case ai == 26 && len(b) >= 5:
		return uint64(b[1])<<24 | uint64(b[2])<<16 | uint64(b[3])<<8 | uint64(b[4]), 5, true
	case ai == 27 && len(b) >= 9:
		var v uint64
		for _, c := range b[1:9] {
			v = v<<8 | uint64(c)
		}
		return v, 9, true
	}
	return 0, 0, false
}
