package postauth_test

import (
	"errors"
	"testing"

	"github.com/reattest/reattest/postauth"
)

// JSON CMW records whose type or value is not a string, or whose indicator
// is not a number, are refused before veraison/cmw sees them: cmw v0.2.0
// panics on a one-byte literal value (["",0]) and reads a longer literal
// (true, null) as base64url of its inner characters. The unrecovered path
// is what the fuzz target calls: it must not panic either.
func TestDecodeCMWRefusesNonStringJSON(t *testing.T) {
	for _, in := range []string{
		`["",0]`,
		`["a",0]`,
		`["application/eat+cwt",true]`,
		`["application/eat+cwt",null]`,
		`["application/eat+cwt",{}]`,
		`["application/eat+cwt",12]`,
		`[7,"AAAA"]`,
		`["application/eat+cwt","AAAA",true]`,
		`["application/eat+cwt","AAAA","4"]`,
	} {
		for name, decode := range map[string]func([]byte) (postauth.Evidence, error){
			"DecodeCMW": postauth.DecodeCMW, "unrecovered": postauth.DecodeCMWUnrecovered,
		} {
			ev, err := decode([]byte(in))
			if !errors.Is(err, postauth.ErrUnsupportedCMW) {
				t.Errorf("%s(%s) = %q %x, %v", name, in, ev.Type, ev.Value, err)
			}
		}
	}
	// Well-typed records still decode, with or without an indicator.
	for _, in := range []string{`["application/eat+cwt","AAAA"]`, `[ "application/eat+cwt" , "AAAA" , 4 ]`} {
		if _, err := postauth.DecodeCMWUnrecovered([]byte(in)); err != nil {
			t.Errorf("%s: %v", in, err)
		}
	}
}
