package cputime_test

import (
	"crypto/sha256"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/internal/cputime"
)

func TestProcessCountsWork(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		t.Skip("not measured here")
	}
	before := cputime.Process()
	end := time.Now().Add(50 * time.Millisecond)
	var sum [32]byte
	for time.Now().Before(end) {
		sum = sha256.Sum256(sum[:])
	}
	require.Greater(t, cputime.Process(), before, "busy work shows as CPU time")
}
