// Package sqltest gives tests fresh, isolated databases: a PostgreSQL schema
// of its own, an SQLite file in the test's temporary directory, or an
// in-memory SQLite database. Every PostgreSQL test in the project gets its
// database from Postgres, so that one environment variable turns them all
// on and CI cannot skip them by accident.
package sqltest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/accessledger/accessledger/adapters/sqldb"
)

// PostgresEnv names the environment variable holding the URL of a
// PostgreSQL database the tests may create schemas in, e.g.
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
const PostgresEnv = "ACCESSLEDGER_TEST_POSTGRES_DSN"

// Postgres returns a postgres:// URL for a new, empty schema of its own in
// the database named by $ACCESSLEDGER_TEST_POSTGRES_DSN: the URL is the
// variable's with search_path set to the schema. The schema is dropped
// (CASCADE) when the test and its subtests finish; Cleanup functions the
// test registers later (closing stores and pools) run before that.
//
// When the variable is unset or empty, the test is skipped with a message
// that says how to set it. When it is set but the database cannot be
// reached, or the schema cannot be created, the test fails: it never skips,
// so a CI job that sets the variable cannot silently lose its PostgreSQL
// coverage.
func Postgres(t testing.TB) string {
	t.Helper()
	base := strings.TrimSpace(os.Getenv(PostgresEnv))
	if base == "" {
		t.Skipf("PostgreSQL tests need a database: set %s, e.g. %s='postgres://postgres@127.0.0.1:5432/test?sslmode=disable'",
			PostgresEnv, PostgresEnv)
		return ""
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("sqltest: %s must be a postgres:// URL", PostgresEnv)
		return ""
	}

	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("sqltest: random schema name: %v", err)
		return ""
	}
	schema := "t_" + hex.EncodeToString(b[:])

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("sqltest: %s is set but PostgreSQL at %s cannot be reached: %v", PostgresEnv, u.Redacted(), err)
		return ""
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatalf("sqltest: create schema %s at %s: %v", schema, u.Redacted(), err)
		return ""
	}
	t.Cleanup(func() { dropSchema(t, base, schema) })

	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func dropSchema(t testing.TB, base, schema string) {
	// t.Context is already done when Cleanup functions run.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Logf("sqltest: drop schema %s: %v", schema, err)
		return
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, "SET lock_timeout = '10s'"); err != nil {
		t.Logf("sqltest: drop schema %s: %v", schema, err)
		return
	}
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
		t.Logf("sqltest: drop schema %s: %v", schema, err)
	}
}

// SQLiteFile returns an sqlite: URL for a database file that does not exist
// yet, in the test's temporary directory (removed after the test).
func SQLiteFile(t testing.TB) string {
	t.Helper()
	return "sqlite:" + filepath.Join(t.TempDir(), "test.db")
}

// SQLiteMemory returns the URL of an in-memory SQLite database. Every
// sqldb.Open of it creates a new, empty database of its own: tests that need
// two handles on one database use SQLiteFile, or share one *sqldb.DB.
func SQLiteMemory(t testing.TB) string {
	t.Helper()
	return "sqlite::memory:"
}

// Open opens url with sqldb.Open and closes the database when the test
// finishes. It fails the test if the database cannot be opened.
func Open(t testing.TB, url string) *sqldb.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sqldb.Open(ctx, url)
	if err != nil {
		t.Fatalf("sqltest: %v", err)
		return nil
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("sqltest: %v", err)
		}
	})
	return db
}

// Backend is a named database URL for table-driven tests.
type Backend struct {
	Name string // "sqlite-file", "sqlite-memory" or "postgres"
	URL  func(t testing.TB) string
}

// Backends lists the three backends every SQL adapter is tested on. Run
// each in a subtest: the postgres one skips when PostgresEnv is unset.
func Backends() []Backend {
	return []Backend{
		{Name: "sqlite-file", URL: SQLiteFile},
		{Name: "sqlite-memory", URL: SQLiteMemory},
		{Name: "postgres", URL: Postgres},
	}
}
