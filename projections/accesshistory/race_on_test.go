//go:build race

package accesshistory

// raceEnabled: the race detector is on. Tests with one goroutine and a
// large amount of work skip under it and run in make test's second pass
// without it (the Makefile's RACE_SKIPPED).
const raceEnabled = true

// RaceEnabled is raceEnabled for the package's external tests.
const RaceEnabled = raceEnabled
