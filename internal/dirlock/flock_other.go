//go:build !unix

package dirlock

import "os"

// lockFile locks nothing where flock(2) is not available: there the one
// serving process per data directory is the operator's to keep.
func lockFile(*os.File) error { return nil }
