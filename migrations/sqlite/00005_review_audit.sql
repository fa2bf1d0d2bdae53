-- +goose Up
-- A supervisor's reason for a resolution, kept with the conflict.
ALTER TABLE conflicts ADD COLUMN reason text NOT NULL DEFAULT '';
CREATE INDEX conflicts_record ON conflicts (collection, record_id);

-- The audit trail: one entry per accepted push, resolution, sign-off,
-- enrolment, revocation and key rotation, each committing to the one
-- before it (hash = SHA-256 over the entry and the previous hash; see
-- internal/audit). Entries are appended in the transaction of the event,
-- so seq has no gaps: a missing seq is a deleted row.
CREATE TABLE audit_log (
    seq        bigint      PRIMARY KEY,
    at         timestamp NOT NULL,
    kind       text        NOT NULL,
    actor      text        NOT NULL,
    subject    text        NOT NULL,
    detail     text        NOT NULL,
    prev_hash  text        NOT NULL,
    hash       text        NOT NULL
);

-- +goose Down
DROP TABLE audit_log;
DROP INDEX conflicts_record;
ALTER TABLE conflicts DROP COLUMN reason;
