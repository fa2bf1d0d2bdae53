-- +goose Up
-- The merged state of every record. state is the record's canonical JSON
-- (text, not jsonb: jsonb would reorder keys and break byte-identical state).
-- seq is the record's position in the change feed. SQLite has one writer
-- at a time, so seq order is commit order and needs no transaction id.

CREATE TABLE records (
    collection  text        NOT NULL,
    id          text        NOT NULL,
    unit        text        NOT NULL DEFAULT '',
    contingent  text        NOT NULL DEFAULT '',
    state       text        NOT NULL,
    deleted     boolean     NOT NULL DEFAULT false,
    seq         integer     NOT NULL,
    updated_at  timestamp   NOT NULL,
    PRIMARY KEY (collection, id)
);
CREATE UNIQUE INDEX records_feed ON records (seq);
CREATE INDEX records_unit ON records (unit, collection);

-- Every accepted version of every record: the change as applied and the
-- state after it. (node, dot) identifies a writer's edit of a record.
CREATE TABLE record_versions (
    seq          integer     PRIMARY KEY AUTOINCREMENT,
    collection   text        NOT NULL,
    record_id    text        NOT NULL,
    change_id    text        NOT NULL,
    subject      text        NOT NULL,
    node         text        NOT NULL,
    dot          integer     NOT NULL,
    hlc          text        NOT NULL,
    clamped      boolean     NOT NULL DEFAULT false,
    outcome      text        NOT NULL,
    change       text        NOT NULL,
    state        text        NOT NULL,
    conflicts    integer     NOT NULL DEFAULT 0,
    received_at  timestamp   NOT NULL
);
CREATE UNIQUE INDEX record_versions_dot ON record_versions (collection, record_id, node, dot);
CREATE INDEX record_versions_record ON record_versions (collection, record_id, seq);

-- Idempotency: every change id a writer sent, with its first result, kept
-- for the configured retention (90 days by default).
CREATE TABLE seen_changes (
    subject     text        NOT NULL,
    change_id   text        NOT NULL,
    collection  text        NOT NULL,
    record_id   text        NOT NULL,
    status      text        NOT NULL,
    code        text        NOT NULL DEFAULT '',
    message     text        NOT NULL DEFAULT '',
    clamped     boolean     NOT NULL DEFAULT false,
    seen_at     timestamp   NOT NULL,
    PRIMARY KEY (subject, change_id)
);
CREATE INDEX seen_changes_age ON seen_changes (seen_at);

-- Conflicts for review: at most one open conflict per record field.
CREATE TABLE conflicts (
    id               text        PRIMARY KEY,
    collection       text        NOT NULL,
    record_id        text        NOT NULL,
    field            text        NOT NULL,
    rule             text        NOT NULL,
    review_required  boolean     NOT NULL,
    vals             text        NOT NULL,
    kept             integer     NOT NULL,
    status           text        NOT NULL,
    unit             text        NOT NULL DEFAULT '',
    contingent       text        NOT NULL DEFAULT '',
    change_id        text        NOT NULL,
    created_at       timestamp   NOT NULL,
    updated_at       timestamp   NOT NULL,
    resolved_at      timestamp  ,
    resolved_by      text        NOT NULL DEFAULT '',
    resolution       text        NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX conflicts_open_field ON conflicts (collection, record_id, field) WHERE status = 'open';
CREATE INDEX conflicts_status ON conflicts (status, created_at);

-- The dead-letter list: changes the server did not merge.
CREATE TABLE rejections (
    id           integer     PRIMARY KEY AUTOINCREMENT,
    subject      text        NOT NULL,
    change_id    text        NOT NULL,
    collection   text        NOT NULL,
    record_id    text        NOT NULL,
    unit         text        NOT NULL DEFAULT '',
    contingent   text        NOT NULL DEFAULT '',
    code         text        NOT NULL,
    message      text        NOT NULL,
    body         text        NOT NULL,
    received_at  timestamp   NOT NULL
);
CREATE INDEX rejections_age ON rejections (received_at);
CREATE UNIQUE INDEX rejections_change ON rejections (subject, change_id);

-- Token signing keys (Ed25519). Retired keys still verify until removed.
CREATE TABLE signing_keys (
    kid          text        PRIMARY KEY,
    alg          text        NOT NULL,
    public_key   blob        NOT NULL,
    private_key  blob        NOT NULL,
    created_at   timestamp   NOT NULL,
    retired_at   timestamp  
);

-- +goose Down
DROP TABLE signing_keys;
DROP TABLE rejections;
DROP TABLE conflicts;
DROP TABLE seen_changes;
DROP TABLE record_versions;
DROP TABLE records;
