package postauth

// DecodeCMWUnrecovered is DecodeCMW without its recover, for the fuzz
// target: a panic in the third-party CMW parser must reach the fuzzer.
var DecodeCMWUnrecovered = decodeCMW
var DecodeCMWRecord = decodeCMWRecord
