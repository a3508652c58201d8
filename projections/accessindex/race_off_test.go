//go:build !race

package accessindex_test

const raceEnabled = false
