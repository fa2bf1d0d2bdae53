// Package migrations embeds fieldsync's versioned SQL migrations, one folder
// per database dialect. Migrations are only ever appended: a released file is
// never edited, and both folders always hold the same numbers.
package migrations

import (
	"embed"
	"fmt"
	"io/fs"
)

//go:embed postgres/*.sql sqlite/*.sql
var files embed.FS

// Dialects are the folders migrations exist for.
var Dialects = []string{"postgres", "sqlite"}

// FS returns the migrations of one dialect ("postgres" or "sqlite").
func FS(dialect string) (fs.FS, error) {
	switch dialect {
	case "postgres", "sqlite":
		return fs.Sub(files, dialect)
	}
	return nil, fmt.Errorf("migrations: unknown dialect %q", dialect)
}
