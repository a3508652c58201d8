// Package dirlock holds a data directory for one serving process: an
// exclusive advisory lock on a file in it, which the operating system
// releases when the process ends, however it ends (kill -9 included).
//
// accessd serve takes it on its data directory. The embedded default's
// SQLite file assumes one serving process: its write gate and its
// idempotency keys' claims of running requests are coordinated within one
// process only, and its read models, which stage their batches ahead,
// reload rather than replay when another process moves their checkpoints
// (docs/architecture.md). A second serve on the same directory is refused
// instead of running beside the first. (Two serves given different data
// directories but one SQLite file through --event-store are not: the lock
// is the data directory's.)
package dirlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// FileName is the lock file in the directory. It holds nothing; its mode
// is 0600.
const FileName = "accessd.lock"

// ErrHeld is returned (wrapped, naming the file) by Acquire when another
// holder has the lock: another process, or another Acquire of this one.
var ErrHeld = errors.New("dirlock: the data directory is in use by another accessd serve")

// Lock is a held lock; Release gives it up.
type Lock struct{ f *os.File }

// Acquire takes the lock of dir, which must exist, without waiting. It
// fails with ErrHeld when the lock is held. On a system without advisory
// file locks (see lockFile) it holds the file open and locks nothing.
func Acquire(dir string) (*Lock, error) {
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("dirlock: open %s: %w", path, err)
	}
	if err := lockFile(f); err != nil {
		_ = f.Close()
		if errors.Is(err, errWouldBlock) {
			return nil, fmt.Errorf("%w (%s is locked): stop the other process, or give this one another --data-dir", ErrHeld, path)
		}
		return nil, fmt.Errorf("dirlock: lock %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// Release gives the lock up. The file stays (removing it would race with
// another process opening it to lock).
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor releases the lock
	l.f = nil
	return err
}

// errWouldBlock is lockFile's answer when another holder has the lock.
var errWouldBlock = errors.New("lock held")
