package ledger

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/projtest"
)

// TestInsertColumns checks that the columns Apply inserts are those of the
// rows queries scan.
func TestInsertColumns(t *testing.T) {
	names := func(cols []projections.Column) []string {
		out := make([]string, 0, len(cols))
		for _, c := range cols {
			out = append(out, c.Name)
		}
		return out
	}
	tests := []struct {
		name  string
		model any
		cols  []projections.Column
	}{
		{"leaves", leafRow{}, leafColumns},
		{"nodes", nodeRow{}, nodeColumns},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, projtest.BunColumns(tc.model), names(tc.cols))
		})
	}
}
