package main

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/accessledger/accessledger/internal/engine"
	"github.com/stretchr/testify/require"
)

// generatedRE reads the summary line of accessd generate.
var generatedRE = regexp.MustCompile(`generated small \(seed (\d+)\) into (\S+): (\d+) events in (\d+) appends`)

func TestGenerateWritesTheDataSetAndRefusesAFullStore(t *testing.T) {
	if raceEnabled {
		t.Skip("writes the small data set twice through one writer: runs without the race detector (make test's RACE_SKIPPED)")
	}
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()

	code, out, errOut := runCmd(t, ctx, noEnv, "generate", "--scale", "small", "--seed", "3", "--data-dir", dir)
	require.Equal(t, exitOK, code, errOut)
	m := generatedRE.FindStringSubmatch(out)
	require.NotNil(t, m, out)
	require.Equal(t, "sqlite:"+filepath.Join(dir, engine.DefaultDBName), m[2])
	events, err := strconv.Atoi(m[3])
	require.NoError(t, err)
	require.Greater(t, events, 1000, "a small data set is about 10,000 events")
	require.Contains(t, out, "events/s")

	code, out, errOut = runCmd(t, ctx, noEnv, "status", "--data-dir", dir)
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, fmt.Sprintf("events: %d\n", events))

	// Into a store that holds events only with --append. The same data set
	// again is a retry of every batch: nothing new is written.
	code, _, errOut = runCmd(t, ctx, noEnv, "generate", "--scale", "small", "--seed", "3", "--data-dir", dir)
	require.Equal(t, exitError, code)
	require.Contains(t, errOut, "the event store is not empty")
	require.Contains(t, errOut, "--append")

	code, out, errOut = runCmd(t, ctx, noEnv, "generate", "--scale", "small", "--seed", "3", "--append", "--data-dir", dir)
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, "0 of them new")

	code, out, errOut = runCmd(t, ctx, noEnv, "status", "--data-dir", dir)
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, fmt.Sprintf("events: %d\n", events))
}

func TestGenerateFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown scale", []string{"--scale", "planet"}, `unknown scale "planet"`},
		{"no batch", []string{"--batch", "0"}, "--batch 0"},
		{"bad seed", []string{"--seed", "x"}, "invalid value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"generate", "--data-dir", t.TempDir()}, tc.args...)
			code, _, errOut := runCmd(t, context.Background(), noEnv, args...)
			require.Equal(t, exitUsage, code, errOut)
			require.Contains(t, errOut, tc.want)
		})
	}
}
