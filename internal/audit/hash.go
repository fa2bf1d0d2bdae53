package audit

import (
	"encoding/hex"
	"fmt"
)

// Hash is a SHA-256 digest: an entry's hash, or the previous entry's.
type Hash [32]byte

// String returns h as 64 lower-case hex digits, the form the store keeps.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// ParseHash parses the form String returns: exactly 64 lower-case hex
// digits, so that every hash has one text form.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != hex.EncodedLen(len(h)) {
		return Hash{}, fmt.Errorf("audit: hash %q: want %d hex digits", s, hex.EncodedLen(len(h)))
	}
	for i := range len(s) {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return Hash{}, fmt.Errorf("audit: hash %q: want lower-case hex digits", s)
		}
	}
	hex.Decode(h[:], []byte(s)) // cannot fail: length and digits checked above
	return h, nil
}
