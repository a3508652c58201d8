package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBenchFlags: accessd bench refuses bad flags with exit code 2 before
// it measures anything.
func TestBenchFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown scale", []string{"--scale", "planet"}, `unknown scale "planet"`},
		{"unknown store", []string{"--stores", "mysql"}, `unknown store "mysql"`},
		{"postgres without a URL", []string{"--stores", "sqlite,postgres"}, "needs --postgres"},
		{"unknown measurement", []string{"--only", "check,speed"}, `unknown measurement "speed"`},
		{"no duration", []string{"--duration", "0s"}, "--duration 0s"},
		{"no expiries", []string{"--expiries", "0"}, "--expiries 0"},
		{"no kept children", []string{"--kept-children", "0"}, "--kept-children 0"},
		{"bad query concurrency", []string{"--query-concurrency", "1,x"}, "--query-concurrency"},
		{"bad log level", []string{"--log-level", "loud"}, "--log-level"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"bench", "--json", filepath.Join(t.TempDir(), "b.json")}, tc.args...)
			code, _, errOut := runCmd(t, context.Background(), noEnv, args...)
			require.Equal(t, exitUsage, code, errOut)
			require.Contains(t, errOut, tc.want)
		})
	}
}
