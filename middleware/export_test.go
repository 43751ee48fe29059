package middleware

// FallbackLen is the number of entries of g's fallback cache (tests).
func FallbackLen(g *Guard) int { return g.fallback.len() }

// FallbackEntryBytes is the documented bound of one fallback entry.
const FallbackEntryBytes = fallbackEntryBytes
