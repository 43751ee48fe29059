// Package ginattest adapts the reattest middleware to gin. It lives in its
// own package so that net/http users of package middleware never link gin.
//
// Protect one route (the safest form, independent of routing):
//
//	guard, _ := middleware.New(verifier)
//	pay, _ := ginattest.Protect(guard, middleware.Route{Mode: middleware.ModeOperation, Posture: policy})
//	r.POST("/v1/payments", pay, handlePayment)
//
// or apply the Guard's pattern routes ([middleware.WithRoute]), the
// discovery document and server attestation to every request:
//
//	r.Use(ginattest.Middleware(guard)) // before registering routes
//
// gin applies Use only to routes registered after it: call it first. Both
// may be combined on one route; the request is then verified once (see
// [middleware.Guard.Handler]).
//
// A protected route is labelled in logs, observer decisions, telemetry and
// the discovery document with its Route.Name or, without one, with the
// request method and gin's full path ("POST /v1/payments/:id"). Handlers read
// the verified result with [Result].
package ginattest

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
)

// Middleware returns a gin handler that runs the Guard's checks (pattern
// routes, discovery, server attestation) on every request and aborts the
// ones it refuses (the response is written).
func Middleware(g *middleware.Guard) gin.HandlerFunc {
	h := g.Middleware(http.HandlerFunc(resume))
	return func(c *gin.Context) { run(c, h, "") }
}

// Protect returns a gin handler that requires attestation under policy r
// for the route it is attached to.
func Protect(g *middleware.Guard, r middleware.Route) (gin.HandlerFunc, error) {
	h, err := g.Handler(http.HandlerFunc(resume), r)
	if err != nil {
		return nil, err
	}
	return func(c *gin.Context) { run(c, h, c.Request.Method+" "+c.FullPath()) }, nil
}

// Result returns the verified attestation of the request, if any.
func Result(c *gin.Context) (*postauth.Result, bool) {
	return postauth.FromContext(c.Request.Context())
}

type ginKey struct{}

// call is a gin request on its way through a Guard.
type call struct {
	c       *gin.Context
	resumed bool
}

// run passes c's request through h; if h lets it through, the rest of the
// gin chain runs from inside h (resume), otherwise the chain is aborted.
func run(c *gin.Context, h http.Handler, name string) {
	k := &call{c: c}
	ctx := context.WithValue(c.Request.Context(), ginKey{}, k)
	if name != "" {
		ctx = middleware.ContextWithRouteName(ctx, name)
	}
	h.ServeHTTP(c.Writer, c.Request.WithContext(ctx))
	if !k.resumed {
		c.Abort()
	}
}

// resume continues the gin chain with the request the Guard let through.
func resume(_ http.ResponseWriter, r *http.Request) {
	k := r.Context().Value(ginKey{}).(*call)
	k.resumed = true
	k.c.Request = r
	k.c.Next()
}
