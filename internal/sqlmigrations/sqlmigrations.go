// Package sqlmigrations splits a package's embedded SQL migrations into the
// PostgreSQL and SQLite sets that sqldb.Migrate takes. Every package with
// its own tables embeds a directory "migrations" holding "postgres/" and
// "sqlite/" subdirectories of bun/migrate files.
package sqlmigrations

import (
	"fmt"
	"io/fs"
)

// Split returns the "migrations/postgres" and "migrations/sqlite"
// subdirectories of fsys. It panics when they cannot be opened, which for an
// embedded directory is a build mistake, not a runtime condition.
func Split(fsys fs.FS) (postgres, sqlite fs.FS) {
	return sub(fsys, "migrations/postgres"), sub(fsys, "migrations/sqlite")
}

func sub(fsys fs.FS, dir string) fs.FS {
	f, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(fmt.Sprintf("sqlmigrations: %s: %v", dir, err))
	}
	if _, err := fs.Stat(f, "."); err != nil {
		panic(fmt.Sprintf("sqlmigrations: %s: %v", dir, err))
	}
	return f
}
