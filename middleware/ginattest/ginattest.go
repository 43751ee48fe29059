// Package ginattest adapts the reattest middleware to gin. It lives in its
// own package so that net/http users of package middleware never link gin.
//
// Protect one route (the safest form, independent of routing):
//
//	guard, _ := middleware.New(verifier)
//	pay, _ := ginattest.Protect(guard, middleware.Route{Mode: middleware.ModeOperation})
//	r.POST("/v1/payments", pay, handlePayment)
//
// or apply the Guard's pattern routes ([middleware.WithRoute]), the discovery
// document and server attestation to every request:
//
//	r.Use(ginattest.Middleware(guard)) // before registering routes
//
// gin applies Use only to routes registered after it: call it first.
//
// Handlers read the verified result with [Result].
package ginattest

import (
	"github.com/gin-gonic/gin"

	"github.com/reattest/reattest/middleware"
	"github.com/reattest/reattest/postauth"
)

// Middleware returns a gin handler that runs the Guard's checks (pattern
// routes, discovery, server attestation) on every request and aborts the
// ones it refuses (the response is written).
func Middleware(g *middleware.Guard) gin.HandlerFunc {
	return func(c *gin.Context) {
		r, ok := g.Filter(c.Writer, c.Request)
		if !ok {
			c.Abort()
			return
		}
		c.Request = r
		c.Next()
	}
}

// Protect returns a gin handler that requires attestation under policy r
// for the route it is attached to.
func Protect(g *middleware.Guard, r middleware.Route) (gin.HandlerFunc, error) {
	pr, err := g.Prepare("gin route", r)
	if err != nil {
		return nil, err
	}
	return func(c *gin.Context) {
		req, ok := g.Check(c.Writer, c.Request, pr)
		if !ok {
			c.Abort()
			return
		}
		c.Request = req
		c.Next()
	}, nil
}

// Result returns the verified attestation of the request, if any.
func Result(c *gin.Context) (*postauth.Result, bool) {
	return postauth.FromContext(c.Request.Context())
}
