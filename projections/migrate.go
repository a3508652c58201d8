package projections

import (
	"embed"
	"io/fs"

	"github.com/accessledger/accessledger/internal/sqlmigrations"
)

// Component is the name the runner's migrations are recorded under (tables
// projections_migrations and projections_migration_locks).
const Component = "projections"

//go:embed migrations
var migrationFiles embed.FS

// Migrations returns the runner's bun/migrate SQL files (the table
// projection_checkpoints) for PostgreSQL and for SQLite. Apply them with
// sqldb.Migrate(ctx, db, projections.Component, pg, lite) before NewRunner's
// Run or Rebuild. Each projection's own tables are not migrations: the runner
// creates them per generation with Table.Create.
func Migrations() (postgres, sqlite fs.FS) {
	return sqlmigrations.Split(migrationFiles)
}
