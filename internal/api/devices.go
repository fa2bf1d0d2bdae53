package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/fieldsync/fieldsync/internal/auth"
	"github.com/fieldsync/fieldsync/internal/domain"
)

// DeviceService enrols, refreshes and revokes devices (auth.Devices).
type DeviceService interface {
	Enroll(ctx context.Context, code, label string) (auth.Tokens, error)
	Refresh(ctx context.Context, refreshToken string) (auth.Tokens, error)
	Revoke(ctx context.Context, actor domain.Identity, deviceID string) (domain.Device, error)
}

// smallBodyLimit bounds the bodies of the token routes: a code or a token.
const smallBodyLimit = 16 << 10

// decodeSmall decodes a small JSON body strictly into v.
func decodeSmall(c *fiber.Ctx, v any) error {
	if err := checkJSON(c.Get(fiber.HeaderContentType)); err != nil {
		return err
	}
	body, err := readBody(c.Get(fiber.HeaderContentEncoding), c.Request().Body(), smallBodyLimit)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil || dec.More() {
		return domain.Errorf(domain.CodeInvalidJSON, "the body must be a JSON object with only the documented members")
	}
	return nil
}

type tokenResponse struct {
	DeviceID         string    `json:"device_id"`
	Unit             string    `json:"unit"`
	Contingent       string    `json:"contingent"`
	TokenType        string    `json:"token_type"`
	AccessToken      string    `json:"access_token"`
	ExpiresIn        int64     `json:"expires_in"`
	AccessExpiresAt  time.Time `json:"access_expires_at"`
	RefreshToken     string    `json:"refresh_token"`
	RefreshExpiresAt time.Time `json:"refresh_expires_at"`
}

func (s *server) sendTokens(c *fiber.Ctx, t auth.Tokens) error {
	b, err := json.Marshal(tokenResponse{
		DeviceID: t.DeviceID, Unit: t.Unit, Contingent: t.Contingent, TokenType: "Bearer",
		AccessToken: t.AccessToken, ExpiresIn: int64(time.Until(t.AccessExpiresAt).Seconds()), AccessExpiresAt: t.AccessExpiresAt,
		RefreshToken: t.RefreshToken, RefreshExpiresAt: t.RefreshExpiresAt,
	})
	if err != nil {
		return err
	}
	return sendJSON(c, b)
}

func (s *server) devices() (DeviceService, error) {
	if s.deps.Devices == nil {
		return nil, domain.Errorf(domain.CodeNotFound, "device enrolment is not enabled on this server")
	}
	return s.deps.Devices, nil
}

// enroll exchanges a one-time enrolment code for a device id and tokens.
func (s *server) enroll(c *fiber.Ctx) error {
	d, err := s.devices()
	if err != nil {
		return err
	}
	var req struct {
		Code  string `json:"code"`
		Label string `json:"label"`
	}
	if err := decodeSmall(c, &req); err != nil {
		return err
	}
	ctx, cancel := s.requestContext(c)
	defer cancel()
	t, err := d.Enroll(ctx, req.Code, req.Label)
	if err != nil {
		return err
	}
	return s.sendTokens(c, t)
}

// refresh rotates a refresh token.
func (s *server) refresh(c *fiber.Ctx) error {
	d, err := s.devices()
	if err != nil {
		return err
	}
	var req struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := decodeSmall(c, &req); err != nil {
		return err
	}
	ctx, cancel := s.requestContext(c)
	defer cancel()
	t, err := d.Refresh(ctx, req.RefreshToken)
	if err != nil {
		return err
	}
	return s.sendTokens(c, t)
}

// revoke revokes a device (administrators; supervisors of its contingent).
func (s *server) revoke(c *fiber.Ctx) error {
	id, ok := IdentityFrom(c)
	if !ok {
		return errors.New("api: revoke route without authentication")
	}
	if id.Role != domain.RoleAdmin && id.Role != domain.RoleSupervisor {
		return domain.Errorf(domain.CodeForbidden, "only administrators and supervisors revoke devices")
	}
	d, err := s.devices()
	if err != nil {
		return err
	}
	ctx, cancel := s.requestContext(c)
	defer cancel()
	dev, err := d.Revoke(ctx, id, c.Params("id"))
	if err != nil {
		return err
	}
	b, err := json.Marshal(struct {
		DeviceID   string     `json:"device_id"`
		Unit       string     `json:"unit"`
		Contingent string     `json:"contingent"`
		RevokedAt  *time.Time `json:"revoked_at"`
		RevokedBy  string     `json:"revoked_by"`
	}{dev.ID, dev.Unit, dev.Contingent, dev.RevokedAt, dev.RevokedBy})
	if err != nil {
		return err
	}
	return sendJSON(c, b)
}
