// Package cputime reads the CPU time this process has used, for the
// benchmarks and the load tool: on a machine other work loads, CPU per
// operation moves far less than time per operation.
package cputime

import "time"

// Process returns the user and system CPU time this process has used so
// far; 0 where the platform does not say (not unix).
func Process() time.Duration { return process() }
