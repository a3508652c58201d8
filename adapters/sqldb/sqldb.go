// Package sqldb opens the SQL databases the engine runs on and runs each
// component's embedded schema migrations.
//
// Two engines are supported, both behind bun:
//
//   - PostgreSQL through pgx (github.com/jackc/pgx/v5/stdlib) under bun's
//     pgdialect (architecture decision 11: not bun's own pgdriver).
//   - SQLite through bun's sqliteshim, which picks the pure-Go
//     modernc.org/sqlite driver on every platform it supports, so builds
//     work with CGO_ENABLED=0.
//
// Open takes a URL and returns a *DB: the *bun.DB plus what adapters need to
// know about it (the dialect, the driver DSN, a stable name). Migrate applies
// a component's SQL migrations under a lock that makes concurrent calls from
// several processes safe.
package sqldb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/sqliteshim"
)

// ErrUnsupportedURL is returned (wrapped) by Open for a URL it cannot map to
// a supported database.
var ErrUnsupportedURL = errors.New("sqldb: unsupported database url")

// SQLite connection settings applied to every connection of a pool.
const (
	// SQLiteBusyTimeout is how long an SQLite connection waits for a lock
	// held by another connection (in this or another process) before it
	// fails with SQLITE_BUSY.
	SQLiteBusyTimeout = 10 * time.Second

	// sqliteMaxConns bounds an SQLite file pool. SQLite has one writer at a
	// time anyway; a few connections let WAL readers run beside it.
	sqliteMaxConns = 8

	// postgresMaxIdleConns keeps connections warm between bursts instead of
	// database/sql's default of two. The engine uses about 30 at once under
	// load (a transaction or a subscription's read for each read model, the
	// commands, the process manager, the relays, the queries): with 8 kept,
	// every connection returned beyond them was closed and another opened
	// for the next statement, about 20 a second during the county's expiry
	// setup, each a new server process that parsed its statements afresh
	// (docs/performance.md).
	postgresMaxIdleConns = 32
)

// DB is an open database: a *bun.DB (embedded, so every bun query builder
// is at hand) plus the facts adapters need about it.
//
// Which engine it is: db.Dialect().Name() is dialect.PG or dialect.SQLite
// (github.com/uptrace/bun/dialect), or use IsPostgres and IsSQLite.
//
// A DB is safe for concurrent use. Close it once when done; Close also
// releases an in-memory SQLite database.
type DB struct {
	*bun.DB

	dsn  string
	name string
	path string

	// gate is the SQLite file's write gate (gate.go); nil for PostgreSQL
	// and pools without one.
	gate *writeGate

	// anchor keeps an in-memory SQLite database alive while the pool's own
	// connection comes and goes; nil otherwise.
	anchor io.Closer
	// unsynced is the pool Unsynced opened on the same file, closed with
	// this one; nil until then.
	unsyncedMu sync.Mutex
	unsynced   *DB
	// checkpoints checkpoints an SQLite file's WAL in the background
	// (checkpoint.go); nil for PostgreSQL, memory and the unsynced pool.
	checkpoints *checkpointer
}

// Bun returns the bun handle of db (its DB field), for packages that take
// a bun.IDB and run some statements on the database/sql handle beneath.
func (db *DB) Bun() *bun.DB { return db.DB }

// IsPostgres reports whether db is a PostgreSQL database.
func (db *DB) IsPostgres() bool { return db.Dialect().Name() == dialect.PG }

// IsSQLite reports whether db is an SQLite database.
func (db *DB) IsSQLite() bool { return db.Dialect().Name() == dialect.SQLite }

// DSN returns the connection string the driver was opened with: for
// PostgreSQL the URL given to Open (including any credentials: do not log
// it), for SQLite the driver DSN with its pragmas. Adapters use it to open
// extra connections outside the pool, such as a LISTEN connection.
func (db *DB) DSN() string { return db.dsn }

// Path returns, for SQLite, the absolute path of the database file, or for
// an in-memory database the unique name that identifies it within this
// process. Two DBs opened on the same file have the same Path. It is empty
// for PostgreSQL.
func (db *DB) Path() string { return db.path }

// String describes the database without credentials, e.g.
// "postgres://app:xxxxx@db:5432/ledger" or "sqlite:/var/lib/ledger.db". It
// is safe to log.
func (db *DB) String() string { return db.name }

// Close closes the connection pool and, for an in-memory SQLite database,
// discards the database.
func (db *DB) Close() error {
	if db.checkpoints != nil {
		db.checkpoints.close()
	}
	db.unsyncedMu.Lock()
	u := db.unsynced
	db.unsynced = nil
	db.unsyncedMu.Unlock()
	var err error
	if u != nil {
		err = u.DB.Close()
	}
	err = errors.Join(err, db.DB.Close())
	if db.anchor != nil {
		err = errors.Join(err, db.anchor.Close())
		db.anchor = nil
	}
	if err != nil {
		return fmt.Errorf("sqldb: close %s: %w", db.name, err)
	}
	return nil
}

// Open opens the database named by rawURL and checks that it answers.
//
// URL forms:
//
//   - postgres://... or postgresql://... : PostgreSQL through pgx, which
//     reads the URL's parameters (sslmode, search_path, application_name,
//     connect_timeout, ...). Its connections run with jit=off unless the
//     URL sets jit (see postgresJIT). The pool is database/sql's: tune it
//     through the embedded *sql.DB (SetMaxOpenConns and so on).
//   - sqlite:PATH, sqlite://PATH or a plain file path: an SQLite file,
//     created if missing (its directory must exist), in journal_mode=WAL
//     (a lasting property of the file, set by Open). Every connection runs
//     with synchronous=FULL (fsync on every commit),
//     busy_timeout=SQLiteBusyTimeout, foreign_keys=ON,
//     wal_autocheckpoint=0 (the DB checkpoints the WAL in the background
//     every CheckpointInterval, until Close: checkpoint.go), and begins its
//     transactions with BEGIN IMMEDIATE, so a transaction that reads and
//     then writes waits for the write lock instead of failing with
//     SQLITE_BUSY. The pool holds at most 8 connections.
//   - sqlite::memory: or :memory: : a new, empty in-memory SQLite database
//     that lives until Close. Each Open gets its own database; the pool's
//     connections all share it (the pool is limited to one connection, so
//     a transaction must not wait for a second connection of the same DB).
//
// The error wraps ErrUnsupportedURL for a URL of another form, and carries
// the URL with its password redacted.
func Open(ctx context.Context, rawURL string) (*DB, error) {
	switch {
	case hasPrefixFold(rawURL, "postgres://"), hasPrefixFold(rawURL, "postgresql://"):
		return openPostgres(ctx, rawURL)
	case rawURL == ":memory:", rawURL == "sqlite::memory:", rawURL == "sqlite://:memory:":
		return openSQLiteMemory(ctx)
	case hasPrefixFold(rawURL, "sqlite://"):
		return openSQLiteFile(ctx, rawURL[len("sqlite://"):])
	case hasPrefixFold(rawURL, "sqlite:"):
		return openSQLiteFile(ctx, rawURL[len("sqlite:"):])
	case strings.TrimSpace(rawURL) == "":
		return nil, fmt.Errorf("%w: empty url", ErrUnsupportedURL)
	case strings.Contains(rawURL, "://"):
		return nil, fmt.Errorf("%w: %s (want postgres://, postgresql://, sqlite: or a file path)", ErrUnsupportedURL, redact(rawURL))
	default:
		return openSQLiteFile(ctx, rawURL)
	}
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// redact returns rawURL with any password replaced, for error messages.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
}

// postgresJIT is the jit setting of the engine's PostgreSQL connections
// when the URL names none. Its statements are short (a stream's events,
// a page of the log, a batch of rows), but PostgreSQL decides to compile a
// statement from its estimated cost: a read of 500 streams' ends, planned
// before the table had statistics, spent 1.7 s compiling for a few
// milliseconds of work (docs/performance.md). "?jit=on" in the URL turns it
// back on.
const postgresJIT = "off"

func openPostgres(ctx context.Context, rawURL string) (*DB, error) {
	name := redact(rawURL)
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnsupportedURL, name, err)
	}
	if _, set := cfg.RuntimeParams["jit"]; !set {
		cfg.RuntimeParams["jit"] = postgresJIT
	}
	sqlDB := stdlib.OpenDB(*cfg)
	sqlDB.SetMaxIdleConns(postgresMaxIdleConns)
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	db := &DB{
		DB:   bun.NewDB(sqlDB, pgdialect.New()),
		dsn:  rawURL,
		name: name,
	}
	if err := db.PingContext(ctx); err != nil {
		_ = db.DB.Close()
		return nil, fmt.Errorf("sqldb: connect to %s: %w", name, err)
	}
	return db, nil
}

func openSQLiteFile(ctx context.Context, path string) (*DB, error) {
	if strings.TrimSpace(path) == "" {
		return nil, fmt.Errorf("%w: empty sqlite path", ErrUnsupportedURL)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqldb: sqlite path %q: %w", path, err)
	}
	if err := createPrivate(abs); err != nil {
		return nil, err
	}
	dsn := sqliteDSN("file:"+escapeSQLitePath(filepath.ToSlash(abs)), false, "FULL")
	db, err := openSQLite(ctx, dsn, "sqlite:"+abs, abs, sqliteMaxConns, gateFor(abs))
	if err != nil {
		return nil, err
	}
	if err := enableWAL(ctx, db); err != nil {
		_ = db.Close()
		return nil, err
	}
	db.checkpoints = startCheckpointer(db, CheckpointInterval)
	return db, nil
}

// FileMode is the mode of a new SQLite file: it holds personal data, so
// only its owner may read it. SQLite gives the -wal and -shm files the mode
// of the database file.
const FileMode = 0o600

// createPrivate creates the SQLite file at path, empty, with FileMode when
// it does not exist yet, so that SQLite (which would create it with 0644
// under the usual umask) opens a private file. An existing file keeps its
// mode: the engine's start refuses a data directory others can read.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, FileMode)
	switch {
	case errors.Is(err, fs.ErrExist):
		return nil
	case err != nil:
		return fmt.Errorf("sqldb: create %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sqldb: create %s: %w", path, err)
	}
	return nil
}

// enableWAL switches the database file to write-ahead logging, which then
// persists in the file for every later connection. It runs once per Open
// rather than per connection because switching modes needs an exclusive
// lock and SQLite reports SQLITE_BUSY at once, without the busy handler,
// when another connection (say another process opening the same new file)
// holds one; so it retries for up to SQLiteBusyTimeout.
func enableWAL(ctx context.Context, db *DB) error {
	deadline := time.Now().Add(SQLiteBusyTimeout)
	for {
		var mode string
		err := db.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode)
		if err == nil {
			if !strings.EqualFold(mode, "wal") {
				return fmt.Errorf("sqldb: %s: journal_mode is %q, want wal (is the file on a file system without shared memory?)", db.name, mode)
			}
			return nil
		}
		if !isBusy(err) || time.Now().After(deadline) {
			return fmt.Errorf("sqldb: %s: enable WAL: %w", db.name, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sqldb: %s: enable WAL: %w", db.name, errors.Join(ctx.Err(), err))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// isBusy reports whether err is SQLite's SQLITE_BUSY ("database is
// locked"), from either driver sqliteshim may pick.
func isBusy(err error) bool {
	var coded interface{ Code() int }
	if errors.As(err, &coded) {
		return coded.Code()&0xff == 5 // SQLITE_BUSY and its extended codes
	}
	return strings.Contains(err.Error(), "database is locked")
}

func openSQLiteMemory(ctx context.Context) (*DB, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("sqldb: name in-memory database: %w", err)
	}
	// The memdb VFS shares one database among every connection of the
	// process that opens the same name ("/" + name); the database is freed
	// when its last connection closes.
	memName := "/accessledger-" + hex.EncodeToString(b[:])
	dsn := sqliteDSN("file:"+memName+"?vfs=memdb", true, "")

	anchor, err := sqliteshim.Driver().Open(dsn)
	if err != nil {
		return nil, fmt.Errorf("sqldb: open in-memory sqlite: %w", err)
	}
	db, err := openSQLite(ctx, dsn, "sqlite::memory:"+memName, "memdb:"+memName, 1, nil) // one connection: its transactions queue for it
	if err != nil {
		_ = anchor.Close()
		return nil, err
	}
	db.anchor = anchor
	return db, nil
}

// openSQLite opens a pool of the SQLite database; with a gate, its
// transactions queue at the gate (gate.go) rather than in SQLite's busy
// handler.
func openSQLite(ctx context.Context, dsn, name, path string, maxConns int, gate *writeGate) (*DB, error) {
	if err := setupPageCache(); err != nil {
		pageCacheWarning.Do(func() {
			slog.Default().WarnContext(ctx, "sqldb: SQLite's page caches allocate their pages one by one", "error", err)
		})
	}
	var sqlDB *sql.DB
	if gate != nil {
		sqlDB = sql.OpenDB(&gatedConnector{drv: sqliteshim.Driver(), dsn: dsn, gate: gate})
	} else {
		sqlDB = sql.OpenDB(plainConnector{drv: sqliteshim.Driver(), dsn: dsn})
	}
	sqlDB.SetMaxOpenConns(maxConns)
	sqlDB.SetMaxIdleConns(maxConns)
	sqlDB.SetConnMaxLifetime(0)
	sqlDB.SetConnMaxIdleTime(0)
	db := &DB{
		DB:   bun.NewDB(sqlDB, sqlitedialect.New()),
		dsn:  dsn,
		name: name,
		path: path,
		gate: gate,
	}
	if err := db.PingContext(ctx); err != nil {
		_ = db.DB.Close()
		return nil, fmt.Errorf("sqldb: open %s: %w", name, err)
	}
	return db, nil
}

// pageCacheWarning logs once that the page cache pool is not set up.
var pageCacheWarning sync.Once

// sqliteDSN appends the per-connection settings to an SQLite URI, in the
// syntax of the driver sqliteshim picked: modernc.org/sqlite ("sqlite") or,
// on platforms modernc does not support, mattn/go-sqlite3 ("sqlite3").
// The journal mode is not among them: it is a property of the file, set by
// enableWAL. synchronous is the file's synchronous setting (FULL, or NORMAL
// for Unsynced); an in-memory database has none.
func sqliteDSN(uri string, memory bool, synchronous string) string {
	sep := "?"
	if strings.Contains(uri, "?") {
		sep = "&"
	}
	busy := fmt.Sprint(SQLiteBusyTimeout.Milliseconds())
	q := url.Values{}
	if sqliteshim.DriverName() == "sqlite3" {
		q.Set("_busy_timeout", busy)
		q.Set("_foreign_keys", "1")
		q.Set("_txlock", "immediate")
		if !memory {
			q.Set("_synchronous", synchronous)
			q.Set("_secure_delete", "1")
		}
		return uri + sep + q.Encode()
	}
	pragmas := []string{"busy_timeout(" + busy + ")", "foreign_keys(1)"}
	if !memory {
		// secure_delete: deleted and overwritten content is zeroed in the
		// file, so that personal data erased (R22) or cleared from a read
		// model does not linger in free pages.
		pragmas = append(pragmas, "synchronous("+synchronous+")", "secure_delete(1)")
		// No checkpoint at a commit: the file DB's checkpointer runs them
		// in the background (checkpoint.go).
		pragmas = append(pragmas, "wal_autocheckpoint(0)")
	}
	q["_pragma"] = pragmas
	q.Set("_txlock", "immediate")
	return uri + sep + q.Encode()
}

// Unsynced returns a pool of the same database whose commits do not wait
// for the disk, for writes that the event log can always redo. On an
// SQLite file it is a second pool of the file (opened on first use, closed
// by db's Close; callers must not close it) whose connections run with
// synchronous=NORMAL instead of FULL: in WAL mode a commit is then written
// to the WAL without an fsync. Such a commit is atomic and survives a
// crash of the process (the WAL is in the operating system's cache); a
// power loss or an operating system crash may lose it, with the other
// unsynced commits after the last fsync, but never a commit that
// preceded a commit with fsync on the file: the WAL is one file, written
// and synced in commit order, so the durable commits are always a prefix
// of the commits made. Its transactions queue at the file's write gate
// with db's.
//
// What may be written through it: state derived from the log with its
// checkpoint in the same transaction (the read models, which replay from
// their checkpoint what a power loss took), and records whose loss leaves
// a state the engine already handles after a crash (the idempotency keys:
// see adapters/idempotency). Never the log itself, nor a record nothing
// can rebuild.
//
// On PostgreSQL and on an in-memory SQLite database it returns db itself
// (PostgreSQL already groups the flushes of concurrent commits).
func (db *DB) Unsynced(ctx context.Context) (*DB, error) {
	if !db.IsSQLite() || db.anchor != nil || strings.HasPrefix(db.path, "memdb:") {
		return db, nil
	}
	db.unsyncedMu.Lock()
	defer db.unsyncedMu.Unlock()
	if db.unsynced != nil {
		return db.unsynced, nil
	}
	dsn := sqliteDSN("file:"+escapeSQLitePath(filepath.ToSlash(db.path)), false, "NORMAL")
	u, err := openSQLite(ctx, dsn, db.name+" (unsynced)", db.path, sqliteMaxConns, gateFor(db.path))
	if err != nil {
		return nil, err
	}
	db.unsynced = u
	return u, nil
}

// escapeSQLitePath makes a file path safe inside an SQLite "file:" URI,
// where '?' starts the query, '#' a fragment and '%' an escape.
func escapeSQLitePath(p string) string {
	r := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")
	return r.Replace(p)
}
