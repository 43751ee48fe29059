// Package strictdoc decodes the small configuration documents of reattest
// (posture and TDX policies, MCP rules) strictly, from JSON or YAML, into a
// Go value.
//
// A [Doc] describes one kind of document: the noun its errors use and its
// size bound. [Doc.Decode] refuses, beyond what the decoders refuse:
//
//   - a document over the size bound, and an empty one;
//   - a root that is not a JSON object or a YAML mapping;
//   - nesting deeper than [MaxDepth] objects and arrays (mappings and
//     sequences);
//   - unknown fields (json.Decoder.DisallowUnknownFields,
//     yaml.Decoder.KnownFields);
//   - duplicate keys, at any depth. encoding/json keeps the last of two
//     equal keys, and matches struct field names case-insensitively, so
//     the keys of an object that decodes into a struct are compared as
//     encoding/json folds them ("deny", "Deny" and "DENY" are one key);
//     the keys of an object that decodes into a map keyed by strings, or
//     into a json.Unmarshaler (json.RawMessage: a sub-document parsed
//     later), are compared exactly. Which is which comes from the Go type
//     of the value decoded into; where the type does not say (a field
//     promoted from an embedded struct, an interface), keys are folded;
//   - anything after the JSON object, and a second YAML document.
//
// [Doc.Load] reads a file, picks the format from its extension and adds
// "(in <path>)" to the errors of the document.
//
// Errors name the document ("policy JSON: duplicate key ...") but carry no
// package prefix: callers wrap them ("posture: %w").
package strictdoc
