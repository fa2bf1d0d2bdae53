// Package auth issues and verifies fieldsync's access tokens: JWTs signed
// with Ed25519 (alg EdDSA), keyed by kid, carrying the caller's identity
// (sub, role, unit, contingent). It owns the key ring built from the
// server's key store and the public key set (JWKS) clients verify with.
//
// Verification is deliberately narrow, because golang-jwt's defaults are
// not: it accepts only EdDSA, requires exp, iss and aud, rejects iat in the
// future and nbf not yet reached (with a small leeway for skewed clocks),
// and only then looks at fieldsync's own claims. Every failure is a
// *domain.Error with code domain.CodeUnauthorized whose message never
// repeats the token.
//
// The package knows nothing of HTTP; internal/api calls Verify.
package auth
