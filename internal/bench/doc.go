// Package bench measures a running fieldsync over HTTP, the way devices use
// it, against the raw limit of the same database on the same rows, and
// loads it with many simulated devices.
//
// Run drives the whole-server benchmark behind "fieldsync bench": pushes
// of new records and of concurrent edits of shared records from several
// devices at once, an initial sync of a large data set, request latencies
// and the server's peak memory; and, in the same run, the raw limits
// (batched upserts and paged reads straight through the database driver:
// pgx for PostgreSQL, the pure-Go SQLite driver for SQLite) that each
// figure is divided by. Load runs the load test: many devices, each
// syncing (push, then pull until drained) at a fixed interval, spread over
// several server processes.
//
// The package knows fieldsync only by its wire protocol and its table
// layout (for the raw limits and their scratch table); the command that
// calls it starts the servers and mints the tokens. Everything is bounded:
// fixed counts, loopback URLs, the caller's context for the total time.
package bench
