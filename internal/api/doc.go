// Package api is fieldsync's HTTP layer: the Fiber app, its routes and
// middleware, the wire encoding of push and pull, and the single error
// handler that turns every error into an RFC 9457 problem document.
//
// It owns the hazards of the transport so the syncer never sees them:
//   - Request bodies are read raw (fiber's Ctx.Body inflates gzip, br and
//     deflate with no cap, and returns the error text as the body when the
//     gzip is bad) and inflated here through a bounded reader, so a gzip
//     bomb costs at most Config.BodyLimit bytes and gets a 413.
//   - The push envelope is decoded strictly: exactly one member, "changes",
//     an array; member names match exactly (encoding/json alone would take
//     "Changes" too).
//   - Record bytes in responses are the engine's canonical encoding
//     (merge.Record.AppendJSON), written as they are: the API never
//     re-encodes a record.
//   - Tokens and the Authorization header are never logged; the access log
//     names the route, not the URL, and the caller by subject and role only.
//
// It imports domain, auth's contract (through Verifier) and sync/*; it
// knows nothing of GORM or SQL.
package api
