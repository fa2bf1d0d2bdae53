-- +goose Up
-- Enrolled devices. A revoked device keeps its row (and everything it
-- synced); its tokens stop working.
CREATE TABLE devices (
    id           text        PRIMARY KEY,
    unit         text        NOT NULL,
    contingent   text        NOT NULL DEFAULT '',
    label        text        NOT NULL DEFAULT '',
    enrolled_at  timestamptz NOT NULL,
    revoked_at   timestamptz,
    revoked_by   text        NOT NULL DEFAULT ''
);
CREATE INDEX devices_unit ON devices (unit);

-- One-time enrolment codes, stored as SHA-256 hashes: a leaked database
-- gives no usable code.
CREATE TABLE enrollment_codes (
    code_hash   text        PRIMARY KEY,
    unit        text        NOT NULL,
    contingent  text        NOT NULL DEFAULT '',
    created_by  text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    device_id   text        NOT NULL DEFAULT ''
);

-- Refresh tokens by jti. Each refresh rotates the token within its family;
-- presenting a used one revokes the whole family (it was stolen, or the
-- device was cloned).
CREATE TABLE refresh_tokens (
    jti         text        PRIMARY KEY,
    family      text        NOT NULL,
    device_id   text        NOT NULL,
    issued_at   timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);
CREATE INDEX refresh_tokens_device ON refresh_tokens (device_id);

-- +goose Down
DROP TABLE refresh_tokens;
DROP TABLE enrollment_codes;
DROP TABLE devices;
