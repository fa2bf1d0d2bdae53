// Package fieldsync is the root of the fieldsync module. It holds the
// wire contract, openapi.yaml, so the binary serves the exact file the
// repository publishes; the code lives in cmd/, internal/ and sync/.
package fieldsync

import _ "embed"

// OpenAPI is openapi.yaml, the description of every route, schema and error
// of the HTTP API.
//
//go:embed openapi.yaml
var OpenAPI []byte
