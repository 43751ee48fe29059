package middleware

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/reattest/reattest/internal/strictdoc"
	"github.com/reattest/reattest/posture"
)

// Limits of a policy document.
const (
	// MaxPolicyDocumentLen bounds an encoded [PolicyDocument].
	MaxPolicyDocumentLen = posture.MaxPolicyLen
	// MaxPolicyVersion is the largest version of a [PolicyDocument]
	// (2^53 - 1, exact in every JSON implementation).
	MaxPolicyVersion = 1<<53 - 1
	maxPolicyRoutes  = 1024
	maxRouteNameLen  = 256
)

// PolicyDocument is a versioned set of route policies that every replica
// sharing a [Coordinator] applies: plain data, loadable from JSON
// ([ParsePolicyDocument]). A replica applies a document only if its
// Version is greater than the one it has: documents are never rolled back.
//
// A document adds to the routes' own policies: a request must pass both
// the route's [Route.Posture] and Appraise and the document's policy for
// the route. So a document can tighten what a replica's code allows, never
// loosen it. When a newer document arrives, every cached verdict is checked
// against it before it serves again, and dropped if the document denies it.
type PolicyDocument struct {
	// Version orders documents: 1 to MaxPolicyVersion.
	Version uint64 `json:"version"`
	// Routes maps a route's name (its Name, its pattern, or the name its
	// router reports: what [Decision.Route] shows) to its policy. Routes
	// not named here keep their own policy only.
	Routes map[string]RoutePolicy `json:"routes,omitempty"`
}

// RoutePolicy is a [PolicyDocument]'s policy for one route.
type RoutePolicy struct {
	// Posture, if set, is a posture policy every verdict of the route must
	// pass, in addition to the route's own ([postauth.AppraisePosture]).
	Posture *posture.Policy `json:"posture,omitempty"`
}

// Validate checks d: a version in range, at most 1024 routes with names of
// 1 to 256 bytes of UTF-8, and valid posture policies.
func (d *PolicyDocument) Validate() error {
	if d == nil {
		return errors.New("middleware: nil policy document")
	}
	if d.Version == 0 || d.Version > MaxPolicyVersion {
		return fmt.Errorf("middleware: policy document version %d: want 1 to %d", d.Version, uint64(MaxPolicyVersion))
	}
	if len(d.Routes) > maxPolicyRoutes {
		return fmt.Errorf("middleware: policy document: more than %d routes", maxPolicyRoutes)
	}
	for name, rp := range d.Routes {
		if name == "" || len(name) > maxRouteNameLen || !utf8.ValidString(name) {
			return fmt.Errorf("middleware: policy document: route name %q: want 1 to %d bytes of UTF-8", name, maxRouteNameLen)
		}
		if rp.Posture != nil {
			if err := rp.Posture.Validate(); err != nil {
				return fmt.Errorf("middleware: policy document: route %q: %w", name, err)
			}
		}
	}
	return nil
}

// Marshal encodes d as JSON, after validating it.
func (d *PolicyDocument) Marshal() ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxPolicyDocumentLen {
		return nil, fmt.Errorf("middleware: policy document larger than %d bytes", MaxPolicyDocumentLen)
	}
	return b, nil
}

// ParsePolicyDocument parses a JSON policy document:
//
//	{"version": 7, "routes": {"PUT /v1/config": {"posture": {"tools": {"deny": ["shell"]}}}}}
//
// Parsing is strict (internal/strictdoc): unknown fields, duplicate keys
// (route names compared exactly, field names as encoding/json folds them),
// trailing data and documents over MaxPolicyDocumentLen bytes are errors,
// each posture policy is parsed as [posture.ParsePolicy] does, and the
// document is validated.
func ParsePolicyDocument(data []byte) (*PolicyDocument, error) {
	var raw struct {
		Version uint64 `json:"version"`
		Routes  map[string]struct {
			Posture json.RawMessage `json:"posture"`
		} `json:"routes"`
	}
	if err := (strictdoc.Doc{Noun: "policy document", Max: MaxPolicyDocumentLen}).Decode(data, "json", &raw); err != nil {
		return nil, fmt.Errorf("middleware: %w", err)
	}
	d := &PolicyDocument{Version: raw.Version}
	if len(raw.Routes) > maxPolicyRoutes {
		return nil, fmt.Errorf("middleware: policy document: more than %d routes", maxPolicyRoutes)
	}
	for name, r := range raw.Routes {
		var rp RoutePolicy
		if len(r.Posture) > 0 && !bytes.Equal(bytes.TrimSpace(r.Posture), []byte("null")) {
			p, err := posture.ParsePolicy(r.Posture, "json")
			if err != nil {
				return nil, fmt.Errorf("middleware: policy document: route %q: %w", name, err)
			}
			rp.Posture = p
		}
		if d.Routes == nil {
			d.Routes = make(map[string]RoutePolicy, len(raw.Routes))
		}
		d.Routes[name] = rp
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return d, nil
}
