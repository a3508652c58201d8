package sqldb_test

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
)

func TestOpenURLForms(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name     string
		url      func(t *testing.T) string
		postgres bool
		path     string // want Path(); "memdb:" prefix for in-memory
	}{
		{"sqlite: path", func(*testing.T) string { return "sqlite:" + filepath.Join(dir, "a.db") }, false, filepath.Join(dir, "a.db")},
		{"sqlite:// path", func(*testing.T) string { return "sqlite://" + filepath.Join(dir, "b.db") }, false, filepath.Join(dir, "b.db")},
		{"SQLITE: upper case scheme", func(*testing.T) string { return "SQLITE:" + filepath.Join(dir, "c.db") }, false, filepath.Join(dir, "c.db")},
		{"plain path", func(*testing.T) string { return filepath.Join(dir, "d.db") }, false, filepath.Join(dir, "d.db")},
		{"path with URI metacharacters", func(*testing.T) string { return "sqlite:" + filepath.Join(dir, "e?x=1#%20.db") }, false, filepath.Join(dir, "e?x=1#%20.db")},
		{"sqlite::memory:", func(*testing.T) string { return "sqlite::memory:" }, false, "memdb:"},
		{":memory:", func(*testing.T) string { return ":memory:" }, false, "memdb:"},
		{"postgres://", func(t *testing.T) string { return sqltest.Postgres(t) }, true, ""},
		{"postgresql://", func(t *testing.T) string { return "postgresql" + strings.TrimPrefix(sqltest.Postgres(t), "postgres") }, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := sqltest.Open(t, tt.url(t))
			require.Equal(t, tt.postgres, db.IsPostgres())
			require.Equal(t, !tt.postgres, db.IsSQLite())
			if strings.HasPrefix(tt.path, "memdb:") {
				require.True(t, strings.HasPrefix(db.Path(), tt.path), db.Path())
			} else {
				require.Equal(t, tt.path, db.Path())
			}
			if !tt.postgres && tt.path != "memdb:" {
				_, err := os.Stat(tt.path)
				require.NoError(t, err, "the file is created")
			}
			var one int
			require.NoError(t, db.QueryRowContext(t.Context(), "SELECT 1").Scan(&one))
			require.Equal(t, 1, one)
		})
	}
}

// TestPostgresJIT: the engine's PostgreSQL connections run with jit=off
// (its short statements paid seconds of compilation when planned without
// statistics) unless the URL sets jit.
func TestPostgresJIT(t *testing.T) {
	if os.Getenv(sqltest.PostgresEnv) == "" {
		t.Skipf("PostgreSQL only: set %s", sqltest.PostgresEnv)
	}
	base := sqltest.Postgres(t)
	tests := []struct {
		name, url, want string
	}{
		{"default", base, "off"},
		{"set in the URL", base + "&jit=on", "on"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := sqltest.Open(t, tt.url)
			var jit string
			require.NoError(t, db.QueryRowContext(t.Context(), "SHOW jit").Scan(&jit))
			require.Equal(t, tt.want, jit)
		})
	}
}

func TestOpenRefuses(t *testing.T) {
	tests := []struct {
		name        string
		url         string
		unsupported bool
		want        string
	}{
		{"empty", "", true, "empty url"},
		{"blank", "  ", true, "empty url"},
		{"other scheme", "mysql://user:hunter2@host/db", true, "mysql://user:xxxxx@host/db"},
		{"empty sqlite path", "sqlite:", true, "empty sqlite path"},
		{"bad postgres url", "postgres://user:hunter2@[::1/db", true, "postgres"},
		{"missing directory", "sqlite:" + filepath.Join(t.TempDir(), "no", "such", "dir", "x.db"), false, "x.db"},
		{"unreachable postgres", "postgres://user:hunter2@127.0.0.1:1/db?sslmode=disable&connect_timeout=2", false, "postgres://user:xxxxx@127.0.0.1:1/db"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := sqldb.Open(t.Context(), tt.url)
			require.Error(t, err)
			require.Nil(t, db)
			if tt.unsupported {
				require.ErrorIs(t, err, sqldb.ErrUnsupportedURL)
			} else {
				require.NotErrorIs(t, err, sqldb.ErrUnsupportedURL)
			}
			require.ErrorContains(t, err, tt.want)
			require.NotContains(t, err.Error(), "hunter2", "errors do not leak passwords")
		})
	}
}

func TestStringRedactsPassword(t *testing.T) {
	u := sqltest.Postgres(t)
	require.True(t, strings.HasPrefix(u, "postgres://postgres@"))
	// The test server trusts every password, so one can be added.
	withPassword := strings.Replace(u, "postgres://postgres@", "postgres://postgres:hunter2@", 1)
	db := sqltest.Open(t, withPassword)
	require.NotContains(t, db.String(), "hunter2")
	require.Contains(t, db.String(), "postgres:xxxxx@")
	require.Equal(t, withPassword, db.DSN())
}

// TestSQLiteConnectionSettings checks every connection of the pool, not
// just the first: pragmas are per connection.
func TestSQLiteConnectionSettings(t *testing.T) {
	tests := []struct {
		name    string
		url     func(testing.TB) string
		conns   int
		journal string
		sync    int
	}{
		{"file", sqltest.SQLiteFile, 4, "wal", 2},
		{"memory", sqltest.SQLiteMemory, 1, "memory", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := sqltest.Open(t, tt.url(t))
			ctx := t.Context()
			held := make([]func(), 0, tt.conns)
			for range tt.conns {
				c, err := db.DB.DB.Conn(ctx)
				require.NoError(t, err)
				held = append(held, func() { _ = c.Close() })
				pragma := func(name string) string {
					var v string
					require.NoError(t, c.QueryRowContext(ctx, "PRAGMA "+name).Scan(&v))
					return v
				}
				require.Equal(t, tt.journal, pragma("journal_mode"))
				if tt.sync >= 0 {
					require.Equal(t, "2", pragma("synchronous"), "synchronous=FULL")
					require.Equal(t, "1", pragma("secure_delete"), "secure_delete=ON on every connection of a file")
					require.Equal(t, "0", pragma("wal_autocheckpoint"), "no checkpoint at a commit: the checkpointer runs them")
				}
				require.Equal(t, "1", pragma("foreign_keys"))
				require.Equal(t, "10000", pragma("busy_timeout"))
			}
			for _, release := range held {
				release()
			}
		})
	}
}

func TestSQLiteMemory(t *testing.T) {
	ctx := t.Context()
	a := sqltest.Open(t, sqltest.SQLiteMemory(t))
	b := sqltest.Open(t, sqltest.SQLiteMemory(t))
	require.NotEqual(t, a.Path(), b.Path())

	_, err := a.ExecContext(ctx, "CREATE TABLE x (v INTEGER)")
	require.NoError(t, err)
	_, err = a.ExecContext(ctx, "INSERT INTO x VALUES (1)")
	require.NoError(t, err)

	_, err = b.ExecContext(ctx, "SELECT v FROM x")
	require.Error(t, err, "two in-memory databases do not share tables")

	// The pool may drop its connection; the database lives on until Close.
	a.SetMaxIdleConns(0)
	for range 3 {
		var v int
		require.NoError(t, a.QueryRowContext(ctx, "SELECT v FROM x").Scan(&v))
		require.Equal(t, 1, v)
	}
	// Concurrent users queue for the one connection instead of each getting
	// an empty database.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			var v int
			if err := a.QueryRowContext(ctx, "SELECT v FROM x").Scan(&v); err != nil || v != 1 {
				t.Errorf("concurrent read: %v, %d", err, v)
			}
		})
	}
	wg.Wait()
}

func TestSQLiteFileSharedByTwoPools(t *testing.T) {
	u := sqltest.SQLiteFile(t)
	a := sqltest.Open(t, u)
	b := sqltest.Open(t, u)
	require.Equal(t, a.Path(), b.Path())
	ctx := t.Context()
	_, err := a.ExecContext(ctx, "CREATE TABLE x (v INTEGER)")
	require.NoError(t, err)

	// Writers in both pools contend for the write lock and wait for each
	// other (busy_timeout, BEGIN IMMEDIATE) instead of failing.
	var wg sync.WaitGroup
	for i := range 8 {
		db := []*sqldb.DB{a, b}[i%2]
		wg.Go(func() {
			for range 20 {
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					t.Errorf("begin: %v", err)
					return
				}
				var n int
				if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM x").Scan(&n); err != nil {
					t.Errorf("read: %v", err)
				}
				if _, err := tx.ExecContext(ctx, "INSERT INTO x VALUES (?)", n); err != nil {
					t.Errorf("write: %v", err)
				}
				if err := tx.Commit(); err != nil {
					t.Errorf("commit: %v", err)
				}
			}
		})
	}
	wg.Wait()
	var n int
	require.NoError(t, b.QueryRowContext(ctx, "SELECT count(*) FROM x").Scan(&n))
	require.Equal(t, 160, n)
}

// widgets is a test component with two migrations per dialect.
func widgets(extra ...string) (pg, lite fstest.MapFS) {
	pg = fstest.MapFS{
		"20260101000000_widgets.tx.up.sql":   {Data: []byte("CREATE TABLE widgets (id BIGINT PRIMARY KEY, name TEXT NOT NULL)\n--bun:split\nINSERT INTO widgets VALUES (1, 'first')\n")},
		"20260101000000_widgets.tx.down.sql": {Data: []byte("DROP TABLE widgets\n")},
		"20260102000000_colour.tx.up.sql":    {Data: []byte("ALTER TABLE widgets ADD COLUMN colour TEXT\n")},
	}
	lite = fstest.MapFS{
		"20260101000000_widgets.tx.up.sql":   {Data: []byte("CREATE TABLE widgets (id INTEGER PRIMARY KEY, name TEXT NOT NULL)\n--bun:split\nINSERT INTO widgets VALUES (1, 'first')\n")},
		"20260101000000_widgets.tx.down.sql": {Data: []byte("DROP TABLE widgets\n")},
		"20260102000000_colour.tx.up.sql":    {Data: []byte("ALTER TABLE widgets ADD COLUMN colour TEXT\n")},
	}
	for i, sql := range extra {
		name := "2026010300000" + string(rune('0'+i)) + "_extra.tx.up.sql"
		pg[name] = &fstest.MapFile{Data: []byte(sql)}
		lite[name] = &fstest.MapFile{Data: []byte(sql)}
	}
	return pg, lite
}

func applied(t *testing.T, db *sqldb.DB, component string) []string {
	t.Helper()
	var names []string
	require.NoError(t, db.NewRaw("SELECT name FROM "+component+"_migrations ORDER BY name").Scan(t.Context(), &names))
	return names
}

func TestMigrate(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := t.Context()
			db := sqltest.Open(t, b.URL(t))
			pg, lite := widgets()
			for range 2 {
				require.NoError(t, sqldb.Migrate(ctx, db, "widgets", pg, lite))
			}
			require.Equal(t, []string{"20260101000000", "20260102000000"}, applied(t, db, "widgets"))
			var n int
			require.NoError(t, db.NewRaw("SELECT count(*) FROM widgets").Scan(ctx, &n))
			require.Equal(t, 1, n, "the first migration ran once")

			// Components keep separate books.
			require.NoError(t, sqldb.Migrate(ctx, db, "gadgets", fstest.MapFS{
				"20260101000000_gadgets.tx.up.sql": {Data: []byte("CREATE TABLE gadgets (id INTEGER)\n")},
			}, fstest.MapFS{
				"20260101000000_gadgets.tx.up.sql": {Data: []byte("CREATE TABLE gadgets (id INTEGER)\n")},
			}))
			require.Equal(t, []string{"20260101000000"}, applied(t, db, "gadgets"))
			require.Len(t, applied(t, db, "widgets"), 2)
		})
	}
}

func TestMigrateFailureIsNotRecorded(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := t.Context()
			db := sqltest.Open(t, b.URL(t))
			pg, lite := widgets("CREATE TABLE half (id INTEGER)\n--bun:split\nTHIS IS NOT SQL\n")
			err := sqldb.Migrate(ctx, db, "widgets", pg, lite)
			require.ErrorContains(t, err, "sqldb: migrate widgets")
			require.Equal(t, []string{"20260101000000", "20260102000000"}, applied(t, db, "widgets"))
			_, err = db.ExecContext(ctx, "SELECT * FROM half")
			require.Error(t, err, "the failed migration's transaction was rolled back")

			pg, lite = widgets("CREATE TABLE half (id INTEGER)\n")
			require.NoError(t, sqldb.Migrate(ctx, db, "widgets", pg, lite), "a fixed migration applies on the next run")
			require.Len(t, applied(t, db, "widgets"), 3)
		})
	}
}

func TestMigrateConcurrently(t *testing.T) {
	for _, b := range sqltest.Backends() {
		if b.Name == "sqlite-memory" {
			continue // one pool per database: nothing to race
		}
		t.Run(b.Name, func(t *testing.T) {
			u := b.URL(t)
			pg, lite := widgets()
			var wg sync.WaitGroup
			dbs := make([]*sqldb.DB, 4)
			for i := range dbs {
				dbs[i] = sqltest.Open(t, u)
			}
			for _, db := range dbs {
				wg.Go(func() {
					if err := sqldb.Migrate(t.Context(), db, "widgets", pg, lite); err != nil {
						t.Errorf("migrate: %v", err)
					}
				})
			}
			wg.Wait()
			require.Equal(t, []string{"20260101000000", "20260102000000"}, applied(t, dbs[0], "widgets"))
		})
	}
}

func TestMigrateStaleSQLiteLock(t *testing.T) {
	db := sqltest.Open(t, sqltest.SQLiteFile(t))
	pg, lite := widgets()
	require.NoError(t, sqldb.Migrate(t.Context(), db, "widgets", pg, lite))
	// A process that died while migrating leaves its lock row behind.
	_, err := db.ExecContext(t.Context(), `INSERT INTO widgets_migration_locks (table_name) VALUES ('widgets_migrations')`)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	err = sqldb.Migrate(ctx, db, "widgets", pg, lite)
	require.ErrorIs(t, err, sqldb.ErrMigrationLocked)
	require.ErrorContains(t, err, "widgets_migration_locks")
}

func TestMigrateRefuses(t *testing.T) {
	db := sqltest.Open(t, sqltest.SQLiteMemory(t))
	pg, lite := widgets()
	tests := []struct {
		name      string
		component string
		pg, lite  fs.FS
		want      string
	}{
		{"empty component", "", pg, lite, "invalid component"},
		{"upper case component", "Widgets", pg, lite, "invalid component"},
		{"component with a quote", "w'x", pg, lite, "invalid component"},
		{"no files for the dialect", "widgets", pg, nil, "no migrations for sqlite"},
		{"empty directory", "widgets", pg, fstest.MapFS{}, "no migration files"},
		{"badly named file", "widgets", pg, fstest.MapFS{"widgets.up.sql": {Data: []byte("SELECT 1")}}, "unsupported migration name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := sqldb.Migrate(t.Context(), db, tt.component, tt.pg, tt.lite)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

const helperURLEnv = "SQLDB_TEST_MIGRATE_HELPER_URL"

// TestMigrateFromSeveralProcesses starts processes that migrate the same
// database at the same time, so only the database-side lock (not the
// in-process mutex) keeps them apart.
func TestMigrateFromSeveralProcesses(t *testing.T) {
	for _, b := range sqltest.Backends() {
		if b.Name == "sqlite-memory" {
			continue
		}
		t.Run(b.Name, func(t *testing.T) {
			u := b.URL(t)
			var wg sync.WaitGroup
			for i := range 4 {
				wg.Go(func() {
					cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestMigrateHelperProcess$", "-test.count=1")
					cmd.Env = append(os.Environ(), helperURLEnv+"="+u)
					if out, err := cmd.CombinedOutput(); err != nil {
						t.Errorf("process %d: %v\n%s", i, err, out)
					}
				})
			}
			wg.Wait()
			db := sqltest.Open(t, u)
			require.Len(t, applied(t, db, "widgets"), 3)
			var n int
			require.NoError(t, db.NewRaw("SELECT count(*) FROM widgets").Scan(t.Context(), &n))
			require.Equal(t, 1, n, "the first migration ran once")
		})
	}
}

// TestMigrateHelperProcess is the body of one process of
// TestMigrateFromSeveralProcesses; it skips when run directly.
func TestMigrateHelperProcess(t *testing.T) {
	u := os.Getenv(helperURLEnv)
	if u == "" {
		t.Skip("helper process of TestMigrateFromSeveralProcesses")
	}
	db := sqltest.Open(t, u)
	slow := "SELECT pg_sleep(0.2)\n"
	if db.IsSQLite() {
		slow = "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 300000) SELECT count(*) FROM c\n"
	}
	pg, lite := widgets(slow)
	require.NoError(t, sqldb.Migrate(t.Context(), db, "widgets", pg, lite))
}

// TestSQLiteFilesArePrivate: a new SQLite file and its -wal and -shm files
// are readable by their owner only, whatever the umask lets through (they
// hold personal data); an existing file keeps its mode.
func TestSQLiteFilesArePrivate(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("POSIX modes")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "private.db")
	db, err := sqldb.Open(ctx, "sqlite:"+path)
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, "CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('carer@example.org')")
	require.NoError(t, err)
	for _, name := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(name)
		require.NoError(t, err, name)
		require.Equal(t, os.FileMode(sqldb.FileMode), fi.Mode().Perm(), name)
	}
	require.NoError(t, db.Close())

	shared := filepath.Join(t.TempDir(), "shared.db")
	require.NoError(t, os.WriteFile(shared, nil, 0o640))
	require.NoError(t, os.Chmod(shared, 0o640))
	db, err = sqldb.Open(ctx, "sqlite:"+shared)
	require.NoError(t, err)
	require.NoError(t, db.Close())
	fi, err := os.Stat(shared)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o640), fi.Mode().Perm(), "an existing file keeps its mode")
}

// TestUnsynced: on an SQLite file, Unsynced is one pool (the same on every
// call) of the same file whose connections run with synchronous=NORMAL,
// keeping the file's other settings; writes through either pool are seen
// by the other; its transactions pass the file's write gate; db's Close
// closes it. On an in-memory database and on PostgreSQL it is db itself.
func TestUnsynced(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "u.db")
	db, err := sqldb.Open(ctx, "sqlite:"+path)
	require.NoError(t, err)
	u, err := db.Unsynced(ctx)
	require.NoError(t, err)
	again, err := db.Unsynced(ctx)
	require.NoError(t, err)
	require.Same(t, u, again)
	require.NotSame(t, db, u)
	require.Equal(t, db.Path(), u.Path())

	pragma := func(d *sqldb.DB, name string) string {
		var v string
		require.NoError(t, d.QueryRowContext(ctx, "PRAGMA "+name).Scan(&v))
		return v
	}
	require.Equal(t, "2", pragma(db, "synchronous"), "FULL")
	require.Equal(t, "1", pragma(u, "synchronous"), "NORMAL")
	for _, d := range []*sqldb.DB{db, u} {
		require.Equal(t, "wal", pragma(d, "journal_mode"))
		require.Equal(t, "1", pragma(d, "secure_delete"))
		require.Equal(t, "1", pragma(d, "foreign_keys"))
	}

	_, err = db.ExecContext(ctx, "CREATE TABLE t (v INTEGER)")
	require.NoError(t, err)
	_, err = u.ExecContext(ctx, "INSERT INTO t VALUES (1)")
	require.NoError(t, err)
	var n int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&n))
	require.Equal(t, 1, n)

	// A transaction of db holds the gate: one of u waits for it.
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	began := make(chan error, 1)
	go func() {
		began <- u.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			_, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (2)")
			return err
		})
	}()
	select {
	case err := <-began:
		t.Fatalf("the unsynced pool's transaction did not wait for the gate: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	require.NoError(t, tx.Commit())
	require.NoError(t, <-began)

	require.NoError(t, db.Close())
	require.Error(t, u.PingContext(ctx), "closed with db")

	mem := sqltest.Open(t, sqltest.SQLiteMemory(t))
	same, err := mem.Unsynced(ctx)
	require.NoError(t, err)
	require.Same(t, mem, same)
	if os.Getenv("ACCESSLEDGER_TEST_POSTGRES_DSN") != "" {
		pg := sqltest.Open(t, sqltest.Postgres(t))
		same, err := pg.Unsynced(ctx)
		require.NoError(t, err)
		require.Same(t, pg, same)
	}
}
