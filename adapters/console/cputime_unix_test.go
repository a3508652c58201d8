//go:build unix

package console_test

import (
	"syscall"
	"time"
)

// cpuTime is the process's CPU time so far (user and system): on a machine
// other work loads, CPU per operation moves far less than time per
// operation.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
