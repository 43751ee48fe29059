package ear

// Hooks for the external tests.

var DecodeSessionForTest = decodeSession
