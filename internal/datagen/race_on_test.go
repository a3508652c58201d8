//go:build race

package datagen_test

const raceEnabled = true
