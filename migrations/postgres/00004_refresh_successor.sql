-- +goose Up
-- The token a refresh token was exchanged for, so that a refresh retried
-- after a lost response gets the same successor back instead of revoking
-- the family (a cut connection is not a stolen token).
ALTER TABLE refresh_tokens ADD COLUMN replaced_by text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE refresh_tokens DROP COLUMN replaced_by;
