package sqldb

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"regexp"
	"sync"
	"time"

	"github.com/uptrace/bun/migrate"
)

// ErrMigrationLocked is returned (wrapped) by Migrate on SQLite when the
// component's migration lock is still held when ctx ends.
var ErrMigrationLocked = errors.New("sqldb: migration lock held")

var componentName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)

// migrateMu serializes Migrate calls within the process; the database-side
// locks below serialize them across processes.
var migrateMu sync.Mutex

// Migrate applies the migrations of one component that db has not applied
// yet, in name order, and records them in the component's own tables
// <component>_migrations and <component>_migration_locks, so components
// (the event store, each projection) migrate independently.
//
// postgres and sqlite hold the component's bun/migrate SQL files for each
// dialect, at their root or below, named NUMBER_name.up.sql and
// NUMBER_name.down.sql (NUMBER: up to 14 digits, e.g. a UTC timestamp
// 20260101120000), with a "--bun:split" line between statements. Name them .tx.up.sql to run each migration in one
// transaction (both engines have transactional DDL): a migration is marked
// applied only after it succeeded, so a failed one is retried next time.
// The fs.FS of the other dialect may be nil.
//
// component must match ^[a-z][a-z0-9_]{0,39}$.
//
// Concurrent calls, in one process or several, are safe:
//
//   - on PostgreSQL Migrate holds a session advisory lock keyed by the
//     current schema and the component while it reads and applies
//     migrations; the lock is released when the session ends, even if the
//     process dies;
//   - on SQLite it holds bun/migrate's lock row in
//     <component>_migration_locks, waiting (polling every 50 ms) while
//     another process holds it. If a process died while migrating, the row
//     stays: Migrate then fails with ErrMigrationLocked when ctx ends, and
//     an operator deletes the row after checking no migration runs.
//
// Calling Migrate again when everything is applied changes nothing.
func Migrate(ctx context.Context, db *DB, component string, postgres, sqlite fs.FS) error {
	if !componentName.MatchString(component) {
		return fmt.Errorf("sqldb: migrate: invalid component name %q", component)
	}
	fsys := sqlite
	if db.IsPostgres() {
		fsys = postgres
	}
	if fsys == nil {
		return fmt.Errorf("sqldb: migrate %s: no migrations for %s", component, db.Dialect().Name())
	}
	migrations := migrate.NewMigrations()
	if err := migrations.Discover(fsys); err != nil {
		return fmt.Errorf("sqldb: migrate %s: discover: %w", component, err)
	}
	if len(migrations.Sorted()) == 0 {
		return fmt.Errorf("sqldb: migrate %s: no migration files for %s", component, db.Dialect().Name())
	}
	migrator := migrate.NewMigrator(db.DB, migrations,
		migrate.WithTableName(component+"_migrations"),
		migrate.WithLocksTableName(component+"_migration_locks"),
		migrate.WithMarkAppliedOnSuccess(true),
		migrate.WithUpsert(true),
	)

	migrateMu.Lock()
	defer migrateMu.Unlock()

	var unlock func() error
	var err error
	if db.IsPostgres() {
		unlock, err = lockPostgres(ctx, db, migrator, component)
	} else {
		unlock, err = lockSQLite(ctx, migrator, component)
	}
	if err != nil {
		return fmt.Errorf("sqldb: migrate %s: %w", component, err)
	}
	_, err = migrator.Migrate(ctx)
	if uerr := unlock(); uerr != nil {
		err = errors.Join(err, fmt.Errorf("unlock: %w", uerr))
	}
	if err != nil {
		return fmt.Errorf("sqldb: migrate %s: %w", component, err)
	}
	return nil
}

// lockPostgres takes a session advisory lock on a dedicated connection and
// creates the migration tables under it (CREATE TABLE IF NOT EXISTS is not
// safe against a concurrent twin on PostgreSQL).
func lockPostgres(ctx context.Context, db *DB, m *migrate.Migrator, component string) (func() error, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("lock connection: %w", err)
	}
	var schema string
	if err := conn.QueryRowContext(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("read current schema: %w", err)
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte("accessledger/migrate/" + schema + "/" + component))
	key := int64(h.Sum64())
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(?)", key); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("advisory lock: %w", err)
	}
	unlock := func() error {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, err := conn.ExecContext(uctx, "SELECT pg_advisory_unlock(?)", key)
		// Closing returns the connection to the pool; if the unlock failed the
		// session may still hold the lock, so discard the connection instead.
		if err != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		return errors.Join(err, conn.Close())
	}
	if err := m.Init(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("init migration tables: %w", err), unlock())
	}
	return unlock, nil
}

// lockSQLite creates the migration tables (safe to race on SQLite: DDL takes
// the database write lock) and then takes bun/migrate's lock row.
//
// A migration of another process holds the write lock for as long as it
// runs, which can outlast the busy timeout: Init is retried while the
// database is busy, until ctx ends.
func lockSQLite(ctx context.Context, m *migrate.Migrator, component string) (func() error, error) {
	const poll = 50 * time.Millisecond
	for {
		err := m.Init(ctx)
		if err == nil {
			break
		}
		if !isBusy(err) {
			return nil, fmt.Errorf("init migration tables: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("init migration tables: %w", errors.Join(ctx.Err(), err))
		case <-time.After(poll):
		}
	}
	for {
		err := m.Lock(ctx)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: delete the row of %s_migration_locks if no other process is migrating (%w)",
				ErrMigrationLocked, component, errors.Join(ctx.Err(), err))
		case <-time.After(poll):
		}
	}
	return func() error {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return m.Unlock(uctx)
	}, nil
}
