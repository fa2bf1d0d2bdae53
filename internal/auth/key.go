package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/fieldsync/fieldsync/internal/domain"
)

// AlgEdDSA is the only JWS algorithm fieldsync signs and accepts.
const AlgEdDSA = "EdDSA"

// kidBytes is the entropy of a generated key id: enough that two servers
// rotating keys at once never pick the same kid.
const kidBytes = 16

// GenerateKey returns a new Ed25519 signing key with a random kid, created
// at now.
func GenerateKey(now time.Time) (domain.SigningKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return domain.SigningKey{}, fmt.Errorf("auth: generate key: %w", err)
	}
	var kid [kidBytes]byte
	if _, err := rand.Read(kid[:]); err != nil {
		return domain.SigningKey{}, fmt.Errorf("auth: generate kid: %w", err)
	}
	return domain.SigningKey{
		KID:       base64.RawURLEncoding.EncodeToString(kid[:]),
		Alg:       AlgEdDSA,
		Public:    pub,
		Private:   priv,
		CreatedAt: now.UTC(),
	}, nil
}

// checkKey rejects a stored key the ring cannot use safely. A public key of
// the wrong length would make ed25519.Verify panic, and a private half that
// does not match its public half would sign tokens no one can verify.
func checkKey(k domain.SigningKey) error {
	switch {
	case k.KID == "":
		return fmt.Errorf("auth: signing key without a kid")
	case k.Alg != AlgEdDSA:
		return fmt.Errorf("auth: signing key %q: alg %q, want %s", k.KID, k.Alg, AlgEdDSA)
	case len(k.Public) != ed25519.PublicKeySize:
		return fmt.Errorf("auth: signing key %q: public key of %d bytes", k.KID, len(k.Public))
	case k.Private != nil && len(k.Private) != ed25519.PrivateKeySize:
		return fmt.Errorf("auth: signing key %q: private key of %d bytes", k.KID, len(k.Private))
	case k.Private != nil && !k.Public.Equal(k.Private.Public()):
		return fmt.Errorf("auth: signing key %q: private key does not match its public key", k.KID)
	}
	return nil
}

// retired reports whether k may no longer sign at now.
func retired(k *domain.SigningKey, now time.Time) bool {
	return k.RetiredAt != nil && !now.Before(*k.RetiredAt)
}
