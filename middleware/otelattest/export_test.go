package otelattest

// HTTPRoute is httpRoute, for tests.
var HTTPRoute = httpRoute
