// The same platforms as bun's sqliteshim picks modernc.org/sqlite on.

//go:build !cgosqlite && ((darwin && amd64) || (darwin && arm64) || (linux && 386) || (linux && amd64) || (linux && arm) || (linux && arm64) || (windows && amd64))

package sqldb

import (
	"fmt"
	"sync"
	"unsafe"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite's page caches take their pages from a pool of slots of their own
// (SQLITE_CONFIG_PAGECACHE), set up once before the process's first SQLite
// connection.
//
// Why: the pure-Go SQLite allocates each page of a cache with its C
// allocator (modernc.org/memory), which maps and unmaps its own 64 KiB
// blocks as they fill and empty. A connection empties its whole cache at
// the start of a read whenever another connection wrote since its last one
// (SQLite's rule in WAL mode), so with the read models writing after every
// command, each command's read of a stream freed and re-mapped the pages it
// used: munmap was a fifth of a command's CPU and an eighth of a rebuild's
// (docs/performance.md). Slots of the pool go back to the pool's free list
// and are reused without a system call. Pages beyond the pool, or larger
// than a slot (a file with pages above pageCacheSlotPage), come from the
// allocator as before.
const (
	// pageCacheSlots is the number of slots: about 70 MiB, all of it
	// resident from the first connection on (SQLite threads its free list
	// through every slot). The engine's connections cache about 500 pages
	// each by default (16 connections at most per file); a bulk batch's
	// larger cache takes the rest from the allocator.
	pageCacheSlots = 16 << 10
	// pageCacheSlotPage is the largest page a slot holds (SQLite's
	// default page size, which every file of the engine uses).
	pageCacheSlotPage = 4096
)

var (
	pageCacheOnce sync.Once
	// pageCacheErr is why the pool could not be set up (nil: it was).
	pageCacheErr error
	// pageHeaderSize is the bytes a page needs beside its content in a
	// slot, as SQLite reports them.
	pageHeaderSize int32
)

// setupPageCache gives SQLite's page caches the pool, once per process,
// before the first connection opens; it returns why it could not (SQLite
// already in use in this process, which leaves the caches as they were).
func setupPageCache() error {
	pageCacheOnce.Do(func() { pageCacheErr = configurePageCache() })
	return pageCacheErr
}

func configurePageCache() error {
	tls := libc.NewTLS()
	defer tls.Close()
	// The bytes each slot needs beside the page: SQLite's headers, written
	// into a package variable (it does not move, as a stack one could).
	va := libc.NewVaList(uintptr(unsafe.Pointer(&pageHeaderSize)))
	rc := sqlite3.Xsqlite3_config(tls, sqlite3.SQLITE_CONFIG_PCACHE_HDRSZ, va)
	libc.Xfree(tls, va)
	if rc != sqlite3.SQLITE_OK {
		return fmt.Errorf("sqldb: page cache pool: read the page header size: SQLite error %d", rc)
	}
	slot := (pageCacheSlotPage + int(pageHeaderSize) + 7) &^ 7
	// Never freed: SQLite keeps using the pool until the process ends.
	pool := libc.Xmalloc(tls, libc.Tsize_t(slot*pageCacheSlots))
	if pool == 0 {
		return fmt.Errorf("sqldb: page cache pool: cannot allocate %d MiB", slot*pageCacheSlots>>20)
	}
	va = libc.NewVaList(pool, int32(slot), int32(pageCacheSlots))
	rc = sqlite3.Xsqlite3_config(tls, sqlite3.SQLITE_CONFIG_PAGECACHE, va)
	libc.Xfree(tls, va)
	if rc != sqlite3.SQLITE_OK {
		libc.Xfree(tls, pool)
		return fmt.Errorf("sqldb: page cache pool: SQLite error %d (SQLite was already in use in this process)", rc)
	}
	return nil
}
