package verifier

import (
	"github.com/reattest/reattest/postauth/softeat"
	"github.com/reattest/reattest/postauth/tdx"
	"github.com/reattest/reattest/postauth/tpm"
)

// SoftEAT accepts software EAT Evidence (application/eat+cwt) and
// appraises it with v. The EAR submodule is "software-eat".
func SoftEAT(v *softeat.Verifier) Option {
	return WithFormat(softeat.Format, softeat.MediaType, v, softeat.Binding)
}

// TPM accepts TPM 2.0 quote Evidence
// (application/vnd.reattest.tpm-quote+cbor) and appraises it with v. The
// EAR submodule is "tpm2-quote".
func TPM(v *tpm.Verifier) Option {
	return WithFormat(tpm.Format, tpm.MediaType, v, tpm.Binding)
}

// TDX accepts Intel TDX quote Evidence
// (application/vnd.reattest.tdx-quote+cbor) and appraises it with v. The
// EAR submodule is "tdx-quote".
func TDX(v *tdx.Verifier) Option {
	return WithFormat(tdx.Format, tdx.MediaType, v, tdx.Binding)
}
