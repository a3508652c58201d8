//go:build !race

package datagen_test

const raceEnabled = false
