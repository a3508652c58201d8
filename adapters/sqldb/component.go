package sqldb

import (
	"context"
	"fmt"
	"io/fs"

	"github.com/uptrace/bun/migrate"
)

// Component is a part of the engine with tables of its own and the
// migrations that make them: the unit that `accessd migrate`, `serve` and
// `status` walk (cmd/accessd keeps the one list of them).
type Component struct {
	// Name is the component's name: its migrations are recorded in the
	// tables <Name>_migrations and <Name>_migration_locks.
	Name string
	// Migrations returns the component's migrations for PostgreSQL and
	// SQLite (as Migrate takes them).
	Migrations func() (postgres, sqlite fs.FS)
}

// Migrate applies the component's migrations db has not applied (see
// Migrate).
func (c Component) Migrate(ctx context.Context, db *DB) error {
	pg, lite := c.Migrations()
	return Migrate(ctx, db, c.Name, pg, lite)
}

// Progress reports how many of the component's migrations db has applied,
// and how many there are for db's dialect. It only reads: a database the
// component was never migrated on has applied 0.
func (c Component) Progress(ctx context.Context, db *DB) (applied, total int, err error) {
	pg, lite := c.Migrations()
	fsys := lite
	if db.IsPostgres() {
		fsys = pg
	}
	if fsys == nil {
		return 0, 0, fmt.Errorf("sqldb: %s: no migrations for %s", c.Name, db.Dialect().Name())
	}
	ms := migrate.NewMigrations()
	if err := ms.Discover(fsys); err != nil {
		return 0, 0, fmt.Errorf("sqldb: %s: discover: %w", c.Name, err)
	}
	total = len(ms.Sorted())
	table := c.Name + "_migrations"
	exists, err := tableExists(ctx, db, table)
	if err != nil || !exists {
		return 0, total, err
	}
	if err := db.NewRaw("SELECT COUNT(*) FROM "+table+" WHERE migrated_at IS NOT NULL").Scan(ctx, &applied); err != nil {
		return 0, total, fmt.Errorf("sqldb: %s: read %s: %w", c.Name, table, err)
	}
	return applied, total, nil
}

// tableExists reports whether the current schema has table name.
func tableExists(ctx context.Context, db *DB, name string) (bool, error) {
	var n int
	var err error
	if db.IsPostgres() {
		err = db.NewRaw("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?", name).Scan(ctx, &n)
	} else {
		err = db.NewRaw("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?", name).Scan(ctx, &n)
	}
	if err != nil {
		return false, fmt.Errorf("sqldb: look for table %s: %w", name, err)
	}
	return n > 0, nil
}
