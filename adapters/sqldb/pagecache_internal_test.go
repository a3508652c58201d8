//go:build !cgosqlite && ((darwin && amd64) || (darwin && arm64) || (linux && 386) || (linux && amd64) || (linux && arm) || (linux && arm64) || (windows && amd64))

package sqldb

import (
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// Where sqlite3_status writes (package variables: they do not move).
var statusCurrent, statusHighwater int32

// pageCacheStatus returns SQLite's count of op (SQLITE_STATUS_PAGECACHE_*).
func pageCacheStatus(t *testing.T, op int32) int32 {
	t.Helper()
	tls := libc.NewTLS()
	defer tls.Close()
	rc := sqlite3.Xsqlite3_status(tls, op, uintptr(unsafe.Pointer(&statusCurrent)), uintptr(unsafe.Pointer(&statusHighwater)), 0)
	require.Equal(t, int32(sqlite3.SQLITE_OK), rc)
	return statusCurrent
}

// TestPageCachePool: an SQLite file's pages are cached in the pool's
// slots (SQLITE_STATUS_PAGECACHE_USED counts them), not allocated one by
// one, once Open has set the pool up.
func TestPageCachePool(t *testing.T) {
	ctx := t.Context()
	db, err := Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "pool.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	require.NoError(t, setupPageCache(), "the pool is set up before the process's first connection")
	_, err = db.ExecContext(ctx, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) "+
		"INSERT INTO t SELECT i, printf('%0200d', i) FROM n")
	require.NoError(t, err)
	var count int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM t WHERE v <> ''").Scan(&count))
	require.Equal(t, 20000, count)
	used := pageCacheStatus(t, sqlite3.SQLITE_STATUS_PAGECACHE_USED)
	require.Greater(t, used, int32(100), "pages in the pool's slots")
	require.Less(t, used, int32(pageCacheSlots+1))
}
