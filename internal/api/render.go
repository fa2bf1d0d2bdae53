package api

import (
	"encoding/json"
	"errors"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/fieldsync/fieldsync/internal/domain"
	"github.com/fieldsync/fieldsync/sync/merge"
)

// Responses are written by hand, not with encoding/json, because a record's
// bytes must be exactly merge.Record.AppendJSON's canonical encoding (two
// replicas with one state hold one byte string), and re-encoding through a
// map or struct would reorder or reformat them.

// sendJSON sends b as a JSON response that no cache may keep: a sync
// response is one caller's view at one moment.
func sendJSON(c *fiber.Ctx, b []byte) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Send(b)
}

// appendRecord appends rv's record in canonical form; a stale record gets a
// top-level "stale": true member, inserted before the closing brace, so the
// bytes before it are the canonical encoding unchanged.
func appendRecord(b []byte, rv *domain.RecordView) []byte {
	if rv.Raw != nil {
		b = append(b, rv.Raw...)
	} else {
		b = rv.Record.AppendJSON(b)
	}
	if !rv.Stale {
		return b
	}
	// AppendJSON always ends with the record object's '}'.
	b = b[:len(b)-1]
	return append(b, `,"stale":true}`...)
}

// appendPushResponse appends {"results":[...],"server_hlc":"..."}. With
// minimal, results of changes applied or merged as sent carry no record:
// the device applies its own change to its copy of the server's record and
// gets the rest from its next pull. Every other result keeps its record: a
// clamped clock or a replay (duplicate) means the server holds the write
// differently from the device's copy, and rejected and stale ones need it
// to drop or rebase the edit.
func appendPushResponse(b []byte, r *domain.PushResponse, minimal bool) []byte {
	b = append(b, `{"results":[`...)
	for i := range r.Results {
		res := &r.Results[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"change_id":`...)
		b = appendString(b, res.ChangeID)
		b = append(b, `,"status":`...)
		b = appendString(b, string(res.Status))
		accepted := (res.Status == merge.Applied || res.Status == merge.Merged) && !res.ClockClamped
		if res.Record != nil && (res.Record.Record != nil || res.Record.Raw != nil) && !(minimal && accepted) {
			b = append(b, `,"record":`...)
			b = appendRecord(b, res.Record)
		}
		if res.Code != "" {
			b = append(b, `,"code":`...)
			b = appendString(b, res.Code)
		}
		if res.Message != "" {
			b = append(b, `,"message":`...)
			b = appendString(b, res.Message)
		}
		if res.ClockClamped {
			b = append(b, `,"clock_clamped":true`...)
		}
		b = append(b, '}')
	}
	b = append(b, `],"server_hlc":"`...)
	b = r.ServerHLC.AppendText(b)
	return append(b, `"}`...)
}

// appendPullResponse appends
// {"records":[...],"cursor":"...","has_more":bool,"server_hlc":"..."}.
func appendPullResponse(b []byte, r *domain.PullResponse) ([]byte, error) {
	b = append(b, `{"records":[`...)
	for i := range r.Records {
		if r.Records[i].Record == nil && r.Records[i].Raw == nil {
			return nil, errors.New("api: syncer returned a pull record without a record")
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = appendRecord(b, &r.Records[i])
	}
	b = append(b, `],"cursor":`...)
	b = appendString(b, r.Cursor.String())
	b = append(b, `,"has_more":`...)
	b = strconv.AppendBool(b, r.HasMore)
	b = append(b, `,"server_hlc":"`...)
	b = r.ServerHLC.AppendText(b)
	return append(b, `"}`...), nil
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			q, _ := json.Marshal(s) // escapes and replaces invalid UTF-8
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
