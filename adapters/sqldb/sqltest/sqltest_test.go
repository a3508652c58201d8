package sqltest_test

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
)

// recorder is a testing.TB that records Skip and Fatal instead of acting on
// them, so the helpers' refusals can be tested.
type recorder struct {
	testing.TB
	skipped, fatal string
	cleanups       []func()
}

func (r *recorder) Helper() {}

func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

// run calls f with r in a goroutine of its own (Goexit ends it) and then
// runs the registered cleanups.
func (r *recorder) run(f func(testing.TB) string) string {
	var got string
	done := make(chan struct{})
	go func() {
		defer close(done)
		got = f(r)
	}()
	<-done
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	return got
}

func TestPostgresEnvironment(t *testing.T) {
	tests := []struct {
		name      string
		env       string
		wantSkip  string
		wantFatal string
	}{
		{"unset skips and says how to set it", "", "set " + sqltest.PostgresEnv, ""},
		{"blank skips", "  ", "set " + sqltest.PostgresEnv, ""},
		{"unreachable fails, never skips", "postgres://postgres:hunter2@127.0.0.1:1/test?sslmode=disable&connect_timeout=2", "", "cannot be reached"},
		{"not a URL fails", "host=127.0.0.1 dbname=test", "", "must be a postgres:// URL"},
		{"other scheme fails", "mysql://127.0.0.1/test", "", "must be a postgres:// URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(sqltest.PostgresEnv, tt.env)
			r := &recorder{TB: t}
			got := r.run(sqltest.Postgres)
			require.Empty(t, got)
			if tt.wantSkip != "" {
				require.Contains(t, r.skipped, tt.wantSkip)
				require.Contains(t, r.skipped, "postgres://", "the message shows an example")
				require.Empty(t, r.fatal)
			}
			if tt.wantFatal != "" {
				require.Contains(t, r.fatal, tt.wantFatal)
				require.NotContains(t, r.fatal, "hunter2")
				require.Empty(t, r.skipped)
			}
		})
	}
}

func TestPostgresGivesAFreshSchema(t *testing.T) {
	base := os.Getenv(sqltest.PostgresEnv)
	var schemas []string
	for range 2 {
		t.Run("schema", func(t *testing.T) {
			u := sqltest.Postgres(t)
			parsed, err := url.Parse(u)
			require.NoError(t, err)
			schema := parsed.Query().Get("search_path")
			require.True(t, strings.HasPrefix(schema, "t_"), schema)
			schemas = append(schemas, schema)

			conn, err := pgx.Connect(t.Context(), u)
			require.NoError(t, err)
			defer func() { _ = conn.Close(t.Context()) }()
			var current string
			require.NoError(t, conn.QueryRow(t.Context(), "SELECT current_schema()").Scan(&current))
			require.Equal(t, schema, current)
			var tables int
			require.NoError(t, conn.QueryRow(t.Context(),
				"SELECT count(*) FROM information_schema.tables WHERE table_schema = $1", schema).Scan(&tables))
			require.Zero(t, tables)
			_, err = conn.Exec(t.Context(), "CREATE TABLE leftover (id int)")
			require.NoError(t, err)
		})
	}
	if len(schemas) < 2 {
		return // skipped
	}
	require.NotEqual(t, schemas[0], schemas[1])

	conn, err := pgx.Connect(t.Context(), base)
	require.NoError(t, err)
	defer func() { _ = conn.Close(t.Context()) }()
	var left int
	require.NoError(t, conn.QueryRow(t.Context(),
		"SELECT count(*) FROM information_schema.schemata WHERE schema_name = ANY($1)", schemas).Scan(&left))
	require.Zero(t, left, "schemas are dropped when their test ends")
}

func TestSQLiteFile(t *testing.T) {
	a, b := sqltest.SQLiteFile(t), sqltest.SQLiteFile(t)
	require.NotEqual(t, a, b)
	for _, u := range []string{a, b} {
		require.True(t, strings.HasPrefix(u, "sqlite:"), u)
		path := strings.TrimPrefix(u, "sqlite:")
		require.True(t, filepath.IsAbs(path), path)
		_, err := os.Stat(path)
		require.True(t, os.IsNotExist(err), "the file does not exist yet")
	}
	db := sqltest.Open(t, a)
	require.True(t, db.IsSQLite())
}

func TestSQLiteMemory(t *testing.T) {
	db := sqltest.Open(t, sqltest.SQLiteMemory(t))
	require.True(t, db.IsSQLite())
	require.True(t, strings.HasPrefix(db.Path(), "memdb:"))
}
