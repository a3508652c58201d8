//go:build !race

package eventstoretest

// RaceEnabled reports whether the race detector is on.
const RaceEnabled = false
