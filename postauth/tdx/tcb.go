package tdx

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-tdx-guest/pcs"
	pb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/reattest/reattest/postauth"
)

// TCB statuses of Intel's TCB info and QE identity (PCS API v4).
const (
	StatusUpToDate                          = "UpToDate"
	StatusSWHardeningNeeded                 = "SWHardeningNeeded"
	StatusConfigurationNeeded               = "ConfigurationNeeded"
	StatusConfigurationAndSWHardeningNeeded = "ConfigurationAndSWHardeningNeeded"
	StatusOutOfDate                         = "OutOfDate"
	StatusOutOfDateConfigurationNeeded      = "OutOfDateConfigurationNeeded"
	StatusRevoked                           = "Revoked"
)

// statuses lists every known status, best first.
var statuses = []string{
	StatusUpToDate, StatusSWHardeningNeeded, StatusConfigurationNeeded, StatusConfigurationAndSWHardeningNeeded,
	StatusOutOfDate, StatusOutOfDateConfigurationNeeded, StatusRevoked,
}

// tcbResult is the outcome of matching a verified quote against the collateral.
type tcbResult struct {
	// Status is the platform's TCB status: the matching TCB level of the
	// TCB info, converged with the TDX module's status when the quote's
	// TEE_TCB_SVN[1] (the module's major version) is not zero.
	Status string
	// ModuleStatus is the TDX module identity's TCB status, or "" when the
	// TCB info has no module identity for the quote's module.
	ModuleStatus string
	// QEStatus is the quoting enclave's TCB status (QE identity).
	QEStatus string
	// TCBDate is the matching platform level's tcbDate.
	TCBDate string
	// AdvisoryIDs are Intel security advisories of the matching levels.
	AdvisoryIDs []string
	// EvaluationDataNumber is the TCB info's tcbEvaluationDataNumber.
	EvaluationDataNumber int
}

// tcbError is a TCB matching failure with its reason.
type tcbError struct {
	reason postauth.Reason
	err    error
}

func (e *tcbError) Error() string { return e.err.Error() }
func (e *tcbError) Unwrap() error { return e.err }

func tcbErr(reason postauth.Reason, format string, args ...any) error {
	return &tcbError{reason: reason, err: fmt.Errorf("tdx: "+format, args...)}
}

// evaluateTCB matches a verified quote, its PCK certificate's extensions
// and verified collateral, following Intel's TDX TCB info and QE identity
// algorithms as go-tdx-guest implements them (docs/tdx.md section 4):
// the TCB info is for the PCK's FMSPC and PCEID; the quote's
// MRSIGNERSEAM and masked SEAMATTRIBUTES are the TCB info's TDX module's;
// the first TCB level whose SGX components and PCESVN the PCK's and
// whose TDX components the quote's TEE_TCB_SVN reach gives the status
// (from index 2 when TEE_TCB_SVN[1] is not zero, the module's own TCB
// levels then deciding for indices 0 and 1); the QE report matches the QE
// identity (masked MISCSELECT and ATTRIBUTES, MRSIGNER, ISVPRODID) and its
// ISVSVN selects the QE's status.
func evaluateTCB(c *Collateral, q *Quote, ext *pcs.PckExtensions) (*tcbResult, error) {
	ti := &c.tcbInfo
	if !strings.EqualFold(ti.Fmspc, ext.FMSPC) || !strings.EqualFold(ti.PceID, ext.PCEID) { // mutation: tdx tcb info platform
		return nil, collErr(postauth.ReasonCollateralInvalid, "TCB info is for FMSPC %s PCEID %s, the PCK certificate has %s %s", ti.Fmspc, ti.PceID, ext.FMSPC, ext.PCEID)
	}
	if !moduleMatches(ti.TdxModule.Mrsigner.Bytes, ti.TdxModule.Attributes.Bytes, ti.TdxModule.AttributesMask.Bytes, q) { // mutation: tdx module identity
		return nil, tcbErr(postauth.ReasonTDXModuleMismatch, "MRSIGNERSEAM or SEAMATTRIBUTES differ from the TCB info's TDX module")
	}
	svn := q.TEETCBSVN
	var level *pcs.TcbLevel
	for i := range ti.TcbLevels {
		l := &ti.TcbLevels[i]
		if componentsReach(ext.TCB.CPUSvnComponents, l.Tcb.SgxTcbcomponents, 0) && // mutation: tdx tcb level match
			ext.TCB.PCESvn >= l.Tcb.Pcesvn &&
			componentsReach(svn, l.Tcb.TdxTcbcomponents, tdxStart(svn)) {
			level = l
			break
		}
	}
	if level == nil {
		return nil, tcbErr(postauth.ReasonTCBNotSupported, "no TCB level of the TCB info matches the platform")
	}
	res := &tcbResult{Status: string(level.TcbStatus), TCBDate: level.TcbDate, AdvisoryIDs: slices.Clone(level.AdvisoryIDs), EvaluationDataNumber: ti.TcbEvaluationDataNumber}
	if svn[1] > 0 {
		id := fmt.Sprintf("TDX_%02X", svn[1])
		idx := slices.IndexFunc(ti.TdxModuleIdentities, func(m pcs.TdxModuleIdentity) bool { return strings.EqualFold(m.ID, id) })
		if idx < 0 {
			return nil, tcbErr(postauth.ReasonTCBNotSupported, "the TCB info has no TDX module identity %s", id)
		}
		m := &ti.TdxModuleIdentities[idx]
		if !moduleMatches(m.Mrsigner.Bytes, m.Attributes.Bytes, m.AttributesMask.Bytes, q) {
			return nil, tcbErr(postauth.ReasonTDXModuleMismatch, "MRSIGNERSEAM or SEAMATTRIBUTES differ from TDX module identity %s", id)
		}
		ml := slices.IndexFunc(m.TcbLevels, func(l pcs.TcbLevel) bool { return uint32(svn[0]) >= l.Tcb.Isvsvn })
		if ml < 0 {
			return nil, tcbErr(postauth.ReasonTCBNotSupported, "no TCB level of TDX module identity %s matches", id)
		}
		res.ModuleStatus = string(m.TcbLevels[ml].TcbStatus)
		res.AdvisoryIDs = append(res.AdvisoryIDs, m.TcbLevels[ml].AdvisoryIDs...)
		res.Status = converge(res.Status, res.ModuleStatus)
	}
	qe := q.qeReport()
	if !qeMatches(&c.qe, qe) { // mutation: tdx qe identity
		return nil, tcbErr(postauth.ReasonQEIdentityMismatch, "the QE report does not match the TD QE identity")
	}
	ql := slices.IndexFunc(c.qe.TcbLevels, func(l pcs.TcbLevel) bool { return qe.GetIsvSvn() >= l.Tcb.Isvsvn })
	if ql < 0 {
		return nil, tcbErr(postauth.ReasonTCBNotSupported, "no TCB level of the QE identity matches the QE's ISVSVN")
	}
	res.QEStatus = string(c.qe.TcbLevels[ql].TcbStatus)
	res.AdvisoryIDs = append(res.AdvisoryIDs, c.qe.TcbLevels[ql].AdvisoryIDs...)
	slices.Sort(res.AdvisoryIDs)
	res.AdvisoryIDs = slices.Compact(res.AdvisoryIDs)
	return res, nil
}

// tdxStart is the first TEE_TCB_SVN index compared with a level's TDX
// components: 2 when the module's major version (index 1) is set, since
// the module identity's own levels then decide for indices 0 and 1.
func tdxStart(svn []byte) int {
	if svn[1] > 0 {
		return 2
	}
	return 0
}

// componentsReach reports whether every svn[i], i >= start, is at least
// the level's component i. The lengths must agree (16).
func componentsReach(svn []byte, level []pcs.TcbComponent, start int) bool {
	if len(svn) != 16 || len(level) != 16 {
		return false
	}
	for i := start; i < len(svn); i++ {
		if svn[i] < level[i].Svn {
			return false
		}
	}
	return true
}

// moduleMatches checks the quote's TDX module signer and attributes
// against a TCB info module (identity).
func moduleMatches(mrsigner, attrs, mask []byte, q *Quote) bool {
	if !bytes.Equal(mrsigner, q.MRSIGNERSEAM) || len(mask) != len(q.SEAMAttributes) || len(attrs) != len(mask) {
		return false
	}
	for i := range mask {
		if q.SEAMAttributes[i]&mask[i] != attrs[i] {
			return false
		}
	}
	return true
}

// qeMatches checks a QE report against the QE identity.
func qeMatches(id *pcs.EnclaveIdentity, r *pb.EnclaveReport) bool {
	if len(id.Miscselect.Bytes) != 4 || len(id.MiscselectMask.Bytes) != 4 {
		return false
	}
	misc, mask := binary.LittleEndian.Uint32(id.Miscselect.Bytes), binary.LittleEndian.Uint32(id.MiscselectMask.Bytes)
	if r.GetMiscSelect()&mask != misc {
		return false
	}
	attrs := r.GetAttributes()
	if len(id.AttributesMask.Bytes) != len(attrs) || len(id.Attributes.Bytes) != len(attrs) {
		return false
	}
	for i := range attrs {
		if attrs[i]&id.AttributesMask.Bytes[i] != id.Attributes.Bytes[i] {
			return false
		}
	}
	return bytes.Equal(id.Mrsigner.Bytes, r.GetMrSigner()) && r.GetIsvProdId() == uint32(id.IsvProdID)
}

// converge combines the platform level's status with the TDX module
// identity's, as Intel's quote verification library does: an out-of-date
// module makes the platform out of date, a revoked one revoked.
func converge(platform, module string) string {
	switch module {
	case StatusOutOfDate:
		switch platform {
		case StatusUpToDate, StatusSWHardeningNeeded:
			return StatusOutOfDate
		case StatusConfigurationNeeded, StatusConfigurationAndSWHardeningNeeded:
			return StatusOutOfDateConfigurationNeeded
		}
	case StatusRevoked:
		return StatusRevoked
	}
	return platform
}
