package arch

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/reattest/reattest"

type pkg struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Imports    []string
	Deps       []string
}

// list returns the module's packages (without tests) as go list sees them.
func list(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func rel(path string) string { return strings.TrimPrefix(strings.TrimPrefix(path, module), "/") }

// layer names the layer of a package of the module (path relative to the
// module) and the module packages it may import. A package no rule covers
// fails the test: a new package needs a decision here.
func layer(p string) (name string, may func(dep string) bool, ok bool) {
	under := func(dep string, roots ...string) bool {
		for _, r := range roots {
			if dep == r || strings.HasPrefix(dep, r+"/") {
				return true
			}
		}
		return false
	}
	is := func(allowed ...string) func(string) bool {
		return func(dep string) bool { return slices.Contains(allowed, dep) }
	}
	format := func(dep string) bool { // an Evidence format or its helpers
		return strings.HasPrefix(dep, "postauth/") && !under(dep, "postauth/postauthtest")
	}
	formatTest := func(dep string) bool { // a format's test support: postauth/<f>/<f>test (tdxtest)
		parts := strings.Split(dep, "/")
		return len(parts) == 3 && parts[0] == "postauth" && parts[2] == parts[1]+"test"
	}
	switch {
	case p == "internal/detcbor", p == "internal/strictdoc":
		return "internal helper", is(), true
	case p == "posture":
		return "posture (ground floor)", is("internal/detcbor", "internal/strictdoc"), true
	case p == "postauth":
		return "postauth core", is("posture", "internal/detcbor"), true
	case under(p, "postauth/postauthtest"):
		return "test support", func(dep string) bool { return dep == "postauth" || dep == "posture" || format(dep) }, true
	case formatTest(p):
		own := strings.Join(strings.SplitN(p, "/", 3)[:2], "/")
		return "test support of an Evidence format", func(dep string) bool {
			return dep == "postauth" || dep == "posture" || under(dep, "internal/detcbor") || under(dep, own)
		}, true
	case strings.HasPrefix(p, "postauth/"):
		// A format and its own subpackages (tdx/tdxguest, the guest side),
		// but not its test support.
		own := strings.Join(strings.SplitN(p, "/", 3)[:2], "/")
		return "Evidence format", func(dep string) bool {
			return dep == "postauth" || dep == "posture" || under(dep, "internal/detcbor", "internal/strictdoc") || (under(dep, own) && !formatTest(dep))
		}, true
	case p == "internal/httpbind":
		return "HTTP binding helper", is("postauth"), true
	case p == "middleware":
		return "server", is("postauth", "posture", "internal/httpbind", "internal/strictdoc"), true
	case p == "transports":
		return "client", is("postauth", "posture", "internal/httpbind"), true
	case strings.HasPrefix(p, "middleware/"):
		return "server adapter", func(dep string) bool {
			return !under(dep, "transports", "internal/e2e", "examples", "bench", "cmd")
		}, true
	case strings.HasPrefix(p, "transports/"):
		return "client adapter", func(dep string) bool {
			return !under(dep, "middleware", "internal/e2e", "examples", "bench", "cmd")
		}, true
	case p == "verifier":
		// The verifier service (issue 12): it appraises Evidence with the
		// formats' Verifiers and answers over its own HTTP API (Veraison
		// challenge-response), so it stands beside the HTTP binding, never
		// on it: no server or client package. internal/httpbind gives it
		// the RFC 9651 byte-sequence parser of its key header.
		return "verifier service", func(dep string) bool {
			return dep == "postauth" || dep == "posture" || (format(dep) && !formatTest(dep)) || under(dep, "internal/detcbor", "internal/httpbind")
		}, true
	case p == "streams":
		// The stream binding (raw TLS over TCP) and the attestation state
		// machine it shares with the QUIC adapter: the core only.
		return "stream binding", is("postauth", "posture"), true
	case strings.HasPrefix(p, "streams/"):
		// Stream adapters (quicstream: the only importer of quic-go here).
		return "stream adapter", is("streams", "postauth", "posture"), true
	case p == "internal/e2e":
		return "end-to-end test harness", func(string) bool { return true }, true
	case p == "internal/arch":
		return "architecture test", is(), true
	case under(p, "examples", "bench", "cmd"):
		return "program", func(dep string) bool { return !under(dep, "internal/e2e") }, true
	}
	return "", nil, false
}

// TestLayers checks every import of every package of the module against
// the layer rules.
func TestLayers(t *testing.T) {
	for _, p := range list(t) {
		name := rel(p.ImportPath)
		lname, may, ok := layer(name)
		if !ok {
			t.Errorf("%s: no layer rule covers this package: add it to internal/arch", name)
			continue
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			if dep := rel(imp); !may(dep) {
				t.Errorf("%s (%s) imports %s: not allowed by the layers", name, lname, dep)
			}
		}
	}
}

// heavy are dependencies the core packages must never link.
var heavy = []string{
	"github.com/gin-gonic/gin",
	"github.com/quic-go/quic-go",
	"github.com/redis/go-redis",
	"github.com/modelcontextprotocol/go-sdk",
	"go.opentelemetry.io/otel",
	// The EAR signer and its JOSE library: only the verifier service
	// signs EARs; relying parties parse them with postauth/ear's own
	// closed ES256 parser.
	"github.com/veraison/ear",
	"github.com/lestrrat-go/jwx",
}

// TestCoreStaysLean: users of the core packages link none of the heavy
// dependencies (transitively).
func TestCoreStaysLean(t *testing.T) {
	core := []string{"posture", "internal/strictdoc", "postauth", "postauth/softeat", "postauth/tpm", "postauth/tpm/enroll", "postauth/ear", "postauth/tdx", "postauth/tdx/tdxguest", "internal/httpbind", "middleware", "transports", "streams"}
	for _, p := range list(t) {
		if !slices.Contains(core, rel(p.ImportPath)) {
			continue
		}
		for _, d := range p.Deps {
			for _, h := range heavy {
				if d == h || strings.HasPrefix(d, h+"/") {
					t.Errorf("%s links %s: keep it in an adapter package", rel(p.ImportPath), d)
				}
			}
		}
	}
}

// eatOnly are dependencies that come with EAT: veraison/eat imports
// veraison/swid, whose non-test files import testify (and package
// testing), so every binary that links veraison/eat links them.
var eatOnly = []string{
	"github.com/veraison/eat",
	"github.com/veraison/swid",
	"github.com/stretchr/testify",
}

// TestEATStaysInItsFormat: only postauth/softeat needs EAT; a package links
// veraison/eat, veraison/swid or testify only through it (so middleware,
// transports and their adapters never do).
func TestEATStaysInItsFormat(t *testing.T) {
	for _, p := range list(t) {
		if rel(p.ImportPath) == "postauth/softeat" || slices.Contains(p.Deps, module+"/postauth/softeat") {
			continue
		}
		for _, d := range p.Deps {
			for _, h := range eatOnly {
				if d == h || strings.HasPrefix(d, h+"/") {
					t.Errorf("%s links %s without postauth/softeat: keep EAT in its format package", rel(p.ImportPath), d)
				}
			}
		}
	}
}

// TestPostureIsGroundFloor: posture depends on no other package of the
// module (internal helpers aside).
func TestPostureIsGroundFloor(t *testing.T) {
	for _, p := range list(t) {
		if rel(p.ImportPath) != "posture" {
			continue
		}
		for _, d := range p.Deps {
			if strings.HasPrefix(d, module+"/") && !strings.HasPrefix(d, module+"/internal/") {
				t.Errorf("posture depends on %s", rel(d))
			}
		}
	}
}

// TestRFC9261LayerStandsAlone: inside postauth, the files of the RFC 9261
// layer (ea_*.go) use no name declared in the expat layer or above (every
// file but ea_*.go and the shared errors.go, reason.go, config.go, doc.go).
func TestRFC9261LayerStandsAlone(t *testing.T) {
	var dir string
	for _, p := range list(t) {
		if rel(p.ImportPath) == "postauth" {
			dir = p.Dir
		}
	}
	fset := token.NewFileSet()
	files := map[string]*ast.File{}
	matches, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, m := range matches {
		if strings.HasSuffix(m, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, m, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(m)] = f
	}
	shared := []string{"errors.go", "reason.go", "config.go", "doc.go"}
	isLower := func(name string) bool { return strings.HasPrefix(name, "ea_") || slices.Contains(shared, name) }
	// Names of the lower files; top-level names of the upper files; and
	// methods that upper files declare on lower types (Channel.Binder).
	lower, upper, upperMethods := map[string]bool{}, map[string]string{}, map[string]string{}
	for name, f := range files {
		if !isLower(name) {
			continue
		}
		for _, id := range declared(f) {
			lower[id] = true
		}
	}
	for name, f := range files {
		if isLower(name) {
			continue
		}
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv != nil {
				if recv := receiverType(fd); lower[recv] {
					upperMethods[fd.Name.Name] = name
				}
				continue
			}
		}
		for _, id := range declared(f) {
			if !lower[id] {
				upper[id] = name
			}
		}
	}
	if len(lower) == 0 || len(upper) == 0 {
		t.Fatal("no ea_*.go or no expat files found: the layout changed, update this test")
	}
	for name, f := range files {
		if !strings.HasPrefix(name, "ea_") {
			continue
		}
		sels := map[*ast.Ident]bool{}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.FuncDecl:
				sels[n.Name] = true // a declaration, not a use
			case *ast.SelectorExpr:
				sels[n.Sel] = true
				if from, ok := upperMethods[n.Sel.Name]; ok {
					t.Errorf("%s: calls method %s, declared in %s (expat layer or above)", fset.Position(n.Pos()), n.Sel.Name, from)
				}
			case *ast.Ident:
				if sels[n] {
					return true
				}
				if from, ok := upper[n.Name]; ok {
					t.Errorf("%s: uses %s, declared in %s (expat layer or above)", fset.Position(n.Pos()), n.Name, from)
				}
			}
			return true
		})
	}
}

func receiverType(fd *ast.FuncDecl) string {
	t := fd.Recv.List[0].Type
	if st, ok := t.(*ast.StarExpr); ok {
		t = st.X
	}
	if id, ok := t.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

// declared returns the names a file declares at top level (functions,
// types, variables, constants; not methods or fields).
func declared(f *ast.File) []string {
	var out []string
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if d.Recv == nil {
				out = append(out, d.Name.Name)
			}
		case *ast.GenDecl:
			for _, s := range d.Specs {
				switch s := s.(type) {
				case *ast.TypeSpec:
					out = append(out, s.Name.Name)
				case *ast.ValueSpec:
					for _, n := range s.Names {
						out = append(out, n.Name)
					}
				}
			}
		}
	}
	return out
}
