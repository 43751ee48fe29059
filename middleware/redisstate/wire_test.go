package redisstate

import (
	"strings"
	"testing"
	"time"

	"github.com/reattest/reattest/middleware"
)

func TestEventWireRoundTrip(t *testing.T) {
	key := middleware.Identity{Kind: middleware.IdentityKey, Value: strings.Repeat("ab", 32)}
	until := time.UnixMilli(1_900_000_000_123)
	for _, e := range []middleware.Event{
		{Kind: middleware.EventRevoke, Identity: key, Until: until, Origin: "r1", Reason: "compromised"},
		{Kind: middleware.EventUnrevoke, Identity: middleware.Identity{Kind: middleware.IdentitySubject, Value: "CN=agent-7,O=Acme"}},
		{Kind: middleware.EventInvalidate, Identity: key, Posture: strings.Repeat("cd", 32), Reason: "posture_changed"},
		{Kind: middleware.EventInvalidate, Identity: key},
	} {
		b, err := encodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := decodeEvent(b)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if got.Kind != e.Kind || got.Identity != e.Identity || !got.Until.Equal(e.Until) || got.Posture != e.Posture ||
			got.Origin != e.Origin || got.Reason != e.Reason {
			t.Fatalf("round trip of %+v gave %+v", e, got)
		}
	}
	b, err := encodeEvent(middleware.Event{Kind: middleware.EventPolicy, Policy: &middleware.PolicyDocument{Version: 9}})
	if err != nil {
		t.Fatal(err)
	}
	if e, v, err := decodeEvent(b); err != nil || e.Kind != middleware.EventPolicy || v != 9 || e.Policy != nil {
		t.Fatalf("policy message: %+v %d %v", e, v, err)
	}
	for _, bad := range []string{
		``, `{}`, `{"v":2,"kind":"revoke","id":"machine:00","until":1}`,
		`{"v":1,"kind":"revoke","id":"machine:00"}`,
		`{"v":1,"kind":"revoke","id":"machine:0","until":1}`,
		`{"v":1,"kind":"nope","id":"machine:00"}`,
		`{"v":1,"kind":"invalidate","id":"machine:00","posture":"xyz"}`,
		`{"v":1,"kind":"invalidate","id":"machine:00","extra":1}`,
		`{"v":1,"kind":"policy","version":0}`,
		`{"v":1,"kind":"unrevoke","id":"machine:00"} {}`,
		`{"v":1,"kind":"unrevoke","id":"subject:a\u0000b"}`,
		`{"v":1,"kind":"unrevoke","id":"machine:00","reason":"` + strings.Repeat("x", 300) + `"}`,
		strings.Repeat(" ", maxMessageLen+1),
	} {
		if _, _, err := decodeEvent([]byte(bad)); err == nil {
			t.Errorf("accepted %.60q", bad)
		}
	}
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(`{"v":1,"kind":"revoke","id":"key:abab","until":1900000000123,"origin":"r1","reason":"x"}`))
	f.Add([]byte(`{"v":1,"kind":"invalidate","id":"machine:00","posture":"cdcd"}`))
	f.Add([]byte(`{"v":1,"kind":"policy","version":3}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, _, err := decodeEvent(data)
		if err != nil || e.Kind == middleware.EventPolicy {
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("decoded an invalid event: %v", err)
		}
		b, err := encodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		e2, _, err := decodeEvent(b)
		if err != nil || e2.Identity != e.Identity || e2.Kind != e.Kind || !e2.Until.Equal(e.Until) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
