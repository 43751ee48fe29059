package tdxtest

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reattest/reattest/postauth/tdx"
)

// CollateralConfig describes test collateral for a platform. The zero
// value is collateral under which the platform is UpToDate, valid from an
// hour ago for 30 days.
type CollateralConfig struct {
	// TCBStatus is the status of the platform's TCB level (default
	// UpToDate). ModuleStatus is the TDX module identity's (default
	// UpToDate; it exists only for TEETCBSVN[1] > 0). QEStatus is the
	// quoting enclave's (default UpToDate).
	TCBStatus, ModuleStatus, QEStatus string
	// AdvisoryIDs are put on the platform's TCB level.
	AdvisoryIDs []string
	// IssueDate and NextUpdate of the TCB info, the QE identity and both
	// CRLs (defaults: the CA's creation time minus an hour, and that plus
	// 30 days).
	IssueDate, NextUpdate time.Time
	// RevokedPCKs are serial numbers on the PCK CRL
	// ([Platform.Revoke]).
	RevokedPCKs []*big.Int
	// RevokePlatformCA puts the PCK Platform CA on the root CA CRL.
	RevokePlatformCA bool
	// CRLNumber is the CRL number of both CRLs (default 1). A Verifier
	// refuses a CRL older than one it has seen: give updated collateral a
	// higher number.
	CRLNumber int64
	// UnmatchedLevel makes the only TCB level require a higher SGX
	// component than the platform has, so that no level matches.
	UnmatchedLevel bool
	// ModuleMRSIGNER, if set, is the TCB info's TDX module signer
	// (default: the platform's MRSIGNERSEAM).
	ModuleMRSIGNER []byte
	// QEMRSIGNER, if set, is the QE identity's MRSIGNER (default: the
	// sample quote's quoting enclave signer).
	QEMRSIGNER []byte
	// EvaluationDataNumber is the tcbEvaluationDataNumber (default 17).
	EvaluationDataNumber int
	// PCEID, if set, is the TCB info's pceId (default: the platform's).
	PCEID []byte
}

// sampleQEMRSIGNER is the MRSIGNER of Intel's TD quoting enclave, as in
// go-tdx-guest's sample quote (the minted quotes keep it).
const sampleQEMRSIGNER = "DC9E2A7C6F948F17474E34A7FC43ED030F7C1563F1BABDDF6340C82E0E54A8C5"

type jsonComponent struct {
	SVN byte `json:"svn"`
}

type jsonTCB struct {
	SGX    []jsonComponent `json:"sgxtcbcomponents,omitempty"`
	PCESVN *uint16         `json:"pcesvn,omitempty"`
	TDX    []jsonComponent `json:"tdxtcbcomponents,omitempty"`
	ISVSVN *uint32         `json:"isvsvn,omitempty"`
}

type jsonLevel struct {
	TCB         jsonTCB  `json:"tcb"`
	TCBDate     string   `json:"tcbDate"`
	TCBStatus   string   `json:"tcbStatus"`
	AdvisoryIDs []string `json:"advisoryIDs,omitempty"`
}

type jsonModule struct {
	ID             string      `json:"id,omitempty"`
	MRSIGNER       string      `json:"mrsigner"`
	Attributes     string      `json:"attributes"`
	AttributesMask string      `json:"attributesMask"`
	TCBLevels      []jsonLevel `json:"tcbLevels,omitempty"`
}

type jsonTCBInfo struct {
	ID                      string       `json:"id"`
	Version                 int          `json:"version"`
	IssueDate               string       `json:"issueDate"`
	NextUpdate              string       `json:"nextUpdate"`
	FMSPC                   string       `json:"fmspc"`
	PCEID                   string       `json:"pceId"`
	TCBType                 int          `json:"tcbType"`
	TCBEvaluationDataNumber int          `json:"tcbEvaluationDataNumber"`
	TDXModule               jsonModule   `json:"tdxModule"`
	TDXModuleIdentities     []jsonModule `json:"tdxModuleIdentities,omitempty"`
	TCBLevels               []jsonLevel  `json:"tcbLevels"`
}

type jsonQEIdentity struct {
	ID                      string      `json:"id"`
	Version                 int         `json:"version"`
	IssueDate               string      `json:"issueDate"`
	NextUpdate              string      `json:"nextUpdate"`
	TCBEvaluationDataNumber int         `json:"tcbEvaluationDataNumber"`
	Miscselect              string      `json:"miscselect"`
	MiscselectMask          string      `json:"miscselectMask"`
	Attributes              string      `json:"attributes"`
	AttributesMask          string      `json:"attributesMask"`
	MRSIGNER                string      `json:"mrsigner"`
	ISVProdID               int         `json:"isvprodid"`
	TCBLevels               []jsonLevel `json:"tcbLevels"`
}

func components(svn []byte) []jsonComponent {
	out := make([]jsonComponent, len(svn))
	for i, s := range svn {
		out[i].SVN = s
	}
	return out
}

func defStatus(s string) string {
	if s == "" {
		return tdx.StatusUpToDate
	}
	return s
}

func hexUpper(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

// Collateral returns collateral for p signed by the CA's TCB signing key
// (TCB info and QE identity), PCK Platform CA (PCK CRL) and root (root CA
// CRL), in the form the Intel PCS serves it. cfg may be nil.
func (ca *CA) Collateral(tb TB, p *Platform, cfg *CollateralConfig) tdx.RawCollateral {
	tb.Helper()
	raw, err := ca.collateral(p, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

func (ca *CA) collateral(p *Platform, cfg *CollateralConfig) (tdx.RawCollateral, error) {
	c := CollateralConfig{}
	if cfg != nil {
		c = *cfg
	}
	if c.IssueDate.IsZero() {
		c.IssueDate = ca.now.Add(-time.Hour)
	}
	if c.NextUpdate.IsZero() {
		c.NextUpdate = c.IssueDate.Add(30 * 24 * time.Hour)
	}
	if c.EvaluationDataNumber == 0 {
		c.EvaluationDataNumber = 17
	}
	if c.CRLNumber == 0 {
		c.CRLNumber = 1
	}
	pc := p.cfg
	pceid := pc.PCEID
	if c.PCEID != nil {
		pceid = c.PCEID
	}
	issue, next := c.IssueDate.UTC().Format(time.RFC3339), c.NextUpdate.UTC().Format(time.RFC3339)
	modSigner := pc.TD.MRSIGNERSEAM
	if c.ModuleMRSIGNER != nil {
		modSigner = c.ModuleMRSIGNER
	}
	sgx := slices.Clone(pc.CPUSVN)
	if c.UnmatchedLevel {
		sgx[0]++
	}
	pcesvn := pc.PCESVN
	tdxSVN := slices.Clone(pc.TD.TEETCBSVN)
	level := jsonLevel{
		TCB:     jsonTCB{SGX: components(sgx), PCESVN: &pcesvn, TDX: components(tdxSVN)},
		TCBDate: issue, TCBStatus: defStatus(c.TCBStatus), AdvisoryIDs: c.AdvisoryIDs,
	}
	info := jsonTCBInfo{
		ID: "TDX", Version: 3, IssueDate: issue, NextUpdate: next,
		FMSPC: hex.EncodeToString(pc.FMSPC), PCEID: hex.EncodeToString(pceid), TCBEvaluationDataNumber: c.EvaluationDataNumber,
		TDXModule: jsonModule{MRSIGNER: hexUpper(modSigner), Attributes: "0000000000000000", AttributesMask: "FFFFFFFFFFFFFFFF"},
		TCBLevels: []jsonLevel{level},
	}
	if tdxSVN[1] > 0 {
		isv := uint32(tdxSVN[0])
		info.TDXModuleIdentities = []jsonModule{{
			ID: fmt.Sprintf("TDX_%02X", tdxSVN[1]), MRSIGNER: hexUpper(modSigner), Attributes: "0000000000000000", AttributesMask: "FFFFFFFFFFFFFFFF",
			TCBLevels: []jsonLevel{{TCB: jsonTCB{ISVSVN: &isv}, TCBDate: issue, TCBStatus: defStatus(c.ModuleStatus)}},
		}}
	}
	qeSigner := sampleQEMRSIGNER
	if c.QEMRSIGNER != nil {
		qeSigner = hexUpper(c.QEMRSIGNER)
	}
	qeSVN := uint32(pc.QEISVSVN)
	qe := jsonQEIdentity{
		ID: "TD_QE", Version: 2, IssueDate: issue, NextUpdate: next, TCBEvaluationDataNumber: c.EvaluationDataNumber,
		Miscselect: "00000000", MiscselectMask: "FFFFFFFF",
		Attributes: "11000000000000000000000000000000", AttributesMask: "FBFFFFFFFFFFFFFF0000000000000000",
		MRSIGNER: qeSigner, ISVProdID: 2,
		TCBLevels: []jsonLevel{{TCB: jsonTCB{ISVSVN: &qeSVN}, TCBDate: issue, TCBStatus: defStatus(c.QEStatus)}},
	}
	raw := tdx.RawCollateral{CA: tdx.CAPlatform}
	var err error
	if raw.TCBInfo, err = ca.signDoc("tcbInfo", info); err != nil {
		return raw, err
	}
	if raw.QEIdentity, err = ca.signDoc("enclaveIdentity", qe); err != nil {
		return raw, err
	}
	raw.TCBInfoIssuerChain = slices.Concat(pemCert(ca.TCBSigning), pemCert(ca.Root))
	raw.QEIdentityIssuerChain = slices.Clone(raw.TCBInfoIssuerChain)
	var revoked []x509.RevocationListEntry
	for _, s := range c.RevokedPCKs {
		revoked = append(revoked, x509.RevocationListEntry{SerialNumber: s, RevocationTime: c.IssueDate})
	}
	if raw.PCKCRL, err = x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(c.CRLNumber), ThisUpdate: c.IssueDate, NextUpdate: c.NextUpdate, RevokedCertificateEntries: revoked,
	}, ca.PlatformCA, ca.pcaKey); err != nil {
		return raw, err
	}
	var rootRevoked []x509.RevocationListEntry
	if c.RevokePlatformCA {
		rootRevoked = append(rootRevoked, x509.RevocationListEntry{SerialNumber: ca.PlatformCA.SerialNumber, RevocationTime: c.IssueDate})
	}
	if raw.RootCACRL, err = x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(c.CRLNumber), ThisUpdate: c.IssueDate, NextUpdate: c.NextUpdate, RevokedCertificateEntries: rootRevoked,
	}, ca.Root, ca.rootKey); err != nil {
		return raw, err
	}
	return raw, nil
}

// signDoc returns {"<field>": doc, "signature": hex(r||s)} with the
// signature by the TCB signing key over doc's exact JSON bytes.
func (ca *CA) signDoc(field string, doc any) ([]byte, error) {
	body, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	sig, err := signP256(ca.tcbKey, body)
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, `{"%s":%s,"signature":"%s"}`, field, body, hex.EncodeToString(sig)), nil
}

// Source is a tdx.CollateralSource that serves fixed collateral from
// memory, as a stand-in for a PCS and cache in tests. It counts the
// requests it answers. Safe for concurrent use.
type Source struct {
	mu    sync.Mutex
	m     map[string]*tdx.Collateral
	calls atomic.Int64
}

var _ tdx.CollateralSource = (*Source)(nil)

// NewSource returns a Source serving raws (parsed once).
func NewSource(tb TB, raws ...tdx.RawCollateral) *Source {
	tb.Helper()
	s := &Source{m: map[string]*tdx.Collateral{}}
	for _, r := range raws {
		if err := s.Set(r); err != nil {
			tb.Fatal(err)
		}
	}
	return s
}

// Set parses raw and serves it from now on for its FMSPC and CA.
func (s *Source) Set(raw tdx.RawCollateral) error {
	c, err := tdx.ParseCollateral(raw)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*tdx.Collateral{}
	}
	s.m[c.FMSPC()+"/"+c.CA()] = c
	return nil
}

// Collateral returns the collateral set for fmspc and ca.
func (s *Source) Collateral(ctx context.Context, fmspc, ca string) (*tdx.Collateral, error) {
	s.calls.Add(1)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.m[fmspc+"/"+ca]
	if !ok {
		return nil, fmt.Errorf("tdxtest: no collateral for %s/%s", fmspc, ca)
	}
	return c, nil
}

// Calls is the number of Collateral calls so far.
func (s *Source) Calls() int64 { return s.calls.Load() }
