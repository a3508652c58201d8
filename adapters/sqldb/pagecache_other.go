//go:build !(!cgosqlite && ((darwin && amd64) || (darwin && arm64) || (linux && 386) || (linux && amd64) || (linux && arm) || (linux && arm64) || (windows && amd64)))

package sqldb

// setupPageCache does nothing with the cgo SQLite (mattn/go-sqlite3),
// whose C allocator keeps freed pages.
func setupPageCache() error { return nil }
