package api

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/fieldsync/fieldsync/internal/domain"
)

// push serves POST /v1/sync/push: {"changes": [...]} in, one result per
// change out, in request order. Everything the syncer should not have to
// think about (media type, encoding, size, envelope shape) is refused here,
// before the syncer is called.
func (s *server) push(c *fiber.Ctx) error {
	id, ok := IdentityFrom(c)
	if !ok {
		return errors.New("api: push route without authentication")
	}
	if err := checkJSON(c.Get(fiber.HeaderContentType)); err != nil {
		return err
	}
	// The raw wire bytes, never c.Body(): fiber would inflate them with no
	// size cap, and on bad gzip hand back the error text as the body.
	changes, err := parsePush(c.Get(fiber.HeaderContentEncoding), c.Request().Body(), s.cfg.BodyLimit, s.cfg.MaxChanges)
	if err != nil {
		if domain.ErrorCode(err) == domain.CodeUnsupportedType {
			// The media type passed above, so the encoding is at fault:
			// RFC 9110 §15.5.16 says to list the ones accepted.
			c.Set(fiber.HeaderAcceptEncoding, "gzip, identity")
		}
		return err
	}
	ctx, cancel := s.requestContext(c)
	defer cancel()
	resp, err := s.deps.Syncer.Push(ctx, id, changes)
	if err != nil {
		return err
	}
	if resp == nil || len(resp.Results) != len(changes) {
		// The protocol promises one result per change, in order; a client
		// matching them up by position must never get a short list.
		n := -1
		if resp != nil {
			n = len(resp.Results)
		}
		return fmt.Errorf("api: syncer returned %d results for %d changes", n, len(changes))
	}
	minimal := preferMinimal(c.Get("Prefer"))
	if minimal {
		c.Set("Preference-Applied", "return=minimal")
		c.Vary("Prefer")
	}
	return sendJSON(c, appendPushResponse(make([]byte, 0, 64+512*len(resp.Results)), resp, minimal))
}

// preferMinimal reports whether a Prefer header (RFC 7240) asks for
// return=minimal: results of accepted changes without their records. A
// client that pulls right after pushing, as sync/client does, gets every
// record once instead of twice; on a 64 kbit/s link that is most of the
// bytes.
func preferMinimal(h string) bool {
	for p := range strings.SplitSeq(h, ",") {
		if name, _, _ := strings.Cut(strings.TrimSpace(p), ";"); strings.EqualFold(strings.TrimSpace(name), "return=minimal") {
			return true
		}
	}
	return false
}

// checkJSON accepts application/json, with an optional UTF-8 charset
// (RFC 8259 JSON is UTF-8).
func checkJSON(contentType string) error {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != fiber.MIMEApplicationJSON {
		return domain.Errorf(domain.CodeUnsupportedType, "the body must be application/json")
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return domain.Errorf(domain.CodeUnsupportedType, "the body must be UTF-8 JSON")
	}
	return nil
}

// parsePush turns a push body as received (its Content-Encoding and raw
// bytes) into its changes, enforcing the decompressed size limit and the
// change count. raw is not retained: every returned change is a copy.
func parsePush(contentEncoding string, raw []byte, bodyLimit, maxChanges int) ([]json.RawMessage, error) {
	body, err := readBody(contentEncoding, raw, bodyLimit)
	if err != nil {
		return nil, err
	}
	return decodeChanges(body, maxChanges)
}

// readBody returns the body's bytes after content decoding: identity as is,
// gzip inflated through a reader that stops one byte past limit, so a gzip
// bomb costs at most limit+1 bytes of memory before it is refused.
func readBody(contentEncoding string, raw []byte, limit int) ([]byte, error) {
	tooLarge := domain.Errorf(domain.CodeBodyTooLarge, "the body is over %d bytes (after decompression)", limit)
	switch strings.ToLower(strings.TrimSpace(contentEncoding)) {
	case "", "identity":
		if len(raw) > limit {
			return nil, tooLarge
		}
		return raw, nil
	case "gzip", "x-gzip": // RFC 9110 §8.4.1.3: x-gzip is gzip
	default:
		return nil, domain.Errorf(domain.CodeUnsupportedType, "the body's Content-Encoding must be gzip or identity")
	}
	badGzip := domain.Errorf(domain.CodeInvalidGzip, "the body is not valid gzip")
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, badGzip
	}
	defer zr.Close()
	var out bytes.Buffer
	// Most pushes compress 5-10x; start near the expected size rather than
	// growing from nothing, but never beyond the limit.
	out.Grow(min(limit+1, 8*len(raw)+512))
	if _, err := io.Copy(&out, io.LimitReader(zr, int64(limit)+1)); err != nil {
		return nil, badGzip
	}
	if out.Len() > limit {
		return nil, tooLarge
	}
	return out.Bytes(), nil
}

// decodeChanges decodes the push envelope {"changes": [...]} strictly: one
// object, exactly the member "changes" (matched exactly, once), an array,
// nothing after it. Each change is kept raw, to be decoded and judged one
// by one by the syncer (a bad change is a rejected result, not a bad
// request). Counting stops at maxChanges+1 so an oversized batch is refused
// without decoding the rest.
func decodeChanges(body []byte, maxChanges int) ([]json.RawMessage, error) {
	invalid := func(format string, args ...any) error {
		return domain.Errorf(domain.CodeInvalidJSON, format, args...)
	}
	syntax := func(err error) error {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return invalid("the body is not valid JSON (at byte %d)", se.Offset)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return invalid("the body ends before the JSON does")
		}
		return invalid("the body is not valid JSON")
	}
	const shape = `the body must be {"changes": [...]}`

	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err == io.EOF {
		return nil, invalid("the body is empty; %s", shape)
	}
	if err != nil {
		return nil, syntax(err)
	}
	if tok != json.Delim('{') {
		return nil, invalid(shape)
	}
	var changes []json.RawMessage
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntax(err)
		}
		name, _ := tok.(string) // inside an object, Token returns member names as strings
		if name != "changes" {
			return nil, invalid("unknown member %s; %s", quoteShort(name), shape)
		}
		if changes != nil {
			return nil, invalid(`the member "changes" appears twice`)
		}
		if tok, err = dec.Token(); err != nil {
			return nil, syntax(err)
		}
		if tok != json.Delim('[') {
			return nil, invalid(`"changes" must be an array`)
		}
		changes = []json.RawMessage{}
		for dec.More() {
			if len(changes) == maxChanges {
				return nil, domain.Errorf(domain.CodeTooManyChanges, "a push may carry at most %d changes; send the rest in another push", maxChanges)
			}
			var ch json.RawMessage // Decode copies: nothing aliases the request buffer
			if err := dec.Decode(&ch); err != nil {
				return nil, syntax(err)
			}
			changes = append(changes, ch)
		}
		if _, err := dec.Token(); err != nil { // ']'
			return nil, syntax(err)
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, syntax(err)
	}
	if changes == nil {
		return nil, invalid(`the member "changes" is missing; %s`, shape)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalid("data after the JSON object")
	}
	return changes, nil
}

// quoteShort quotes a client-supplied name for a message, cut short: the
// detail should identify it, not echo a megabyte.
func quoteShort(s string) string {
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}
