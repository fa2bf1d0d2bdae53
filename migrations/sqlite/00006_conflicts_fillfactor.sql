-- +goose Up
-- PostgreSQL leaves room in the conflicts table's pages for in-place
-- rewrites of open conflicts; SQLite has no such setting. Kept so both
-- dialects hold the same versions.
SELECT 1;

-- +goose Down
SELECT 1;
