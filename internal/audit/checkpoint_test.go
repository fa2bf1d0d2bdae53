package audit_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/audit"
	"golang.org/x/mod/sumdb/note"
)

const keyName = "fieldsync.example"

// testKey returns a fixed Ed25519 key; different b give different keys.
func testKey(b byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
}

func pub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func testCheckpoint() audit.Checkpoint {
	h, _ := audit.ParseHash(strings.Repeat("0123456789abcdef", 4))
	return audit.Checkpoint{Origin: "Field Sync eu-1", Seq: 1234, Hash: h, At: time.Date(2025, 3, 14, 9, 26, 53, 5e8, time.UTC)}
}

// noteSigner returns note's own signer for key, built from note's text
// form of a private key: what SignCheckpoint must agree with byte for byte.
func noteSigner(t *testing.T, name string, key ed25519.PrivateKey) note.Signer {
	t.Helper()
	vkey, err := note.NewEd25519VerifierKey(name, pub(key))
	if err != nil {
		t.Fatal(err)
	}
	hash := strings.Split(vkey, "+")[1]
	skey := fmt.Sprintf("PRIVATE+KEY+%s+%s+%s", name, hash, base64.StdEncoding.EncodeToString(append([]byte{1}, key.Seed()...)))
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sameCheckpoint(a, b audit.Checkpoint) bool {
	return a.Origin == b.Origin && a.Seq == b.Seq && a.Hash == b.Hash && a.At.Equal(b.At)
}

func sign(t *testing.T, cp audit.Checkpoint, key ed25519.PrivateKey) []byte {
	t.Helper()
	msg, err := audit.SignCheckpoint(cp, keyName, key)
	if err != nil {
		t.Fatalf("SignCheckpoint: %v", err)
	}
	return msg
}

func TestCheckpointRoundTrip(t *testing.T) {
	cp := testCheckpoint()
	msg := sign(t, cp, testKey(1))

	wantBody := "fieldsync audit checkpoint\nField Sync eu-1\n1234\n" + strings.Repeat("0123456789abcdef", 4) + "\n2025-03-14T09:26:53.5Z\n"
	if body, _, _ := strings.Cut(string(msg), "\n\n"); body+"\n" != wantBody {
		t.Errorf("body = %q, want %q", body+"\n", wantBody)
	}
	want, err := note.Sign(&note.Note{Text: wantBody}, noteSigner(t, keyName, testKey(1)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(msg, want) {
		t.Errorf("SignCheckpoint = %q, note's own signer gives %q (key hash or format differ)", msg, want)
	}

	got, err := audit.OpenCheckpoint(msg, keyName, []ed25519.PublicKey{pub(testKey(1))})
	if err != nil {
		t.Fatalf("OpenCheckpoint: %v", err)
	}
	if !sameCheckpoint(got, cp) {
		t.Errorf("OpenCheckpoint = %+v, want %+v", got, cp)
	}
}

func TestOpenCheckpointAcceptsRotatedKeys(t *testing.T) {
	old, cur := testKey(1), testKey(2)
	keys := []ed25519.PublicKey{pub(cur), pub(old), pub(cur)} // a repeated key is harmless
	for _, k := range []ed25519.PrivateKey{old, cur} {
		if _, err := audit.OpenCheckpoint(sign(t, testCheckpoint(), k), keyName, keys); err != nil {
			t.Errorf("OpenCheckpoint with the old and new keys: %v", err)
		}
	}
}

func TestOpenCheckpointRefuses(t *testing.T) {
	cp := testCheckpoint()
	msg := string(sign(t, cp, testKey(1)))
	body, _, _ := strings.Cut(msg, "\n\n")
	keys := []ed25519.PublicKey{pub(testKey(1))}
	tests := []struct {
		name string
		msg  string
		key  string // a key name other than keyName, if set
		keys []ed25519.PublicKey
		as   any // a note error type the error must wrap, if set
	}{
		{name: "signed by an unknown key", msg: string(sign(t, cp, testKey(3))), keys: keys, as: new(*note.UnverifiedNoteError)},
		{name: "old key dropped from the list", msg: msg, keys: []ed25519.PublicKey{pub(testKey(2))}, as: new(*note.UnverifiedNoteError)},
		{name: "no keys", msg: msg, as: new(*note.UnverifiedNoteError)},
		{name: "signed under another key name", msg: msg, key: "other.example", keys: keys, as: new(*note.UnverifiedNoteError)},
		{name: "seq changed", msg: strings.Replace(msg, "\n1234\n", "\n1233\n", 1), keys: keys, as: new(*note.InvalidSignatureError)},
		{name: "hash changed", msg: strings.Replace(msg, "0123456789abcdef\n", "0123456789abcdee\n", 1), keys: keys, as: new(*note.InvalidSignatureError)},
		{name: "signature changed", msg: msg[:len(msg)-6] + "AAAAA\n", keys: keys},
		{name: "unsigned body", msg: body + "\n", keys: keys},
		{name: "body and a blank line, no signature", msg: body + "\n\n", keys: keys},
		{name: "empty", msg: "", keys: keys},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := keyName
			if tt.key != "" {
				name = tt.key
			}
			_, err := audit.OpenCheckpoint([]byte(tt.msg), name, tt.keys)
			if !errors.Is(err, audit.ErrCheckpoint) {
				t.Fatalf("OpenCheckpoint = %v, want an error wrapping ErrCheckpoint", err)
			}
			if tt.as != nil && !errors.As(err, tt.as) {
				t.Errorf("OpenCheckpoint = %v, want it to wrap a %T", err, tt.as)
			}
		})
	}
}

// A well-signed note must still hold a checkpoint, written one way.
func TestOpenCheckpointRefusesMalformedBodies(t *testing.T) {
	hash := strings.Repeat("0123456789abcdef", 4)
	good := "fieldsync audit checkpoint\neu-1\n1234\n" + hash + "\n2025-03-14T09:26:53.5Z\n"
	bodies := []struct{ name, body string }{
		{"another header", strings.Replace(good, "fieldsync audit checkpoint", "fieldsync checkpoint", 1)},
		{"a line missing", strings.Replace(good, "eu-1\n", "", 1)},
		{"a line extra", good + "extra\n"},
		{"empty origin", strings.Replace(good, "eu-1", "", 1)},
		{"origin with a tab", strings.Replace(good, "eu-1", "eu\t1", 1)},
		{"seq 0", strings.Replace(good, "1234", "0", 1)},
		{"negative seq", strings.Replace(good, "1234", "-1234", 1)},
		{"seq with a leading zero", strings.Replace(good, "1234", "01234", 1)},
		{"seq with a plus", strings.Replace(good, "1234", "+1234", 1)},
		{"seq not a number", strings.Replace(good, "1234", "12x4", 1)},
		{"upper-case hash", strings.Replace(good, hash, strings.ToUpper(hash), 1)},
		{"short hash", strings.Replace(good, hash, hash[2:], 1)},
		{"time with an offset", strings.Replace(good, "09:26:53.5Z", "11:26:53.5+02:00", 1)},
		{"time with trailing zeros", strings.Replace(good, "53.5Z", "53.500Z", 1)},
		{"time not RFC 3339", strings.Replace(good, "2025-03-14T09:26:53.5Z", "14 Mar 25 09:26 UTC", 1)},
	}
	s := noteSigner(t, keyName, testKey(1))
	keys := []ed25519.PublicKey{pub(testKey(1))}
	msg, err := note.Sign(&note.Note{Text: good}, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.OpenCheckpoint(msg, keyName, keys); err != nil {
		t.Fatalf("the good body does not open: %v", err)
	}
	for _, tt := range bodies {
		t.Run(tt.name, func(t *testing.T) {
			msg, err := note.Sign(&note.Note{Text: tt.body}, s)
			if err != nil {
				t.Fatal(err)
			}
			if cp, err := audit.OpenCheckpoint(msg, keyName, keys); !errors.Is(err, audit.ErrCheckpoint) {
				t.Errorf("OpenCheckpoint(%q) = %+v, %v; want an error wrapping ErrCheckpoint", tt.body, cp, err)
			}
		})
	}
}

func TestSignCheckpointRefuses(t *testing.T) {
	tests := []struct {
		name string
		edit func(cp *audit.Checkpoint, keyName *string, key *ed25519.PrivateKey)
	}{
		{"empty origin", func(cp *audit.Checkpoint, _ *string, _ *ed25519.PrivateKey) { cp.Origin = "" }},
		{"origin of two lines", func(cp *audit.Checkpoint, _ *string, _ *ed25519.PrivateKey) { cp.Origin = "eu-1\n2" }},
		{"seq 0", func(cp *audit.Checkpoint, _ *string, _ *ed25519.PrivateKey) { cp.Seq = 0 }},
		{"a year RFC 3339 cannot write", func(cp *audit.Checkpoint, _ *string, _ *ed25519.PrivateKey) { cp.At = cp.At.AddDate(8000, 0, 0) }},
		{"key name with a space", func(_ *audit.Checkpoint, n *string, _ *ed25519.PrivateKey) { *n = "field sync" }},
		{"key name with a plus", func(_ *audit.Checkpoint, n *string, _ *ed25519.PrivateKey) { *n = "field+sync" }},
		{"empty key name", func(_ *audit.Checkpoint, n *string, _ *ed25519.PrivateKey) { *n = "" }},
		{"short private key", func(_ *audit.Checkpoint, _ *string, k *ed25519.PrivateKey) { *k = (*k)[:32] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cp, name, key := testCheckpoint(), keyName, testKey(1)
			tt.edit(&cp, &name, &key)
			if msg, err := audit.SignCheckpoint(cp, name, key); !errors.Is(err, audit.ErrCheckpoint) {
				t.Errorf("SignCheckpoint = %q, %v; want an error wrapping ErrCheckpoint", msg, err)
			}
		})
	}
}

// TestCheckpointCatches runs the supervisor's check: a checkpoint of the
// head, signed, kept, opened later, and compared with the log as it is then.
func TestCheckpointCatches(t *testing.T) {
	const n = 40
	orig := buildLog(5, n)
	msg := sign(t, audit.Checkpoint{Origin: "eu-1", Seq: n, Hash: orig[n-1].Hash, At: orig[n-1].At}, testKey(1))
	cp, err := audit.OpenCheckpoint(msg, keyName, []ed25519.PublicKey{pub(testKey(1))})
	if err != nil {
		t.Fatal(err)
	}

	grown := slices.Clone(orig)
	for i := range 10 {
		grown = append(grown, audit.Next(&grown[len(grown)-1], grown[len(grown)-1].At.Add(time.Second), "push", "device:7f3a", fmt.Sprintf("record:tasks/%d", i), nil))
	}
	rewritten := slices.Clone(orig)
	rewritten[4].Kind = "revoke" // entry 5
	rebuild(rewritten, 4)
	rewrittenAndGrown := slices.Clone(grown)
	rewrittenAndGrown[4].Kind = "revoke"
	rebuild(rewrittenAndGrown, 4)
	for _, log := range [][]audit.Entry{rewritten, rewrittenAndGrown} {
		if _, _, err := audit.Verify(log); err != nil {
			t.Fatalf("a rebuilt chain must verify on its own (that is the attack): %v", err)
		}
	}

	tests := []struct {
		name    string
		log     []audit.Entry
		wantSeq int64 // the mismatch expected; 0 for none
	}{
		{"untouched log passes", orig, 0},
		{"log grown after the checkpoint passes", grown, 0},
		{"last entry deleted", orig[:n-1], n},
		{"last 3 entries deleted", orig[:n-3], n - 2},
		{"every entry deleted", nil, 1},
		{"chain rebuilt after editing entry 5", rewritten, n},
		{"chain rebuilt after editing entry 5, then grown", rewrittenAndGrown, n},
		{"grown, then truncated below the checkpoint", grown[:n-1], n},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v audit.Verifier
			var err error
			v.Expect(cp)
			for _, e := range tt.log {
				if err = v.Add(e); err != nil {
					break
				}
			}
			if err == nil {
				err = v.Check(cp)
			}
			var mm *audit.Mismatch
			switch {
			case tt.wantSeq == 0 && err != nil:
				t.Errorf("got %v, want the log to pass", err)
			case tt.wantSeq != 0 && (!errors.As(err, &mm) || mm.Seq != tt.wantSeq):
				t.Errorf("got %v, want a mismatch at entry %d", err, tt.wantSeq)
			}
		})
	}
}

func TestCheckWithoutExpect(t *testing.T) {
	log := buildLog(6, 50)
	cp := audit.Checkpoint{Origin: "eu-1", Seq: 40, Hash: log[39].Hash}
	var v audit.Verifier
	for _, e := range log[:40] {
		if err := v.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.Check(cp); err != nil {
		t.Errorf("Check of the head without Expect = %v, want nil", err)
	}
	bad := cp
	bad.Hash[0] ^= 1
	var mm *audit.Mismatch
	if err := v.Check(bad); !errors.As(err, &mm) || mm.Seq != 40 {
		t.Errorf("Check of another hash at the head = %v, want a mismatch at entry 40", err)
	}

	for _, e := range log[40:] {
		if err := v.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	v.Expect(cp) // too late: Add has passed entry 40
	err := v.Check(cp)
	if err == nil || errors.As(err, &mm) {
		t.Errorf("Check of a passed entry that was not expected = %v, want a usage error that is not a mismatch", err)
	}
}

// A checkpoint in the middle authenticates the entries up to it, and no
// more: that is the exposure window doc.go describes.
func TestCheckpointCoversOnlyUpToItsSeq(t *testing.T) {
	log := buildLog(7, 40)
	cp := audit.Checkpoint{Origin: "eu-1", Seq: 20, Hash: log[19].Hash}

	before := slices.Clone(log)
	before[4].Actor = "user:mallory"
	rebuild(before, 4)
	var mm *audit.Mismatch
	if _, _, err := audit.Verify(before, cp); !errors.As(err, &mm) || mm.Seq != 20 {
		t.Errorf("rebuilt from entry 5, checkpoint at 20: got %v, want a mismatch at entry 20", err)
	}

	after := slices.Clone(log)
	after[29].Actor = "user:mallory"
	rebuild(after, 29)
	if _, _, err := audit.Verify(after, cp); err != nil {
		t.Errorf("rebuilt from entry 30, checkpoint at 20: got %v; entries after a checkpoint are not covered by it", err)
	}
}

func FuzzOpenCheckpoint(f *testing.F) {
	keys := []ed25519.PublicKey{pub(testKey(1))}
	good, err := audit.SignCheckpoint(testCheckpoint(), keyName, testKey(1))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(bytes.Replace(good, []byte("1234"), []byte("1235"), 1))
	f.Add([]byte("fieldsync audit checkpoint\n\n— x AAAAAAA=\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		cp, err := audit.OpenCheckpoint(msg, keyName, keys)
		if err != nil {
			return
		}
		// Whatever opens must sign and open again to the same checkpoint.
		again, err := audit.SignCheckpoint(cp, keyName, testKey(1))
		if err != nil {
			t.Fatalf("re-signing %+v: %v", cp, err)
		}
		cp2, err := audit.OpenCheckpoint(again, keyName, keys)
		if err != nil || !sameCheckpoint(cp2, cp) {
			t.Fatalf("re-opened %+v, %v; want %+v", cp2, err, cp)
		}
	})
}
