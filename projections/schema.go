package projections

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/boundsql"
)

// checkpoint is one row of projection_checkpoints.
type checkpoint struct {
	Generation int64
	Version    int64
	Position   eventlog.Position
	// RebuildOwner names the process holding the rebuild lease, "" when
	// none; the lease is void after RebuildExpires (Unix microseconds).
	RebuildOwner   string
	RebuildExpires int64
}

func isPG(q bun.IDB) bool { return q.Dialect().Name() == dialect.PG }

// txOptions are the options of every transaction of the runner: on
// PostgreSQL READ COMMITTED, so that a statement after SELECT ... FOR UPDATE
// sees what the previous holder of the row lock committed, whatever the
// server's default isolation.
func txOptions(q bun.IDB) *sql.TxOptions {
	if isPG(q) {
		return &sql.TxOptions{Isolation: sql.LevelReadCommitted}
	}
	return nil
}

// inTx runs f in a transaction of db and commits it when f succeeds.
func inTx(ctx context.Context, db bun.IDB, f func(tx bun.Tx) error) error {
	tx, err := db.BeginTx(ctx, txOptions(db))
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// readCheckpoint reads the row of name; found is false when there is none.
// With lock it takes the row lock on PostgreSQL (SQLite transactions of the
// engine hold the database write lock from BEGIN).
func readCheckpoint(ctx context.Context, q bun.IDB, name string, lock bool) (cp checkpoint, found bool, err error) {
	query := "SELECT generation, version, position_commit, position_prepare, rebuild_owner, rebuild_expires_at " +
		"FROM projection_checkpoints WHERE name = ?"
	if lock && isPG(q) {
		query += " FOR UPDATE"
	}
	var commit, prepare int64
	// Bound (internal/boundsql): run at every batch, in its transaction on
	// SQLite, where a text with the value in it would be compiled each time.
	err = boundsql.For(q).QueryRowContext(ctx, query, name).Scan(&cp.Generation, &cp.Version, &commit, &prepare,
		&cp.RebuildOwner, &cp.RebuildExpires)
	if errors.Is(err, sql.ErrNoRows) {
		return checkpoint{}, false, nil
	}
	if err != nil {
		return checkpoint{}, false, fmt.Errorf("read checkpoint of %s (have the projections migrations run?): %w", name, err)
	}
	if commit < 0 || prepare < 0 {
		return checkpoint{}, false, fmt.Errorf("checkpoint of %s: negative position %d.%d", name, commit, prepare)
	}
	cp.Position = eventlog.Position{Commit: uint64(commit), Prepare: uint64(prepare)}
	return cp, true, nil
}

// insertCheckpoint creates the row of a projection that has none, at
// generation 1, version and Start. It reports whether it inserted.
func insertCheckpoint(ctx context.Context, tx bun.Tx, name string, version int, now time.Time) (bool, error) {
	res, err := tx.ExecContext(ctx,
		"INSERT INTO projection_checkpoints (name, generation, version, position_commit, position_prepare, updated_at) "+
			"VALUES (?, 1, ?, 0, 0, ?) ON CONFLICT (name) DO NOTHING",
		name, version, now.UnixMicro())
	if err != nil {
		return false, fmt.Errorf("insert checkpoint of %s (have the projections migrations run?): %w", name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("insert checkpoint of %s: %w", name, err)
	}
	return n == 1, nil
}

// positionArgs converts p for a BIGINT column pair.
func positionArgs(p eventlog.Position) (int64, int64, error) {
	if p.Commit > math.MaxInt64 || p.Prepare > math.MaxInt64 {
		return 0, 0, fmt.Errorf("position %s does not fit a BIGINT", p)
	}
	return int64(p.Commit), int64(p.Prepare), nil
}

// updatePosition moves the checkpoint of name in generation gen to p.
func updatePosition(ctx context.Context, tx bun.Tx, name string, gen int64, p eventlog.Position, now time.Time) error {
	c, pr, err := positionArgs(p)
	if err != nil {
		return err
	}
	res, err := boundsql.For(tx).ExecContext(ctx,
		"UPDATE projection_checkpoints SET position_commit = ?, position_prepare = ?, updated_at = ? "+
			"WHERE name = ? AND generation = ?",
		c, pr, now.UnixMicro(), name, gen)
	if err != nil {
		return fmt.Errorf("update checkpoint of %s: %w", name, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("update checkpoint of %s: row of generation %d not found (%d rows, %v)", name, gen, n, err)
	}
	return nil
}

// relationExists reports whether a table (view false) or a view (view true)
// named name exists in the current schema.
func relationExists(ctx context.Context, q bun.IDB, name string, view bool) (bool, error) {
	var n int
	var err error
	if isPG(q) {
		kind := "BASE TABLE"
		if view {
			kind = "VIEW"
		}
		err = q.QueryRowContext(ctx, "SELECT count(*) FROM information_schema.tables "+
			"WHERE table_schema = current_schema() AND table_name = ? AND table_type = ?", name, kind).Scan(&n)
	} else {
		kind := "table"
		if view {
			kind = "view"
		}
		err = q.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type = ? AND name = ?", kind, name).Scan(&n)
	}
	if err != nil {
		return false, fmt.Errorf("look up %s: %w", name, err)
	}
	return n > 0, nil
}

// generationsOf lists the generations of logical's physical tables that
// exist ("<logical>_g<N>").
func generationsOf(ctx context.Context, q bun.IDB, logical string) ([]int64, error) {
	var query string
	if isPG(q) {
		query = "SELECT table_name FROM information_schema.tables " +
			"WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND table_name LIKE ?"
	} else {
		query = "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ?"
	}
	rows, err := q.QueryContext(ctx, query, logical+"%")
	if err != nil {
		return nil, fmt.Errorf("list tables of %s: %w", logical, err)
	}
	defer func() { _ = rows.Close() }()
	var gens []int64
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("list tables of %s: %w", logical, err)
		}
		if g, ok := generationOf(logical, name); ok {
			gens = append(gens, g)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tables of %s: %w", logical, err)
	}
	return gens, nil
}

// generationOf parses physical as "<logical>_g<N>".
func generationOf(logical, physical string) (int64, bool) {
	digits, ok := strings.CutPrefix(physical, logical+"_g")
	if !ok || digits == "" || digits[0] == '0' || strings.Trim(digits, "0123456789") != "" {
		return 0, false
	}
	g, err := strconv.ParseInt(digits, 10, 64)
	return g, err == nil
}

// hasGenerationSuffix reports whether name looks like a physical table name.
func hasGenerationSuffix(name string) bool {
	i := strings.LastIndex(name, "_g")
	if i < 0 {
		return false
	}
	_, ok := generationOf(name[:i], name)
	return ok
}

// createTables creates the physical tables of p in generation gen.
//
// With deferIndexes (a rebuild), the CREATE INDEX statements of the tables
// that allow it (Table.DeferIndexes) are left for createIndexes.
func createTables(ctx context.Context, tx bun.Tx, p Projection, gen int64, deferIndexes bool) error {
	d := tx.Dialect().Name()
	for _, t := range p.Tables() {
		physical := physicalName(t.Name, gen)
		for _, stmt := range t.Create(d, physical) {
			if deferIndexes && t.DeferIndexes && isCreateIndex(stmt) {
				continue
			}
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("create table %s: %w", physical, err)
			}
		}
	}
	return nil
}

// deferredIndexes returns the CREATE INDEX statements createTables left out
// with deferIndexes, each with the physical table it indexes.
func deferredIndexes(d dialect.Name, p Projection, gen int64) (stmts, tables []string) {
	for _, t := range p.Tables() {
		if !t.DeferIndexes {
			continue
		}
		physical := physicalName(t.Name, gen)
		for _, stmt := range t.Create(d, physical) {
			if isCreateIndex(stmt) {
				stmts, tables = append(stmts, stmt), append(tables, physical)
			}
		}
	}
	return stmts, tables
}

// analyzeTables runs ANALYZE on the physical tables of p's generation gen
// (PostgreSQL), so that the queries on tables a rebuild filled are planned
// from statistics from the start. A table it cannot analyze is logged and
// skipped: the rebuild is right without statistics, only its queries may
// be planned worse until autovacuum gathers them.
func analyzeTables(ctx context.Context, db bun.IDB, p Projection, gen int64, logger *slog.Logger) {
	for _, t := range p.Tables() {
		physical := physicalName(t.Name, gen)
		if _, err := db.ExecContext(ctx, "ANALYZE "+physical); err != nil {
			logger.WarnContext(ctx, "projections: rebuild: cannot gather the statistics of a rebuilt table",
				"table", physical, "error", err)
		}
	}
}

// isCreateIndex reports whether stmt is a CREATE [UNIQUE] INDEX statement.
func isCreateIndex(stmt string) bool {
	f := strings.Fields(strings.ToUpper(stmt))
	if len(f) > 2 && f[0] == "CREATE" && f[1] == "UNIQUE" {
		f = f[1:]
	}
	return len(f) > 1 && f[0] == "CREATE" && f[1] == "INDEX"
}

// dropGenerations drops the physical tables of p whose generation drop
// selects.
func dropGenerations(ctx context.Context, tx bun.Tx, p Projection, drop func(gen int64) bool) error {
	for _, t := range p.Tables() {
		gens, err := generationsOf(ctx, tx, t.Name)
		if err != nil {
			return err
		}
		for _, g := range gens {
			if !drop(g) {
				continue
			}
			if _, err := tx.ExecContext(ctx, "DROP TABLE IF EXISTS ?", bun.Ident(physicalName(t.Name, g))); err != nil {
				return fmt.Errorf("drop table %s: %w", physicalName(t.Name, g), err)
			}
		}
	}
	return nil
}

// pointViews (re)creates the view of every table of p on its physical table
// of generation gen. On PostgreSQL it uses CREATE OR REPLACE VIEW, which
// keeps the view's grants and dependants; when the new table's columns are
// not compatible with the old view (a new version of the projection dropped
// or changed a column), it drops and creates the view instead. On SQLite it
// drops and creates. Either way the change is part of tx: queries see the
// old view until tx commits, then the new one.
func pointViews(ctx context.Context, tx bun.Tx, p Projection, gen int64) error {
	pg := isPG(tx)
	for _, t := range p.Tables() {
		view, physical := bun.Ident(t.Name), bun.Ident(physicalName(t.Name, gen))
		if pg {
			if _, err := tx.ExecContext(ctx, "SAVEPOINT projections_view"); err != nil {
				return fmt.Errorf("view %s: %w", t.Name, err)
			}
			_, err := tx.ExecContext(ctx, "CREATE OR REPLACE VIEW ? AS SELECT * FROM ?", view, physical)
			if err == nil {
				if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT projections_view"); err != nil {
					return fmt.Errorf("view %s: %w", t.Name, err)
				}
				continue
			}
			if sqlState(err) != "42P16" { // invalid_table_definition: the columns changed
				return fmt.Errorf("replace view %s: %w", t.Name, err)
			}
			if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT projections_view"); rerr != nil {
				return fmt.Errorf("view %s: %w", t.Name, errors.Join(err, rerr))
			}
		}
		if _, err := tx.ExecContext(ctx, "DROP VIEW IF EXISTS ?", view); err != nil {
			return fmt.Errorf("drop view %s: %w", t.Name, err)
		}
		if _, err := tx.ExecContext(ctx, "CREATE VIEW ? AS SELECT * FROM ?", view, physical); err != nil {
			return fmt.Errorf("create view %s on %s: %w", t.Name, physicalName(t.Name, gen), err)
		}
	}
	return nil
}

// ensure makes sure p has its checkpoint row and, for the generation the row
// names, its tables and views. A projection without a row gets one at
// generation 1, its version and Start, with empty tables.
//
// stale reports that the stored tables cannot be continued: they were built
// by another version of the projection, or some are missing. ensure then
// creates nothing; a rebuild is due.
func ensure(ctx context.Context, db *bun.DB, p Projection, now time.Time) (cp checkpoint, stale bool, err error) {
	err = inTx(ctx, db, func(tx bun.Tx) error {
		inserted, err := insertCheckpoint(ctx, tx, p.Name(), p.Version(), now)
		if err != nil {
			return err
		}
		var found bool
		cp, found, err = readCheckpoint(ctx, tx, p.Name(), true)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("checkpoint of %s vanished", p.Name())
		}
		if inserted {
			// Nothing can have been built for a projection without a row: clear
			// whatever a hand-made reset left and start generation 1 afresh.
			for _, t := range p.Tables() {
				if _, err := tx.ExecContext(ctx, "DROP VIEW IF EXISTS ?", bun.Ident(t.Name)); err != nil {
					return fmt.Errorf("drop view %s: %w", t.Name, err)
				}
			}
			if err := dropGenerations(ctx, tx, p, func(int64) bool { return true }); err != nil {
				return err
			}
			if err := createTables(ctx, tx, p, cp.Generation, false); err != nil {
				return err
			}
			return pointViews(ctx, tx, p, cp.Generation)
		}
		if int64(p.Version()) != cp.Version {
			stale = true
			return nil
		}
		missingView := false
		for _, t := range p.Tables() {
			ok, err := relationExists(ctx, tx, physicalName(t.Name, cp.Generation), false)
			if err != nil {
				return err
			}
			if !ok {
				stale = true
				return nil
			}
			if ok, err = relationExists(ctx, tx, t.Name, true); err != nil {
				return err
			}
			missingView = missingView || !ok
		}
		if missingView {
			return pointViews(ctx, tx, p, cp.Generation)
		}
		return nil
	})
	if err != nil {
		return checkpoint{}, false, fmt.Errorf("prepare %s: %w", p.Name(), err)
	}
	return cp, stale, nil
}

// sqlState returns the SQLSTATE of a PostgreSQL error (pgx's *pgconn.PgError
// has the method), or "".
func sqlState(err error) string {
	var coded interface{ SQLState() string }
	if errors.As(err, &coded) {
		return coded.SQLState()
	}
	return ""
}

// dropOld drops the tables of p's generations before live (left by a rebuild
// that stopped before dropping them, or not dropped yet), as a best effort:
// on PostgreSQL it waits at most lockTimeout for queries still reading them,
// and a failure is only logged, the next attempt drops them.
func dropOld(ctx context.Context, db *bun.DB, p Projection, live int64, lockTimeout time.Duration, logger *slog.Logger) {
	err := inTx(ctx, db, func(tx bun.Tx) error {
		if isPG(tx) {
			if _, err := tx.ExecContext(ctx, "SET LOCAL lock_timeout = ?", fmt.Sprintf("%dms", lockTimeout.Milliseconds())); err != nil {
				return err
			}
		}
		return dropGenerations(ctx, tx, p, func(g int64) bool { return g < live })
	})
	if err != nil && ctx.Err() == nil {
		logger.WarnContext(ctx, "projections: could not drop the tables of old generations yet", slog.String("projection", p.Name()),
			slog.Int64("live_generation", live), slog.Any("error", err))
	}
}
