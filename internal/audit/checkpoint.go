package audit

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
)

// checkpointHeader is the first line of every checkpoint body.
const checkpointHeader = "fieldsync audit checkpoint"

// ErrCheckpoint is wrapped by every error SignCheckpoint and OpenCheckpoint
// return: the checkpoint is malformed, unsigned, or not signed by a known
// key. The note package's own error is wrapped too.
var ErrCheckpoint = errors.New("audit: invalid checkpoint")

// Checkpoint is a signed statement that a server's log had entry Seq with
// hash Hash at time At. Kept off the server, it lets a supervisor later
// prove the log up to Seq was neither truncated nor rewritten.
type Checkpoint struct {
	Origin string    // the server whose log this is; one line, not empty
	Seq    int64     // the head's seq, at least 1
	Hash   Hash      // the head's hash
	At     time.Time // when the checkpoint was taken
}

// body returns the signed text of cp:
//
//	fieldsync audit checkpoint
//	<origin>
//	<seq in decimal>
//	<hash in lower-case hex>
//	<at in UTC, RFC 3339 with nanoseconds>
func (cp Checkpoint) body() string {
	return fmt.Sprintf("%s\n%s\n%d\n%s\n%s\n", checkpointHeader, cp.Origin, cp.Seq, cp.Hash, cp.At.UTC().Format(time.RFC3339Nano))
}

// validate reports why cp cannot be written as a body that parses back to it.
func (cp Checkpoint) validate() error {
	switch {
	case cp.Origin == "":
		return errors.New("empty origin")
	case !utf8.ValidString(cp.Origin) || strings.IndexFunc(cp.Origin, unicode.IsControl) >= 0:
		return fmt.Errorf("origin %q is not one line of printable text", cp.Origin)
	case cp.Seq < 1:
		return fmt.Errorf("seq %d: want at least 1", cp.Seq)
	case cp.At.UTC().Year() < 0 || cp.At.UTC().Year() > 9999:
		return fmt.Errorf("at %s: RFC 3339 needs a year from 0 to 9999", cp.At.UTC())
	}
	return nil
}

// parseCheckpoint parses a body as body writes it, refusing any other
// spelling of the same checkpoint.
func parseCheckpoint(text string) (Checkpoint, error) {
	lines := strings.Split(text, "\n")
	if len(lines) != 6 || lines[0] != checkpointHeader || lines[5] != "" {
		return Checkpoint{}, errors.New("malformed body")
	}
	var cp Checkpoint
	var err error
	cp.Origin = lines[1]
	if cp.Seq, err = strconv.ParseInt(lines[2], 10, 64); err != nil {
		return Checkpoint{}, fmt.Errorf("seq: %w", err)
	}
	if cp.Hash, err = ParseHash(lines[3]); err != nil {
		return Checkpoint{}, err
	}
	if cp.At, err = time.Parse(time.RFC3339Nano, lines[4]); err != nil {
		return Checkpoint{}, fmt.Errorf("at: %w", err)
	}
	cp.At = cp.At.UTC()
	if err := cp.validate(); err != nil {
		return Checkpoint{}, err
	}
	if cp.body() != text {
		return Checkpoint{}, errors.New("body is not in canonical form")
	}
	return cp, nil
}

// SignCheckpoint returns cp as a signed note (golang.org/x/mod/sumdb/note):
// the body, a blank line, and a signature line by key under the key name
// name. name must be a valid note key name (non-empty, no spaces or '+').
func SignCheckpoint(cp Checkpoint, name string, key ed25519.PrivateKey) ([]byte, error) {
	if err := cp.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: private key has %d bytes, want %d", ErrCheckpoint, len(key), ed25519.PrivateKeySize)
	}
	v, err := verifier(name, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	msg, err := note.Sign(&note.Note{Text: cp.body()}, signer{name: name, hash: v.KeyHash(), key: key})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	return msg, nil
}

// OpenCheckpoint verifies a note SignCheckpoint wrote and returns its
// checkpoint. It accepts a signature under the key name name by any of
// keys, so that after a key rotation the old public keys still open old
// checkpoints, and it refuses a note with no such signature, with an
// invalid one, or with a malformed body. The caller checks cp.Origin.
func OpenCheckpoint(msg []byte, name string, keys []ed25519.PublicKey) (Checkpoint, error) {
	var list []note.Verifier
	seen := make(map[uint32]bool) // one verifier per key: note refuses ambiguous lists
	for _, k := range keys {
		v, err := verifier(name, k)
		if err != nil {
			return Checkpoint{}, fmt.Errorf("%w: %w", ErrCheckpoint, err)
		}
		if !seen[v.KeyHash()] {
			seen[v.KeyHash()] = true
			list = append(list, v)
		}
	}
	n, err := note.Open(msg, note.VerifierList(list...))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	cp, err := parseCheckpoint(n.Text)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	return cp, nil
}

// verifier returns the note verifier for the Ed25519 public key pub under
// name; its KeyHash is the one note computes for that key.
func verifier(name string, pub ed25519.PublicKey) (note.Verifier, error) {
	vkey, err := note.NewEd25519VerifierKey(name, pub)
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("key name %q: %w", name, err)
	}
	return v, nil
}

// signer is a note.Signer over an Ed25519 private key, so the key need not
// be encoded in note's private-key text form.
type signer struct {
	name string
	hash uint32
	key  ed25519.PrivateKey
}

func (s signer) Name() string                    { return s.name }
func (s signer) KeyHash() uint32                 { return s.hash }
func (s signer) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }
