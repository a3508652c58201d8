package commands

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
)

// TestRule_R14_EveryEventTypeHasADefaultReason: commands that take no reason
// still record one.
func TestRule_R14_EveryEventTypeHasADefaultReason(t *testing.T) {
	for _, typ := range domain.EventTypes() {
		r, ok := defaultReasons[typ]
		require.True(t, ok, "no default reason for %s", typ)
		require.NotEmpty(t, r)
		require.Equal(t, r, DefaultReason(typ))
	}
}
