package verifier

import (
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/reattest/reattest/internal/httpbind"
	"github.com/reattest/reattest/postauth"
	"github.com/reattest/reattest/postauth/ear"
)

// Input limits.
const (
	// MaxEvidenceBody bounds an Evidence POST body: one Evidence value,
	// plus room for a CMW wrapper.
	MaxEvidenceBody = postauth.MaxEvidenceLen + 4<<10
	// maxKeyHeader bounds the Reattest-Authenticator-Key header.
	maxKeyHeader = 4 << 10
	// maxQuery bounds the newSession query string.
	maxQuery = 512
	// minNonce and maxNonce bound a session nonce (Veraison: 8..64).
	minNonce, maxNonce = 8, 64
)

// CMW media types whose body the service unwraps (as Veraison does).
var cmwTypes = map[string]bool{
	"application/cmw":                   true,
	"application/cmw+json":              true,
	"application/cmw+cbor":              true,
	"application/vnd.veraison.cmw":      true,
	"application/vnd.veraison.cmw+cbor": true,
	"application/vnd.veraison.cmw+json": true,
}

// Service is a verifier service speaking the Veraison challenge-response
// API v1: it appraises Evidence with the registered format Verifiers and
// answers with EARs signed by its key (ES256). It is an [http.Handler]; it
// runs no goroutine of its own (expired sessions are swept lazily) and is
// safe for concurrent use.
type Service struct {
	cfg      *config
	key      *ecdsa.PrivateKey
	jwk      []byte
	accept   []string
	sessions *store
	sem      chan struct{}
	mux      *http.ServeMux
}

var _ http.Handler = (*Service)(nil)

// NewService returns a Service that signs EARs with key (ECDSA P-256) and
// accepts the formats given as options (WithFormat, SoftEAT, TPM).
func NewService(key *ecdsa.PrivateKey, opts ...Option) (*Service, error) {
	if key == nil {
		return nil, errors.New("verifier: nil signing key")
	}
	if _, err := ear.ES256Key(&key.PublicKey); err != nil {
		return nil, err
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	jwk, err := ear.MarshalJWK(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, key: key, jwk: jwk, sem: make(chan struct{}, cfg.maxConcurrent),
		sessions: newStore(cfg.now, cfg.ttl, cfg.maxSessions, cfg.maxResultBytes)}
	for _, f := range cfg.formats {
		s.accept = append(s.accept, f.mediaType)
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST "+ear.NewSessionPath, s.newSession)
	s.mux.HandleFunc("POST "+ear.SessionPath+"{id}", s.submit)
	s.mux.HandleFunc("GET "+ear.SessionPath+"{id}", s.getSession)
	s.mux.HandleFunc("DELETE "+ear.SessionPath+"{id}", s.deleteSession)
	s.mux.HandleFunc("GET "+ear.WellKnownPath, s.wellKnown)
	return s, nil
}

// PublicKey is the EAR verification key.
func (s *Service) PublicKey() *ecdsa.PublicKey { return &s.key.PublicKey }

// PublicJWK is the EAR verification key as a JWK, as the well-known
// endpoint publishes it.
func (s *Service) PublicJWK() []byte { return append([]byte(nil), s.jwk...) }

// MediaTypes are the accepted Evidence media types, in registration order.
func (s *Service) MediaTypes() []string { return append([]string(nil), s.accept...) }

// ServeHTTP serves the API (docs/verification.md lists the endpoints and
// status codes). Unknown paths get 404, wrong methods 405.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

// problem writes an RFC 9457 problem. detail must never carry Evidence.
func problem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", ear.ProblemMediaType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail,omitempty"`
	}{"about:blank", http.StatusText(status), status, detail})
}

// sessionJSON is the session resource
// (application/vnd.veraison.challenge-response-session+json). The nonce is
// URL-safe base64 with padding, as Veraison writes it; the Evidence is not
// echoed.
type sessionJSON struct {
	Status string   `json:"status"`
	Nonce  string   `json:"nonce"`
	Expiry string   `json:"expiry"`
	Accept []string `json:"accept"`
	Result *string  `json:"result,omitempty"`
}

func (s *Service) writeSession(w http.ResponseWriter, status int, ss session) {
	body := sessionJSON{
		Status: ss.state, Nonce: ear.EncodeNonce(ss.nonce),
		Expiry: ss.expiry.UTC().Format(time.RFC3339Nano), Accept: s.accept,
	}
	if ss.state == ear.StateComplete {
		r := ss.result
		body.Result = &r
	}
	w.Header().Set("Content-Type", ear.SessionMediaType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func (s *Service) log(r *http.Request, status int, attrs ...any) {
	s.cfg.logger.Log(r.Context(), levelFor(status), "verifier request",
		append([]any{"method", r.Method, "path", r.URL.Path, "status", status}, attrs...)...)
}

// newSession: POST /challenge-response/v1/newSession[?nonce=|?nonceSize=].
// 201 + Location: session/<id>; 400 bad nonce request; 406 Accept;
// 503 too many sessions.
func (s *Service) newSession(w http.ResponseWriter, r *http.Request) {
	if !acceptable(r.Header.Values("Accept"), ear.SessionMediaType) {
		problem(w, http.StatusNotAcceptable, "the only supported output format is "+ear.SessionMediaType)
		s.log(r, http.StatusNotAcceptable)
		return
	}
	nonce, err := s.parseNonceRequest(r.URL.RawQuery)
	if err != nil {
		problem(w, http.StatusBadRequest, "failed handling nonce request: "+err.Error())
		s.log(r, http.StatusBadRequest, "reason", "bad_nonce")
		return
	}
	id, err := newID(s.rand())
	if err != nil {
		problem(w, http.StatusInternalServerError, "no session id")
		s.log(r, http.StatusInternalServerError)
		return
	}
	ss, err := s.sessions.create(id, nonce)
	if err != nil {
		w.Header().Set("Retry-After", "1")
		problem(w, http.StatusServiceUnavailable, "too many sessions")
		s.log(r, http.StatusServiceUnavailable, "reason", "sessions_full")
		return
	}
	w.Header().Set("Location", "session/"+id)
	s.writeSession(w, http.StatusCreated, ss)
	s.log(r, http.StatusCreated, "session", id)
}

func (s *Service) rand() io.Reader { return s.cfg.rand }

// parseNonceRequest applies Veraison's rules: nonce and nonceSize are
// mutually exclusive; nonceSize is 8..64; nonce is base64 (URL-safe or
// standard, padded or not) of 8..64 bytes; neither means a fresh nonce of
// DefaultNonceSize bytes. Empty values count as absent.
func (s *Service) parseNonceRequest(rawQuery string) ([]byte, error) {
	if len(rawQuery) > maxQuery {
		return nil, errors.New("query too long")
	}
	q, err := parseQuery(rawQuery)
	if err != nil {
		return nil, err
	}
	nonceParam, sizeParam := q["nonce"], q["nonceSize"]
	switch {
	case nonceParam != "" && sizeParam != "":
		return nil, errors.New("nonce and nonceSize are mutually exclusive")
	case nonceParam != "":
		nonce, err := decodeBase64(nonceParam)
		if err != nil {
			return nil, errors.New("nonce must be valid base64")
		}
		if len(nonce) < minNonce || len(nonce) > maxNonce { // mutation: service nonce size
			return nil, fmt.Errorf("nonce must be between %d and %d bytes long; got %d", minNonce, maxNonce, len(nonce))
		}
		return nonce, nil
	}
	size := DefaultNonceSize
	if sizeParam != "" {
		n, err := strconv.ParseUint(sizeParam, 10, 8)
		if err != nil || n < minNonce || n > maxNonce {
			return nil, fmt.Errorf("nonceSize must be in range %d..%d", minNonce, maxNonce)
		}
		size = int(n)
	}
	nonce := make([]byte, size)
	if _, err := io.ReadFull(s.rand(), nonce); err != nil {
		return nil, errors.New("no randomness")
	}
	return nonce, nil
}

// submit: POST /challenge-response/v1/session/{id} with Evidence.
// 200 complete (the EAR in result); 400 empty body, bad CMW, bad id or
// key header; 404 no such session; 406 Accept; 409 Evidence already
// submitted; 413 body too large; 415 media type not accepted (with an
// Accept header listing the accepted ones); 500 no verdict; 503 busy.
func (s *Service) submit(w http.ResponseWriter, r *http.Request) {
	if !acceptable(r.Header.Values("Accept"), ear.SessionMediaType) {
		problem(w, http.StatusNotAcceptable, "the only supported output format is "+ear.SessionMediaType)
		s.log(r, http.StatusNotAcceptable)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxEvidenceBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		problem(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("evidence larger than %d bytes", MaxEvidenceBody))
		s.log(r, http.StatusRequestEntityTooLarge)
		return
	case err != nil || len(body) == 0:
		problem(w, http.StatusBadRequest, "unable to read evidence from the request body")
		s.log(r, http.StatusBadRequest, "reason", "no_evidence")
		return
	}
	ev := postauth.Evidence{Type: r.Header.Get("Content-Type"), Value: body}
	if mt, _, err := mime.ParseMediaType(ev.Type); err == nil && cmwTypes[mt] {
		if ev, err = postauth.DecodeCMW(body); err != nil {
			problem(w, http.StatusBadRequest, "could not unwrap the CMW")
			s.log(r, http.StatusBadRequest, "reason", "bad_cmw")
			return
		}
		if ev.Kind != postauth.KindEvidence { // mutation: service evidence only
			problem(w, http.StatusBadRequest, "the CMW carries an attestation result, not evidence")
			s.log(r, http.StatusBadRequest, "reason", "not_evidence")
			return
		}
	}
	f := s.lookup(ev.Type)
	if f == nil {
		w.Header().Set("Accept", strings.Join(s.accept, ", "))
		problem(w, http.StatusUnsupportedMediaType, "no verifier for this media type")
		s.log(r, http.StatusUnsupportedMediaType, "media_type", logSafe(ev.Type))
		return
	}
	id := r.PathValue("id")
	if !validID(id) {
		problem(w, http.StatusBadRequest, "invalid session id in path segment")
		s.log(r, http.StatusBadRequest, "reason", "bad_session_id")
		return
	}
	spki, err := parseKeyHeader(r.Header.Values(ear.HeaderAuthenticatorKey))
	if err != nil {
		problem(w, http.StatusBadRequest, "bad "+ear.HeaderAuthenticatorKey+" header: "+err.Error())
		s.log(r, http.StatusBadRequest, "reason", "bad_key_header")
		return
	}
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	default:
		w.Header().Set("Retry-After", "1")
		problem(w, http.StatusServiceUnavailable, "too many appraisals in progress")
		s.log(r, http.StatusServiceUnavailable, "reason", "busy")
		return
	}
	ss, err := s.sessions.claim(id)
	switch {
	case errors.Is(err, errNotWaiting):
		problem(w, http.StatusConflict, "the session already has evidence")
		s.log(r, http.StatusConflict, "session", id)
		return
	case err != nil:
		problem(w, http.StatusNotFound, "no such session")
		s.log(r, http.StatusNotFound, "session", id)
		return
	}
	token, outcome, err := s.appraise(r.Context(), f, ss.nonce, ev, spki)
	if err != nil {
		s.sessions.fail(id)
		problem(w, http.StatusInternalServerError, "error encountered while processing evidence")
		s.log(r, http.StatusInternalServerError, "session", id, "format", f.name, "reason", outcome)
		return
	}
	done, err := s.sessions.complete(id, token)
	if err != nil {
		w.Header().Set("Retry-After", "1")
		problem(w, http.StatusServiceUnavailable, "no room for the result")
		s.log(r, http.StatusServiceUnavailable, "session", id, "reason", "results_full")
		return
	}
	s.writeSession(w, http.StatusOK, done)
	s.log(r, http.StatusOK, "session", id, "format", f.name, "outcome", outcome)
}

// lookup finds the format of an Evidence media type: an exact match of
// the base type and parameters, or a registered type without parameters
// whose base type matches.
func (s *Service) lookup(t string) *format {
	mt, params, err := mime.ParseMediaType(t)
	if err != nil {
		return nil
	}
	for _, f := range s.cfg.formats {
		if f.base != mt {
			continue
		}
		if len(f.params) == 0 || equalParams(f.params, params) {
			return f
		}
	}
	return nil
}

func equalParams(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// getSession: GET /challenge-response/v1/session/{id}. 200; 400 bad id;
// 404 no such session; 406 Accept.
func (s *Service) getSession(w http.ResponseWriter, r *http.Request) {
	if !acceptable(r.Header.Values("Accept"), ear.SessionMediaType) {
		problem(w, http.StatusNotAcceptable, "the only supported output format is "+ear.SessionMediaType)
		s.log(r, http.StatusNotAcceptable)
		return
	}
	id := r.PathValue("id")
	if !validID(id) {
		problem(w, http.StatusBadRequest, "invalid session id in path segment")
		s.log(r, http.StatusBadRequest)
		return
	}
	ss, ok := s.sessions.get(id)
	if !ok {
		problem(w, http.StatusNotFound, "no such session")
		s.log(r, http.StatusNotFound, "session", id)
		return
	}
	s.writeSession(w, http.StatusOK, ss)
	s.log(r, http.StatusOK, "session", id)
}

// deleteSession: DELETE /challenge-response/v1/session/{id}. 204; 400 bad
// id; 404 no such session.
func (s *Service) deleteSession(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !validID(id) {
		problem(w, http.StatusBadRequest, "invalid session id in path segment")
		s.log(r, http.StatusBadRequest)
		return
	}
	if !s.sessions.delete(id) {
		problem(w, http.StatusNotFound, "no such session")
		s.log(r, http.StatusNotFound, "session", id)
		return
	}
	w.WriteHeader(http.StatusNoContent)
	s.log(r, http.StatusNoContent, "session", id)
}

// wellKnown: GET /.well-known/veraison/verification. 200 with the EAR
// verification key (JWK) and the accepted media types; 406 Accept.
func (s *Service) wellKnown(w http.ResponseWriter, r *http.Request) {
	if !acceptable(r.Header.Values("Accept"), ear.DiscoveryMediaType, "application/json") {
		problem(w, http.StatusNotAcceptable, "the only supported output format is "+ear.DiscoveryMediaType)
		s.log(r, http.StatusNotAcceptable)
		return
	}
	w.Header().Set("Content-Type", ear.DiscoveryMediaType)
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(struct {
		Key       json.RawMessage   `json:"ear-verification-key"`
		Media     []string          `json:"media-types"`
		Version   string            `json:"version"`
		State     string            `json:"service-state"`
		Endpoints map[string]string `json:"api-endpoints"`
	}{s.jwk, s.accept, s.cfg.build, "READY", map[string]string{"newChallengeResponseSession": ear.NewSessionPath}})
	s.log(r, http.StatusOK)
}

// parseKeyHeader parses the optional authenticator key header: one RFC
// 9651 byte sequence holding a canonical DER SubjectPublicKeyInfo.
func parseKeyHeader(values []string) ([]byte, error) {
	switch len(values) {
	case 0:
		return nil, nil
	case 1:
	default:
		return nil, errors.New("repeated")
	}
	spki, _, err := httpbind.DecodeBytes(values[0], maxKeyHeader)
	if err != nil || len(spki) == 0 {
		return nil, errors.New("not a byte sequence")
	}
	if _, err := canonicalSPKI(spki); err != nil {
		return nil, err
	}
	return spki, nil
}
