package api

// Unexported helpers under test in package api_test.
var (
	AppendRecord = appendRecord
	ParsePush    = parsePush
)
