-- +goose Up
-- Request counts per caller per fixed window, shared by every server
-- instance so that a limit holds however many instances serve.
CREATE TABLE rate_limits (
    key           text    NOT NULL,
    window_start  integer NOT NULL,
    count         integer NOT NULL,
    PRIMARY KEY (key, window_start)
);
CREATE INDEX rate_limits_window ON rate_limits (window_start);

-- +goose Down
DROP TABLE rate_limits;
