//go:build !race

package accesshistory

// raceEnabled: the race detector is on (see race_on_test.go).
const raceEnabled = false

// RaceEnabled is raceEnabled for the package's external tests.
const RaceEnabled = raceEnabled
