// Package console is the supervisors' browser console: server-rendered
// pages under /console/ for reviewing what the field merged (patrol logs
// and their history, the conflict queue, the dead-letter list, the corridor
// board) and for deciding (resolving conflicts, signing off logs).
//
// The console owns no data and calls no service. Every read and every
// decision is an ordinary API request with the supervisor's own bearer
// token, run in process through the Fiber app's handler (caller.go), so
// authentication, scope, redaction, validation, rate limits, the access log
// and the audit trail apply exactly as they do for any API client. What the
// API leaves out (identifying fields outside the supervisor's scope) the
// console cannot show.
//
// Invariants and hazards:
//   - The token lives only in an HttpOnly, SameSite=Strict cookie scoped to
//     /console. It is never logged, never written into a page and never put
//     in a URL; a page shows the token's subject at most.
//   - Every state-changing form (sign-in, sign-out, sign-off, resolve) is a
//     POST carrying a CSRF token: an HMAC, under a key drawn at start, of
//     the session cookie (or, before sign-in, of a one-time nonce cookie).
//     A restart or another instance behind a load balancer has another key
//     unless Config.CSRFKey is set; a stale form then asks to try again.
//   - Pages work with JavaScript off and load nothing but one embedded
//     stylesheet from the same origin; the Content-Security-Policy forbids
//     everything else.
//   - Values from the API are data: html/template escapes them, and the
//     console never marks any of them safe.
//
// It imports fiber and fasthttp (to run the app's handler) and the standard
// library; it speaks to the rest of fieldsync only through the HTTP API
// described in openapi.yaml.
package console
