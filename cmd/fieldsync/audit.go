package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync/internal/audit"
	"github.com/fieldsync/fieldsync/internal/domain"
)

// checkpointKeyName names the signer in checkpoint notes.
const checkpointKeyName = "fieldsync-audit"

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// auditCmd runs "fieldsync audit verify" and "fieldsync audit checkpoint".
func auditCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" && args[0] != "checkpoint" {
		fmt.Fprintln(stderr, "usage: fieldsync audit verify [-checkpoint FILE]... [-jwks FILE] | fieldsync audit checkpoint")
		return flag.ErrHelp
	}
	sub := args[0]
	var checkpoints multiFlag
	var jwks *string
	fs, cfg, err := adminFlags("fieldsync audit "+sub, getenv, stderr, func(fs *flag.FlagSet) {
		if sub == "verify" {
			fs.Var(&checkpoints, "checkpoint", "a signed checkpoint kept off the server (repeatable): the log must hold it")
			jwks = fs.String("jwks", "", "trust only these public keys for checkpoints (a copy of /.well-known/jwks.json kept off the server); default: the keys in the database")
		}
	})
	if err != nil {
		return err
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	return runAdmin(ctx, cfg, stdout, func(m *Main) error {
		keys, err := m.store.SigningKeys(ctx)
		if err != nil {
			return err
		}
		if sub == "checkpoint" {
			return auditCheckpoint(ctx, m, keys, stdout)
		}
		var pubs []ed25519.PublicKey
		if *jwks != "" {
			if pubs, err = readJWKS(*jwks); err != nil {
				return err
			}
		} else {
			for _, k := range keys {
				pubs = append(pubs, k.Public)
			}
		}
		var cps []audit.Checkpoint
		for _, path := range checkpoints {
			msg, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			cp, err := audit.OpenCheckpoint(msg, checkpointKeyName, pubs)
			if err != nil {
				return fmt.Errorf("checkpoint %s: %w", path, err)
			}
			if cp.Origin != m.Config.JWTIssuer {
				return fmt.Errorf("checkpoint %s is of %q, not of this server (%q)", path, cp.Origin, m.Config.JWTIssuer)
			}
			cps = append(cps, cp)
		}
		rep, err := m.store.VerifyAudit(ctx, cps)
		if err != nil {
			return err
		}
		if rep.Err != nil {
			var mm *audit.Mismatch
			if errors.As(rep.Err, &mm) {
				return fmt.Errorf("audit trail broken at entry %d: %s", mm.Seq, mm.Reason)
			}
			return fmt.Errorf("audit trail broken: %w", rep.Err)
		}
		fmt.Fprintf(stdout, "audit trail verified: %d entries, head %s; %d record versions match their entries; %d checkpoints held\n",
			rep.Entries, rep.Head, rep.Versions, len(cps))
		return nil
	})
}

// auditCheckpoint signs the current head with the newest signing key and
// prints the note: keep it off the server.
func auditCheckpoint(ctx context.Context, m *Main, keys []domain.SigningKey, stdout io.Writer) error {
	var signer *domain.SigningKey
	for i := range keys {
		k := &keys[i]
		if k.Private != nil && k.RetiredAt == nil {
			signer = k // oldest first: the last one is the newest
		}
	}
	if signer == nil {
		return errors.New("no signing key; run fieldsync keys rotate")
	}
	seq, head, err := m.store.AuditHead(ctx)
	if err != nil {
		return err
	}
	if seq == 0 {
		return errors.New("the audit log is empty; nothing to checkpoint")
	}
	msg, err := audit.SignCheckpoint(audit.Checkpoint{Origin: m.Config.JWTIssuer, Seq: seq, Hash: head, At: time.Now().UTC()},
		checkpointKeyName, signer.Private)
	if err != nil {
		return err
	}
	_, err = stdout.Write(msg)
	return err
}

// readJWKS reads the Ed25519 keys of a JWK set.
func readJWKS(path string) ([]ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var set struct {
		Keys []struct {
			Kty, Crv, X string
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("%s: not a JWK set: %w", path, err)
	}
	var out []ed25519.PublicKey
	for _, k := range set.Keys {
		if k.Kty != "OKP" || k.Crv != "Ed25519" {
			continue
		}
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%s: a key's x is not an Ed25519 public key", path)
		}
		out = append(out, ed25519.PublicKey(x))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no Ed25519 key", path)
	}
	return out, nil
}
