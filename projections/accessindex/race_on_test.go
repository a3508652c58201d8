//go:build race

package accessindex_test

// raceEnabled: the race detector is on (sync.Pool then drops items on
// purpose, so allocation counts of pooled paths are not zero).
const raceEnabled = true
