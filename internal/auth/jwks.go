package auth

import (
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/fieldsync/fieldsync/internal/domain"
)

// jwk is one public key in RFC 8037 form (an Ed25519 "OKP" key).
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// encodeJWKS encodes the public halves of keys as a JWK set, in the given
// order. Private halves never leave the ring.
func encodeJWKS(keys []*domain.SigningKey) ([]byte, error) {
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: make([]jwk, 0, len(keys))}
	for _, k := range keys {
		set.Keys = append(set.Keys, jwk{
			Kty: "OKP",
			Crv: "Ed25519",
			X:   base64.RawURLEncoding.EncodeToString(k.Public),
			Kid: k.KID,
			Alg: AlgEdDSA,
			Use: "sig",
		})
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("auth: encode jwks: %w", err)
	}
	return b, nil
}
